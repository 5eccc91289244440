"""What `vljax train` / `vljax eval` do to an existing workdir: a finished run is left alone, a run of another model
or past the configured steps is refused before anything is written, eval writes its own file, errors exit 2."""
import json
import shutil

import pytest

from test_train_loop import SMALL
from vljax import main as cli

TRAIN = ["train", "--config", "configs/clip.py:tiny", *SMALL, "--config.train.steps=2"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run") / "w"
    assert cli.main([*TRAIN, "--workdir", str(workdir)]) == 0
    return workdir


def _copy(finished, tmp_path):
    dst = tmp_path / "w"
    shutil.copytree(finished, dst)
    return dst


def _files(workdir):
    return {p.name: p.read_bytes() for p in workdir.iterdir() if p.is_file()}


def test_rerunning_a_finished_run_changes_nothing(finished, tmp_path, capsys):
    workdir = _copy(finished, tmp_path)
    before = _files(workdir)
    capsys.readouterr()
    assert cli.main([*TRAIN, "--workdir", str(workdir)]) == 0
    assert "is finished (step 2 of 2); its results.json is unchanged" in capsys.readouterr().out
    assert _files(workdir) == before
    # Decided before any restore; a config that differs is named, and still nothing is written.
    assert cli.main([*TRAIN, "--workdir", str(workdir), "--config.evals.retrieval.n=16"]) == 0
    assert "differs from its config.json: evals.retrieval.n: 32 -> 16" in capsys.readouterr().out
    assert _files(workdir) == before


def test_report_reproduce_line_carries_the_overrides(finished):
    """report.md's command, run through the shell's word splitting and the CLI's parser, loads the run's config."""
    import shlex

    from vljax.config import config_changes, load_config, parse_cli

    line = next(x for x in (finished / "report.md").read_text().splitlines() if x.startswith("Reproduce:"))
    words = shlex.split(line.removeprefix("Reproduce: `").removesuffix("`"))
    assert words[:2] == ["vljax", "train"] and "--config.train.steps=2" in words
    args, overrides = parse_cli(cli._parser(), words[1:])
    again = load_config(args.config, overrides)
    assert args.workdir == str(finished)
    assert config_changes(json.loads((finished / "config.json").read_text()), again) == []


def test_another_model_in_the_workdir_is_refused_before_writing(finished, tmp_path, capsys):
    workdir = _copy(finished, tmp_path)
    before = _files(workdir)
    wider = [a for a in TRAIN if not a.startswith("--config.model.image.width")] + ["--config.model.image.width=48"]
    assert cli.main([*wider, "--workdir", str(workdir), "--config.train.steps=3"]) == 2
    err = capsys.readouterr().err
    assert "workdir error: the checkpoint in" in err and "does not fit this config's train state" in err
    assert "model.image.width: 32 -> 48" in err and "Traceback" not in err
    assert _files(workdir) == before  # config.json kept: it still says how the checkpoint was trained


def test_a_checkpoint_past_the_configured_steps_is_refused(finished, tmp_path, capsys):
    workdir = _copy(finished, tmp_path)
    assert cli.main([*TRAIN, "--workdir", str(workdir), "--config.train.steps=1"]) == 2
    assert "has a checkpoint at step 2, past config.train.steps=1" in capsys.readouterr().err


def test_eval_writes_its_own_file_and_finds_the_config(finished, tmp_path, capsys):
    workdir = _copy(finished, tmp_path)
    trained = json.loads((workdir / "results.json").read_text())
    before = _files(workdir)
    # No --config: the run's own (config.json's spec and overrides), here with one more override.
    assert cli.main(["eval", "--workdir", str(workdir), "--config.evals.retrieval.n=16"]) == 0
    out = capsys.readouterr().out
    assert "evaluating the checkpoint of step 2" in out and "eval_step2.json" in out
    got = json.loads((workdir / "eval_step2.json").read_text())
    assert got["step"] == 2.0 and got["zeroshot/shape_acc"] == trained["zeroshot/shape_acc"]
    assert {k: v for k, v in _files(workdir).items() if k != "eval_step2.json"} == before
    assert cli.main(["eval", "--config", "configs/clip.py:tiny", *SMALL, "--workdir", str(workdir),
                     "--output", str(tmp_path / "out" / "e.json")]) == 0
    assert json.loads((tmp_path / "out" / "e.json").read_text())["retrieval/i2t_r1"] == trained["retrieval/i2t_r1"]


def test_eval_reads_params_only_and_refuses_another_model(finished, tmp_path, capsys):
    """Eval restores the params alone: another optimizer layout (frozen towers) is fine, other dims are not."""
    workdir = _copy(finished, tmp_path)
    assert cli.main(["eval", "--workdir", str(workdir), "--config.optim.freeze=('^txt_',)",
                     "--output", str(tmp_path / "frozen.json")]) == 0
    trained = json.loads((workdir / "results.json").read_text())
    assert json.loads((tmp_path / "frozen.json").read_text())["zeroshot/shape_acc"] == trained["zeroshot/shape_acc"]
    capsys.readouterr()
    assert cli.main(["eval", "--workdir", str(workdir), "--config.model.embed_dim=24"]) == 2
    err = capsys.readouterr().err
    assert "does not fit this config's train state" in err and "model.embed_dim: 16 -> 24" in err


def test_eval_of_a_missing_workdir_exits_2_and_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "typo"
    assert cli.main(["eval", "--config", "configs/clip.py:tiny", "--workdir", str(missing)]) == 2
    assert "no checkpoint under" in capsys.readouterr().err and not missing.exists()
    assert cli.main(["eval", "--workdir", str(missing)]) == 2
    assert "no --config given and no" in capsys.readouterr().err


def test_an_unknown_method_exits_2_before_the_workdir_is_made(tmp_path, capsys):
    workdir = tmp_path / "w"
    assert cli.main([*TRAIN, "--workdir", str(workdir), "--config.method=clip_hardnge"]) == 2
    assert "unknown method 'clip_hardnge'" in capsys.readouterr().err and not workdir.exists()


def test_tokenizer_output_keeps_its_name_and_folder_is_created(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(f"a small red square {i} and a large blue circle" for i in range(200)))
    out = tmp_path / "new" / "tok_v1.5"
    assert cli.main(["tokenizer", "train", "--format", "text", "--input", str(corpus), "--vocab_size", "300",
                     "--output", str(out)]) == 0
    assert (tmp_path / "new" / "tok_v1.5.model").exists()
    assert cli.main(["tokenizer", "train", "--format", "text", "--input", str(corpus), "--vocab_size", "64",
                     "--output", str(out)]) == 2
    assert "--vocab_size 64 is below 261" in capsys.readouterr().err


def test_a_mesh_that_cannot_split_a_param_exits_2_naming_it(tmp_path, capsys):
    """The tiny preset's 3 heads over a 2-way tensor axis: one line naming the param and its logical axis, exit 2,
    no workdir (jax's own error names neither)."""
    workdir = tmp_path / "w"
    args = [*TRAIN, "--workdir", str(workdir), "--config.mesh.data=4", "--config.mesh.tensor=2",
            "--config.model.image.num_heads=3", "--config.model.image.width=48"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "config error: the mesh" in err and "('heads', size 3) is split over mesh axes tensor=2" in err
    assert "img_tower/" in err and not workdir.exists()
