"""Zero-shot predictions: experiments/zeroshot_confusion.py agrees with `vljax eval`; attribute-marginalized prompts;
per-class recall of experiments/linear_probe.py."""

import importlib.util
from pathlib import Path

import flax.linen as nn
import jax
import numpy as np
import pytest

from tests.test_train_loop import SMALL
from vljax.config import load_config
from vljax.data import tokenizer as tokenizer_lib
from vljax.eval import zeroshot
from vljax.eval.embed import eval_world
from vljax.train import loop

spec = importlib.util.spec_from_file_location(
    "zeroshot_confusion", Path(__file__).resolve().parents[1] / "experiments" / "zeroshot_confusion.py"
)
zc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(zc)
OVERRIDES = [*SMALL, "--config.train.steps=2", "--config.evals.zeroshot_attr.n=32"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """-> (workdir, results) of a 2-step CLIP run with both zero-shot evals."""
    workdir = tmp_path_factory.mktemp("zeroshot") / "run"
    return workdir, loop.train_and_evaluate(load_config("configs/clip.py:tiny", OVERRIDES), workdir)


def test_confusion_counts_and_table():
    m = zc.confusion(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2]), 3)
    np.testing.assert_array_equal(m, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    table = zc.format_confusion(m, ("circle", "square", "hexagon")).splitlines()
    assert table[0].split()[-1] == "recall" and table[3].split()[-1] == "0.667"  # hexagon: 2 of 3


@pytest.mark.parametrize("name", ["zeroshot", "zeroshot_attr"])
def test_confusion_script_matches_eval(run, name, capsys):
    workdir, results = run
    preds = zc.main(["--config", "configs/clip.py:tiny", "--workdir", str(workdir), "--eval", name, *OVERRIDES])
    for task in ("shape", "color"):
        labels, pred, classes = preds[task]
        assert len(labels) == 32 and pred.max() < len(classes)
        assert float((pred == labels).mean()) == results[f"{name}/{task}_acc"]
    assert "zero-shot shape, accuracy" in capsys.readouterr().out


def test_bad_eval_name_fails_clearly(run):
    with pytest.raises(SystemExit, match=r"config\.evals\.retrieval is not a zero-shot eval.*'zeroshot'"):
        zc.main(["--config", "configs/clip.py:tiny", "--workdir", str(run[0]), "--eval", "retrieval", *OVERRIDES])


def test_marginalized_class_embedding_is_the_mean_over_phrases_and_templates(run):
    cfg = load_config("configs/clip.py:tiny", OVERRIDES)
    exp, params, _ = loop.restore_latest(cfg, run[0])
    world = eval_world(exp, cfg.evals.zeroshot_attr)
    phrases = world.attribute_phrases("shape", ("size", "color"))[:2]
    templates = world.templates("en", "ensemble_image")
    embed_texts = jax.jit(exp.encoders[1])
    with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
        got = zeroshot.class_embeddings(exp, params, exp.encoders[1], phrases, templates)
        bare = zeroshot.class_embeddings(exp, params, exp.encoders[1], world.class_names("shape")[:2], templates)
        for k, ps in enumerate(phrases):
            texts = [t.format(p) for p in ps for t in templates]
            emb = np.asarray(embed_texts(params, tokenizer_lib.tokenize(exp.tokenizer, texts, cfg.data.max_len)))
            emb = (emb / np.linalg.norm(emb, axis=-1, keepdims=True)).mean(0)
            np.testing.assert_allclose(got[k], emb / np.linalg.norm(emb), atol=1e-5)  # float32 unit vectors
    assert float(np.abs(got - bare).max()) > 1e-3  # the phrases change the class prompts


def test_linear_probe_prints_per_class_recall(run, capsys):
    spec = importlib.util.spec_from_file_location(
        "linear_probe", Path(__file__).resolve().parents[1] / "experiments" / "linear_probe.py"
    )
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    args = ["--n_train", "64", "--n_test", "32", "--per_class", *OVERRIDES]
    probe.main(["--config", "configs/clip.py:tiny", "--workdir", str(run[0]), *args])
    out = capsys.readouterr().out
    assert "linear probe on the image embedding (64 train / 32 test)" in out
    assert out.count("recall: ") == 2 and "recall: circle " in out and "recall: red " in out


def test_eval_round_embeds_the_shared_scenes_once(run, monkeypatch):
    from vljax.eval import run_evals

    cfg = load_config("configs/clip.py:tiny", OVERRIDES)
    exp, params, _ = loop.restore_latest(cfg, run[0])
    calls = []
    embed = zeroshot.embed_in_batches
    monkeypatch.setattr(zeroshot, "embed_in_batches", lambda fn, p, arrays, *a: calls.append(arrays.ndim) or
                        embed(fn, p, arrays, *a))
    with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
        alone = {name: zeroshot.evaluate(exp, params, cfg.evals[name]) for name in ("zeroshot", "zeroshot_attr")}
        assert calls.count(4) == 2  # outside a round each evaluator embeds its images
        calls.clear()
        flat = run_evals(exp, params, 0)
    assert calls.count(4) == 1  # in a round zeroshot_attr reuses zeroshot's 32 scenes
    for name, metrics in alone.items():
        assert {k: flat[f"{name}/{k}"] for k in metrics} == metrics
