"""Generative evaluators (captioning, vqa, pope, grounding): scorers on hand cases, an oracle / constant generator
through the evaluator path, and a tiny LVLM run through the trainer with every evaluator enabled."""

import ml_collections
import numpy as np
import pytest

from vljax.config import load_config
from vljax.data.world.conversation import format_box
from vljax.eval import caption_metrics, grounding, pope, run_evals, vqa
from vljax.eval.embed import world_samples
from vljax.train.loop import Experiment, train_and_evaluate

TINY = ["--config.train.steps=2", "--config.train.batch_size=8", "--config.train.log_every=1",
        "--config.checkpoint.every=1000", "--config.checkpoint.async_save=False",
        "--config.model.vision.width=32", "--config.model.vision.depth=1", "--config.model.vision.num_heads=2",
        "--config.model.vision.mlp_dim=64", "--config.model.lm.width=32", "--config.model.lm.depth=1",
        "--config.model.lm.mlp_dim=64", "--config.evals.generation.n=4", "--config.evals.generation.batch_size=8"]
ON = ["--config.evals.captioning.n=4", "--config.evals.vqa.n=4", "--config.evals.pope.n=4",
      "--config.evals.pope.per_sample=2", "--config.evals.grounding.n=4"]
ON += [f"--config.evals.{e}.batch_size=8" for e in ("captioning", "vqa", "pope", "grounding")]


# ------------------------------------------------------------------------------------------------ scorers
def test_vqa_normalization_hand_cases():
    n = vqa.normalize_answer
    assert n("Two") == "2"
    assert n("the Red ball.") == "red ball"
    assert n("  dont\n") == "don't"
    assert n("yes!") == "yes"
    assert n("a, b") == "b"  # "," touches a space -> deleted; "a" is an article
    assert n("1,000") == "1000"  # digit,digit comma -> deleted
    assert n("3.5") == "3.5"  # a period next to a digit stays
    assert n("left-right") == "left right"  # "-" touches no space -> replaced by a space


def test_vqa_soft_accuracy_hand_cases():
    humans = ["2"] * 3 + ["3"] * 7
    # pred "two" -> "2", said by 3 humans: leaving out one of those 3 leaves 2 votes -> 2/3 (3 subsets);
    # leaving out one of the 7 others keeps 3 votes -> 1 (7 subsets).
    assert vqa.vqa_accuracy("two", humans) == pytest.approx((3 * 2 / 3 + 7 * 1.0) / 10)
    assert vqa.vqa_accuracy("three", humans) == pytest.approx(1.0)
    assert vqa.vqa_accuracy("four", humans) == 0.0
    one = ["2"] + ["3"] * 9  # one voter: 1 subset has 0 votes, 9 subsets have 1 vote -> 9 * (1/3) / 10
    assert vqa.vqa_accuracy("2", one) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="human answers"):
        vqa.vqa_accuracy("2", ["2"])
    got = vqa.score(["red", "blue"], [["red"] * 10, ["Red"] * 10], [0, 0])
    assert got == {"accuracy": 0.5, "accuracy/color": 0.5}


def test_pope_parse_and_score():
    assert pope.parse_yes_no("Yes, there is.") == (True, True)
    assert pope.parse_yes_no("no") == (False, True)
    assert pope.parse_yes_no("there is not a circle") == (False, True)
    assert pope.parse_yes_no("a circle. no") == (True, False)  # only the first sentence counts (POPE script)
    answers = ["yes", "yes", "no", "no", "yes", "no"]
    kinds = [-1, -1, 0, 1, -1, 2]
    const = pope.score(["yes"] * 6, answers, kinds)
    assert const["yes_ratio"] == 1.0 and const["accuracy"] == 0.5 and const["recall"] == 1.0
    assert const["precision"] == 0.5 and const["f1"] == pytest.approx(2 / 3)
    assert const["random/false_yes"] == const["adversarial/false_yes"] == 1.0
    assert const["random/accuracy"] == pytest.approx(3 / 4)  # 3 positives + 1 random negative
    perfect = pope.score(answers, answers, kinds)
    assert all(perfect[k] == 1.0 for k in ("accuracy", "precision", "recall", "f1"))
    assert perfect["yes_ratio"] == 0.5 and perfect["unparsed"] == 0.0 and perfect["popular/false_yes"] == 0.0
    # 2 TP, 1 FN, 1 FP, 2 TN
    mixed = pope.score(["yes", "yes", "yes", "no", "no", "no"], answers, kinds)
    assert mixed["precision"] == pytest.approx(2 / 3) and mixed["recall"] == pytest.approx(2 / 3)
    assert mixed["accuracy"] == pytest.approx(4 / 6)


def test_grounding_parse_iou_and_score():
    box = np.array([0.1, 0.2, 0.5, 0.6], np.float32)
    text = " ".join(format_box(box))  # NOTE: the world tokenizer decodes "[10,20,50,59]" as "[ 1 0 , 2 0 ...".
    np.testing.assert_allclose(grounding.parse_generated_box(text), np.rint(box * 99) / 99, atol=1e-6)
    assert grounding.parse_generated_box("a red circle") is None
    assert grounding.box_iou([0, 0, 1, 1], [0, 0, 0.5, 1]) == pytest.approx(0.5)
    assert grounding.box_iou([0, 0, 0.2, 0.2], [0.5, 0.5, 1, 1]) == 0.0
    refs = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]], np.float32)
    got = grounding.score(["[0,0,99,99]", "[0,0,50,99]", "nothing"], refs)
    # IoUs 1, 50/99 (>= 0.5), 0 (unparsed)
    assert got["accuracy"] == pytest.approx(2 / 3)
    assert got["mean_iou"] == pytest.approx((1 + 50 / 99) / 3, abs=1e-6)
    assert got["parsed"] == pytest.approx(2 / 3)


# ----------------------------------------------------------------------------- oracle / constant generators
@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    cfg = load_config("configs/lvlm_ntp.py:tiny", TINY + ON)
    return Experiment(cfg, tmp_path_factory.mktemp("gen_evals"))


def _install(exp, cfg, answer_fn):
    """Puts a fake jitted generator in the experiment's cache: row -> answer_fn(image, prompt ids) + eos."""
    width = int(cfg.max_new_tokens)

    def generate(params, images, prompts, mask):
        out = np.zeros((len(prompts), width), np.int32)
        for i in range(len(prompts)):
            ids = list(exp.tokenizer.encode(answer_fn(np.asarray(images[i]), prompts[i][mask[i]])))[: width - 1]
            out[i, : len(ids) + 1] = ids + [2]
        return out

    exp.__dict__.setdefault("_generators", {})[("generate", width, 1)] = generate


def _oracle(exp, world, fields, items):
    """-> answer_fn that looks up (image bytes, prompt ids) built from the world's raw fields."""
    table = {}
    for s in world_samples(world, "test", 4, ("image",) + fields):
        for prompt, answer in items(s):
            ids = tuple(exp.method.prompt_ids(exp.tokenizer, prompt, 4, 4))
            table[(s["image"].tobytes(), ids)] = answer
    return lambda image, prompt: table[(image.tobytes(), tuple(prompt.tolist()))]


def _run(exp, name):
    cfg = exp.config.copy_and_resolve_references()
    cfg.evals = ml_collections.ConfigDict({name: exp.config.evals[name]})
    saved, exp.config = exp.config, cfg
    try:
        return {k.split("/", 1)[1]: v for k, v in run_evals(exp, None, 0).items()}
    finally:
        exp.config = saved


def test_oracle_generator_scores_perfectly_and_constant_yes(exp):
    try:
        _oracle_and_constant(exp)
    finally:
        exp.__dict__.pop("_generators", None)


def _oracle_and_constant(exp):
    ev = exp.config.evals
    pope_world = pope.world_with(exp, "pope", int(ev.pope.per_sample))
    _install(exp, ev.pope, _oracle(exp, pope_world, ("pope",), lambda s: zip(s["pope/question"], s["pope/answer"])))
    got = _run(exp, "pope")
    assert got["accuracy"] == got["f1"] == 1.0 and got["unparsed"] == 0.0
    _install(exp, ev.pope, lambda image, prompt: "yes")
    got = _run(exp, "pope")
    items = [a for s in world_samples(pope_world, "test", 4, ("pope",)) for a in s["pope/answer"] if a]
    assert got["yes_ratio"] == 1.0 and got["recall"] == 1.0
    assert got["accuracy"] == pytest.approx(np.mean([a == "yes" for a in items]))

    _install(exp, ev.vqa, _oracle(exp, exp.world, ("qa",), lambda s: zip(s["qa/question"], s["qa/answer"])))
    got = _run(exp, "vqa")
    assert got["accuracy"] == got["accuracy/color"] == 1.0

    ref_world = pope.world_with(exp, "ref", int(ev.grounding.per_sample))
    refs = lambda s: [(grounding.PROMPT.format(t), " ".join(format_box(b)))  # noqa: E731
                      for t, b in zip(s["ref/text"], s["ref/box"]) if t]
    _install(exp, ev.grounding, _oracle(exp, ref_world, ("ref",), refs))
    got = _run(exp, "grounding")
    assert got["accuracy"] == got["parsed"] == 1.0 and got["mean_iou"] > 0.9

    caps = lambda s: [(exp.method.CAPTION_PROMPT, str(s["captions/short"]))]  # noqa: E731
    _install(exp, ev.captioning, _oracle(exp, exp.world, ("captions/short",), caps))
    got = _run(exp, "captioning")
    assert got["bleu4"] == pytest.approx(1.0, abs=1e-6) and got["bleu1"] == pytest.approx(1.0, abs=1e-6)
    refs = [caption_metrics.ptb_tokenize(str(s["captions/short"]))
            for s in world_samples(exp.world, "test", 4, ("captions/short",))]
    assert got["cider"] == pytest.approx(caption_metrics.cider_d(refs, [[r] for r in refs])[0], abs=1e-9)
    assert got["cider"] > 0


def test_disabled_evaluators_are_skipped(exp):
    for name in ("captioning", "vqa", "pope", "grounding"):
        cfg = exp.config.evals[name].copy_and_resolve_references()
        cfg.n = 0
        module = {"captioning": caption_metrics, "vqa": vqa, "pope": pope, "grounding": grounding}[name]
        assert module.evaluate(exp, None, cfg) == {}


# ------------------------------------------------------------------------------------- through the trainer
def _check_ranges(results):
    want = {"captioning": ("bleu1", "bleu4", "cider"), "vqa": ("accuracy", "accuracy/color"),
            "pope": ("accuracy", "precision", "recall", "f1", "yes_ratio", "unparsed"),
            "grounding": ("accuracy", "mean_iou", "parsed")}
    for name, keys in want.items():
        for k in keys:
            v = results[f"{name}/{k}"]
            assert np.isfinite(v) and 0 <= v <= (10 if k == "cider" else 1), (name, k, v)


def test_random_tiny_lvlm_through_experiment_evaluate(exp):
    """Real greedy decoding of a random-init tiny LVLM via Experiment.evaluate (what the trainer calls)."""
    exp.__dict__.pop("_generators", None)  # NOTE: drop the fake generators other tests installed.
    state, _ = exp.create_state()
    results = exp.evaluate(state.params, 0)
    _check_ranges(results)
    assert "generation/exact_match" in results
    exp.__dict__.pop("_generators", None)


@pytest.mark.slow
def test_tiny_lvlm_through_the_trainer(tmp_path):
    """train_and_evaluate: 2 train steps, then every evaluator on the final params."""
    results = train_and_evaluate(load_config("configs/lvlm_ntp.py:tiny", TINY + ON), tmp_path)
    _check_ranges(results)
