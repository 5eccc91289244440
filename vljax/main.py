"""vljax command line: train | eval | sweep | report.

  vljax train --config configs/clip.py:tiny --workdir DIR [--config.key=value ...]
  vljax eval  --config configs/clip.py:tiny --workdir DIR      # evaluates the newest checkpoint
  vljax sweep --config configs/clip.py:tiny --sweep scaling --root DIR [--parallel N] [--dry_run] [--config.key=value ...]
  vljax report --root DIR [--group_by method] [--metric zeroshot/shape_acc]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vljax", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in (("train", "train (resuming from the newest checkpoint in --workdir), then evaluate"),
                        ("eval", "evaluate the newest checkpoint in --workdir")):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--config", required=True, help="configs/<name>.py[:preset]")
        s.add_argument("--workdir", required=True, help="checkpoints, event files, results.json, report.md")
        s.add_argument("--stop_after", type=int, default=None,
                       help="(train) stop with a checkpoint at this step, as if preempted")
    s = sub.add_parser("sweep", help="run a config's named sweep, one workdir per point (resumable)")
    s.add_argument("--config", required=True, help="configs/<name>.py[:preset] defining get_sweep(arg)")
    s.add_argument("--sweep", required=True, help="name of the sweep in get_sweep(arg)")
    s.add_argument("--root", required=True, help="ROOT/<point-id>/ per point; ROOT/results.{csv,jsonl}")
    s.add_argument("--parallel", type=int, default=1, help="points trained at once (subprocesses)")
    s.add_argument("--dry_run", action="store_true",
                   help="write ROOT/<id>/point.json for every point and list them; train nothing")
    s = sub.add_parser("report", help="Markdown report of a sweep root: table, scaling fits, frontier, plots")
    s.add_argument("--root", required=True, help="a sweep root (holds results.jsonl or point directories)")
    s.add_argument("--group_by", default="method", help="column that names the compared groups")
    s.add_argument("--metric", default="zeroshot/shape_acc", help="accuracy metric; error = 1 - metric")
    s.add_argument("--n_boot", type=int, default=1000, help="bootstrap resamples for the CIs")
    s.add_argument("--level", type=float, default=0.9, help="confidence level of the CIs")
    return p


def _sweep(args, overrides: list[str]) -> int:
    from vljax.config import ConfigError
    from vljax.experiments.sweep import run_sweep

    try:
        rows = run_sweep(args.config, args.sweep, args.root, parallel=args.parallel, cli_overrides=overrides,
                         plan_only=args.dry_run)
    except ConfigError as e:
        print(f"vljax: config error: {e}", file=sys.stderr)
        return 2
    return 1 if any(r["status"] == "failed" for r in rows) or (
        not args.dry_run and any(r["status"] != "finished" for r in rows)) else 0


def _report(args) -> int:
    from vljax.experiments.report import write_sweep_report

    write_sweep_report(args.root, group_by=args.group_by, metric=args.metric, n_boot=args.n_boot,
                       level=args.level)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `vljax` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # NOTE: --config.a.b=v overrides are split off before argparse, which cannot express them.
    overrides = [a for a in argv if a.startswith("--config.")]
    rest = [a for a in argv if not a.startswith("--config.")]
    args = _parser().parse_args(rest)
    logging.basicConfig(level=os.environ.get("VLJAX_LOGLEVEL", "WARNING"))
    if args.command == "sweep":
        return _sweep(args, overrides)
    if args.command == "report":
        if overrides:
            print("vljax: report takes no --config.* overrides", file=sys.stderr)
            return 2
        return _report(args)
    from vljax.config import ConfigError, load_config

    try:
        config = load_config(args.config, overrides)
    except ConfigError as e:
        print(f"vljax: config error: {e}", file=sys.stderr)
        return 2
    from vljax.train import loop

    if args.command == "train":
        loop.train_and_evaluate(config, args.workdir, stop_after=args.stop_after)
    else:
        loop.evaluate_latest(config, args.workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
