"""vljax command line: train | eval | sweep | report | data | tokenizer | convert.

  vljax train --config configs/clip.py:tiny --workdir DIR [--config.key=value ...]
  vljax eval  --config configs/clip.py:tiny --workdir DIR      # evaluates the newest checkpoint
  vljax sweep --config configs/clip.py:tiny --sweep scaling --root DIR [--parallel N] [--dry_run] [--config.key=value ...]
  vljax report --root DIR [--group_by method] [--metric zeroshot/shape_acc]
  vljax data convert --format webdataset --input 'shards/*.tar' --output out/name [--num_shards N]
  vljax tokenizer train --format text --input corpus.txt --vocab_size 8000 --output tok [--field text]
  vljax convert --from {hf,open_clip,big_vision,vljax} --src PATH --dst DIR [--to hf] [--dtype bfloat16]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

_OVERRIDES = ("Any config leaf can be overridden: --config.KEY=VALUE (or --config.KEY VALUE), e.g. "
              "--config.train.steps=100 --config.model.dtype=bfloat16 --config.data.world.objects.count='(1, 4)'.")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default when it has one (not None, not a flag's False)."""

    def _get_help_string(self, action):
        default = action.default
        if default is None or default is False or default == argparse.SUPPRESS or action.required:
            return action.help
        return super()._get_help_string(action)


def _version() -> str:
    """'vljax X (jax Y, flax Z)' from the installed distributions (importing jax would slow --help down)."""
    from importlib import metadata

    def v(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"
    # NOTE: the package's folder too: which checkout an editable install runs is not obvious from the version.
    here = Path(__file__).resolve().parent
    return f"vljax {v('vljax')} at {here} (jax {v('jax')}, jaxlib {v('jaxlib')}, flax {v('flax')})"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vljax", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True)
    fmt = dict(formatter_class=_Help, epilog=_OVERRIDES)
    s = sub.add_parser("train", help="train (resuming from the newest checkpoint in --workdir), then evaluate",
                       description="Trains config.train.steps steps in --workdir (resuming from its newest "
                       "checkpoint; a finished workdir is left as it is), then evaluates and writes results.json, "
                       "report.md and loss_curve.png. SIGTERM / Ctrl-C save a checkpoint and exit with 128 + the "
                       "signal number (143 / 130); a config or workdir error exits with 2.", **fmt)
    s.add_argument("--config", required=True, help="configs/<name>.py[:preset]")
    s.add_argument("--workdir", required=True, help="checkpoints, event files, results.json, report.md")
    s.add_argument("--stop_after", type=int, default=None,
                   help="stop with a checkpoint at this step, as if preempted (exit code 0)")
    s = sub.add_parser("eval", help="evaluate the newest checkpoint in --workdir",
                       description="Restores the newest checkpoint in --workdir, runs the config's evals and writes "
                       "them to --output (the training run's results.json and report.md are left as they are).",
                       **fmt)
    s.add_argument("--config", default=None,
                   help="configs/<name>.py[:preset]; default: the one the run was trained with (WORKDIR/config.json, "
                   "its overrides included), to which --config.* overrides apply")
    s.add_argument("--workdir", required=True, help="a training run's directory")
    s.add_argument("--output", default=None, help="JSON file of the metrics; default WORKDIR/eval_step<N>.json")
    s = sub.add_parser("sweep", help="run a config's named sweep, one workdir per point (resumable)", **fmt)
    s.add_argument("--config", required=True, help="configs/<name>.py[:preset] defining get_sweep(arg)")
    s.add_argument("--sweep", required=True, help="name of the sweep in get_sweep(arg)")
    s.add_argument("--root", required=True, help="ROOT/<point-id>/ per point; ROOT/results.{csv,jsonl}")
    s.add_argument("--parallel", type=int, default=1, help="points trained at once (subprocesses)")
    s.add_argument("--dry_run", action="store_true",
                   help="write ROOT/<id>/point.json for every point and list them; train nothing")
    s = sub.add_parser("report", help="Markdown report of a sweep root: table, scaling fits, frontier, plots",
                       formatter_class=_Help)
    s.add_argument("--root", required=True, help="a sweep root (holds results.jsonl or point directories)")
    s.add_argument("--group_by", default="method", help="column that names the compared groups")
    s.add_argument("--metric", default="zeroshot/shape_acc", help="accuracy metric; error = 1 - metric")
    s.add_argument("--n_boot", type=int, default=1000, help="bootstrap resamples for the CIs")
    s.add_argument("--level", type=float, default=0.9, help="confidence level of the CIs")
    _add_data_parsers(sub)
    s = sub.add_parser("convert", help="convert checkpoints (HF CLIP/SigLIP/Llama-family, open_clip, big_vision)")
    from vljax.convert.cli import add_arguments as convert_arguments
    convert_arguments(s)
    return p


def _add_data_parsers(sub) -> None:
    from vljax.data.sources.registry import FORMATS

    def source_args(s):
        """Adds the arguments that open a source (registry.open_source)."""
        s.add_argument("--input", required=True, help="file / glob / folder / tfds name of the source")
        s.add_argument("--images", default="", help="(coco, karpathy, llava) image root")
        s.add_argument("--captions", default=None, help="(video, audio) captions json/csv")
        s.add_argument("--split", default="train",
                       help="(karpathy, tfds, points, world) split; '' = all files (points)")
        s.add_argument("--data_dir", default=None, help="(tfds) data_dir")
        s.add_argument("--limit", type=int, default=None, help="read at most this many records")

    data = sub.add_parser("data", help="data tools").add_subparsers(dest="data_command", required=True)
    s = data.add_parser("convert", help="write a source into array_record shards (+ summary)", formatter_class=_Help)
    s.add_argument("--format", required=True, choices=FORMATS)
    source_args(s)
    s.add_argument("--output", required=True, help="output prefix: PREFIX.array_record-XXXXX-of-YYYYY")
    s.add_argument("--num_shards", type=int, default=1, help="number of output shards (records dealt in turn)")
    s.add_argument("--max_bad_fraction", type=float, default=0.05,
                   help="fail when more than this fraction of the records read is bad (after 50 records)")
    s.add_argument("--verify_images", action="store_true", help="decode each 'image' and drop corrupt ones")
    tok = sub.add_parser("tokenizer", help="tokenizer tools").add_subparsers(dest="tokenizer_command",
                                                                            required=True)
    s = tok.add_parser("train", help="train a sentencepiece model (pad=0 bos=1 eos=2, byte fallback)",
                       formatter_class=_Help)
    s.add_argument("--format", required=True, choices=("text",) + FORMATS, help="text = plain files, a line each")
    source_args(s)
    s.add_argument("--field", default="text", help="record field holding the text (conversation for llava)")
    s.add_argument("--vocab_size", type=int, required=True,
                   help="pieces, specials and the 256 byte pieces included; fewer when the corpus has fewer")
    s.add_argument("--model_type", default="unigram", choices=("unigram", "bpe", "char", "word"),
                   help="sentencepiece model type")
    s.add_argument("--output", required=True, help="writes OUTPUT.model (parent folders are created)")


def _data(args) -> int:
    from vljax.data.convert import convert_to_array_record
    from vljax.data.sources.bad_records import BadDataError, BadRecordPolicy
    from vljax.data.sources.registry import open_source
    from vljax.data.transforms import DecodeImage

    try:
        source = open_source(args.format, args.input, images=args.images, captions=args.captions,
                             split=args.split, data_dir=args.data_dir)
        summary = convert_to_array_record(source, args.output, name=f"{args.format}:{args.input}",
                                          num_shards=args.num_shards, limit=args.limit,
                                          policy=BadRecordPolicy(max_bad_fraction=args.max_bad_fraction),
                                          verify=DecodeImage().map if args.verify_images else None)
    except (ValueError, BadDataError) as e:
        print(f"vljax data convert: {e}", file=sys.stderr)
        return 2
    print(summary.format())
    return 0


_MIN_VOCAB = 261  # NOTE: pad, bos, eos, unk + 256 byte pieces + at least one learned piece.


def _tokenizer(args) -> int:
    import itertools

    from vljax.data.sources.array_record import expand_paths
    from vljax.data.sources.registry import open_source
    from vljax.data.sources.texts import iter_text_files, iter_texts
    from vljax.data.tokenizer import model_path, train_sentencepiece

    if args.vocab_size < _MIN_VOCAB:
        print(f"vljax tokenizer train: --vocab_size {args.vocab_size} is below {_MIN_VOCAB} (4 special ids and 256 "
              f"byte-fallback pieces come first)", file=sys.stderr)
        return 2
    try:
        if args.format == "text":
            texts = itertools.islice(iter_text_files(expand_paths(args.input)), args.limit)
        else:
            source = open_source(args.format, args.input, images=args.images, captions=args.captions,
                                 split=args.split, data_dir=args.data_dir)
            texts = iter_texts(source, args.field, limit=args.limit)
        tok = train_sentencepiece(texts, args.vocab_size, args.output, model_type=args.model_type)
    except (ValueError, KeyError, RuntimeError) as e:  # NOTE: sentencepiece reports bad options as RuntimeError.
        print(f"vljax tokenizer train: {e}", file=sys.stderr)
        return 2
    note = f"; the corpus gave fewer than the {args.vocab_size} asked for" if tok.vocab_size < args.vocab_size else ""
    print(f"wrote {model_path(args.output)} (vocab {tok.vocab_size}{note})")
    return 0


def _sweep(args, overrides: list[str]) -> int:
    from vljax.config import ConfigError
    from vljax.experiments.sweep import SweepStopped, run_sweep

    try:
        rows = run_sweep(args.config, args.sweep, args.root, parallel=args.parallel, cli_overrides=overrides,
                         plan_only=args.dry_run)
    except SweepStopped as e:
        print(f"[sweep] {e}", flush=True)
        return e.exit_code
    except ConfigError as e:
        print(f"vljax: config error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"vljax: sweep error: {e}", file=sys.stderr)
        return 2
    return 1 if any(r["status"] == "failed" for r in rows) or (
        not args.dry_run and any(r["status"] != "finished" for r in rows)) else 0


def _report(args) -> int:
    from vljax.experiments.report import write_sweep_report

    try:
        write_sweep_report(args.root, group_by=args.group_by, metric=args.metric, n_boot=args.n_boot,
                           level=args.level)
    except (ValueError, FileNotFoundError) as e:
        print(f"vljax: report error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `vljax` console script."""
    from vljax.config import parse_cli

    args, overrides = parse_cli(_parser(), argv)
    logging.basicConfig(level=os.environ.get("VLJAX_LOGLEVEL", "WARNING"))
    if args.command == "sweep":
        return _sweep(args, overrides)
    if args.command == "convert":
        if overrides:
            print("vljax: convert takes no --config.* overrides", file=sys.stderr)
            return 2
        from vljax.convert.cli import run as convert
        return convert(args)
    if args.command in ("data", "tokenizer"):
        if overrides:
            print(f"vljax: {args.command} takes no --config.* overrides", file=sys.stderr)
            return 2
        return _data(args) if args.command == "data" else _tokenizer(args)
    if args.command == "report":
        if overrides:
            print("vljax: report takes no --config.* overrides", file=sys.stderr)
            return 2
        return _report(args)
    return _train_or_eval(args, overrides)


def _eval_config_args(workdir: str, overrides: list[str]) -> tuple[str, list[str]]:
    """vljax eval without --config -> (the spec, overrides) of WORKDIR/config.json, then the CLI's overrides."""
    import json

    from vljax.config import ConfigError, override_args

    path = Path(workdir) / "config.json"
    if not path.exists():
        raise ConfigError(f"no --config given and no {path} to take it from (is {workdir} a training run?)")
    saved = json.loads(path.read_text())
    if not saved.get("config_spec"):
        raise ConfigError(f"{path} names no config_spec; pass --config")
    return saved["config_spec"], override_args(saved) + list(overrides)


def _train_or_eval(args, overrides: list[str]) -> int:
    from vljax.config import ConfigError, load_config

    try:
        spec = args.config
        if spec is None:
            spec, overrides = _eval_config_args(args.workdir, overrides)
        config = load_config(spec, overrides)
    except ConfigError as e:
        print(f"vljax: config error: {e}", file=sys.stderr)
        return 2
    from vljax.train import loop

    try:
        if args.command == "train":
            loop.train_and_evaluate(config, args.workdir, stop_after=args.stop_after)
        else:
            loop.evaluate_latest(config, args.workdir, output=args.output)
    except loop.WorkdirError as e:
        print(f"vljax {args.command}: workdir error: {e}", file=sys.stderr)
        return 2
    except ConfigError as e:  # NOTE: what only the mesh and the model show (a batch or param the mesh cannot split)
        print(f"vljax: config error: {e}", file=sys.stderr)
        return 2
    except loop.Preempted as e:
        print(f"[vljax] {e}", flush=True)
        return e.exit_code
    except loop.NonFiniteLossError:
        return 1  # NOTE: the loop has printed the error naming the step.
    return 0


if __name__ == "__main__":
    sys.exit(main())
