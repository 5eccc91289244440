"""Word -> patch localization eval: span-to-token mapping, patch geometry, scoring with planted embeddings."""

import ml_collections
import numpy as np
import pytest

from vljax.config import load_config
from vljax.data.world import World
from vljax.data.world.language.tokenize import word_spans
from vljax.eval import localization as loc
from vljax.eval.embed import world_samples

FIELDS = ("image", "caption", "spans/short", "instance_map", "objects/color", "objects/shape", "objects/valid")


def _samples(n=6):
    cfg = load_config("configs/filip.py:tiny", [])
    world = World(cfg.data.world)
    assert world.cfg.caption.default == "short"
    return world, world_samples(world, "test", n, FIELDS)


def test_word_targets_follow_the_caption_words():
    world, samples = _samples(3)
    for s in samples:
        text = str(s["caption"])
        words = [text[a:b] for a, b in word_spans(text)]
        targets = loc.word_targets(text, np.asarray(s["spans/short"]), max_len=32)
        assert targets, text
        colors, shapes = world.class_names("color", "en"), world.class_names("shape", "en")
        for token, what, concept in targets:
            word = words[token - 1]  # NOTE: token j + 1 is word j (BOS first); punctuation is its own word.
            names = colors if what == "color" else shapes
            assert names[concept] in word, (word, what, names[concept])
    # NOTE: words past max_len - 2 are cut by the tokenizer and must not be scored.
    text = str(samples[0]["caption"])
    assert all(t < 3 for t, _, _ in loc.word_targets(text, np.asarray(samples[0]["spans/short"]), max_len=4))


def test_patch_touch_on_a_hand_made_map():
    m = -np.ones((8, 8), np.int16)
    m[0:2, 0:2] = 0  # slot 0: top-left patch of a 4 x 4 grid of 2-pixel patches
    m[5, 6] = 1  # slot 1: one pixel in patch (row 2, col 3)
    np.testing.assert_array_equal(np.flatnonzero(loc.patch_touch(m, np.array([True, False]), 4)), [0])
    np.testing.assert_array_equal(np.flatnonzero(loc.patch_touch(m, np.array([True, True]), 4)), [0, 11])
    assert not loc.patch_touch(m, np.array([False, False]), 4).any()


@pytest.mark.parametrize("aim", ["object", "elsewhere", "background", "register"])
def test_score_words_with_planted_embeddings(aim):
    """One-hot patch tokens; each word token points at a patch touching its object (acc 1), one not touching
    it (acc 0), one touching no object (background 1) or always patch 0 (top_patch_share 1)."""
    _, samples = _samples()
    texts = [str(s["caption"]) for s in samples]
    grid, max_len = 8, 32
    patches = np.tile(np.eye(grid * grid, dtype=np.float32), (len(samples), 1, 1))
    words = np.zeros((len(samples), max_len, grid * grid), np.float32)
    for b, s in enumerate(samples):
        for token, what, concept in loc.word_targets(texts[b], np.asarray(s["spans/short"]), max_len):
            objects = np.asarray(s["objects/valid"]) & (np.asarray(s[f"objects/{what}"]) == concept)
            touch = loc.patch_touch(np.asarray(s["instance_map"]), objects, grid)
            empty = ~loc.patch_touch(np.asarray(s["instance_map"]), np.asarray(s["objects/valid"]), grid)
            pick = np.flatnonzero({"object": touch, "elsewhere": ~touch, "background": empty}.get(aim, touch))
            words[b, token, 0 if aim == "register" else pick[len(pick) // 2]] = 1.0
    out = loc.score_words(samples, texts, patches, words, "short", max_len)
    assert out["n_words"] >= 2 * len(samples)
    assert 0.0 < out["chance"] < 0.5 and 0.0 < out["bg_chance"] < 1.0
    if aim == "register":
        assert out["top_patch_share"] == 1.0
        return
    assert out["acc"] == (1.0 if aim == "object" else 0.0)
    assert out["acc_color"] == out["acc_shape"] == out["acc"]
    assert out["background"] == {"object": 0.0, "background": 1.0}.get(aim, out["background"])
    assert out["top_patch_share"] < 0.5


def test_evaluate_runs_on_a_fresh_filip_and_rejects_merged_tokens(tmp_path):
    import flax.linen as nn
    import jax

    from vljax.train.loop import Experiment

    small = ["--config.model.image.depth=1", "--config.model.text.depth=1", "--config.train.batch_size=8"]
    cfg = load_config("configs/filip.py:tiny", small)
    exp = Experiment(cfg, tmp_path)
    state, _ = exp.create_state()
    ecfg = ml_collections.ConfigDict(dict(kind="localization", split="test", n=16))
    with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
        out = loc.evaluate(exp, state.params, ecfg)
    assert set(out) == {"acc", "acc_color", "acc_shape", "chance", "n_words", "background", "bg_chance",
                        "top_patch_share"}
    assert 0.0 <= out["acc"] <= 1.0 and out["n_words"] > 16
    with pytest.raises(ValueError, match="full patch grid"):
        loc.score_words([], [], np.zeros((1, 10, 4)), np.zeros((1, 4, 4)), "short", 4)
