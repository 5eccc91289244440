"""LVLM: NTP loss (masks, weights, packing) against float64 numpy; image splicing; sharded == single device.

Tolerances: float32 losses 1e-6 relative vs the float64 reference; sharded vs single device 2e-5
relative on the loss and 1e-4 of the global max on gradients (reduction reorder across shards).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sharded_check import check_method_sharded

from vljax.config import load_config
from vljax.data.tokenizer import BOS, EOS
from vljax.losses import lm as lm_loss
from vljax.methods import get_method
from vljax.models.lvlm import LVLM, splice_image_tokens


def _np_nll(logits, targets):
    x = logits.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    logp = x - np.log(np.exp(x).sum(-1, keepdims=True))
    return -np.take_along_axis(logp, targets[..., None], -1)[..., 0]


def _random_lm_batch(seed, b=3, t=7, v=11):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(b, t, v)).astype(np.float32) * 2
    targets = rng.integers(0, v, size=(b, t)).astype(np.int32)
    mask = rng.random((b, t)) < 0.6
    mask[:, 0] = True
    return logits, targets, mask


def test_token_loss_matches_numpy_and_uniform_weights_are_plain_ntp():
    logits, targets, mask = _random_lm_batch(0)
    nll = _np_nll(logits, targets)
    ref = (nll * mask).sum() / mask.sum()
    plain, metrics = lm_loss.next_token_loss(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(mask))
    np.testing.assert_allclose(float(plain), ref, rtol=1e-6)
    ones, _ = lm_loss.next_token_loss(
        jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(mask), weights=jnp.ones(targets.shape)
    )
    assert float(ones) == float(plain)  # exactly, not approximately
    seg, _ = lm_loss.next_token_loss(
        jnp.asarray(logits),
        jnp.asarray(targets),
        jnp.asarray(mask),
        weights=jnp.ones(targets.shape),
        normalize="segment",
    )
    ref_seg = np.mean([(nll[b] * mask[b]).sum() / mask[b].sum() for b in range(3)])
    np.testing.assert_allclose(float(seg), ref_seg, rtol=1e-6)
    acc = ((logits.argmax(-1) == targets) * mask).sum() / mask.sum()
    np.testing.assert_allclose(float(metrics["token_accuracy"]), acc, rtol=1e-6)


def test_weighted_packed_loss_matches_numpy():
    logits, targets, mask = _random_lm_batch(1, b=2, t=9)
    rng = np.random.default_rng(2)
    weights = rng.random(targets.shape).astype(np.float32) + 0.1
    seg = np.array([[1, 1, 1, 2, 2, 2, 2, 0, 0], [1, 1, 1, 1, 1, 3, 3, 3, 3]], np.int32)
    mask = mask & (seg > 0)
    mask[0, 3] = mask[1, 5] = True
    nll = _np_nll(logits, targets)
    got, _ = lm_loss.next_token_loss(*map(jnp.asarray, (logits, targets, mask, weights, seg)), normalize="segment")
    per = [
        (nll[b] * weights[b] * mask[b])[seg[b] == s].sum() / mask[b][seg[b] == s].sum()
        for b in range(2)
        for s in np.unique(seg[b][seg[b] > 0])
    ]
    np.testing.assert_allclose(float(got), np.mean(per), rtol=1e-6)
    # Per-segment weight normalisation: mean 1 over each segment's supervised tokens.
    wn = np.asarray(lm_loss.normalize_weights_per_segment(jnp.asarray(weights), jnp.asarray(mask), jnp.asarray(seg)))
    for b in range(2):
        for s in np.unique(seg[b][seg[b] > 0]):
            sel = (seg[b] == s) & mask[b]
            np.testing.assert_allclose(wn[b][sel].mean(), 1.0, rtol=1e-6)
            np.testing.assert_allclose(wn[b][sel] / wn[b][sel][0], weights[b][sel] / weights[b][sel][0], rtol=1e-5)
    assert np.all(wn[~mask] == 0)


def test_shift_targets_never_crosses_segments():
    tokens = jnp.array([[5, 6, 7, 8, 9, 0]])
    seg = jnp.array([[1, 1, 1, 2, 2, 0]])
    targets, mask = lm_loss.shift_targets(tokens, jnp.ones_like(tokens, bool), seg)
    np.testing.assert_array_equal(targets, [[6, 7, 8, 9, 0, 0]])
    np.testing.assert_array_equal(mask, [[True, True, False, True, False, False]])


def test_no_supervised_token_raises():
    with pytest.raises(ValueError, match="rows \\[1\\]"):
        lm_loss.check_label_mask(np.array([[0, 1, 1], [0, 0, 0]]))
    with pytest.raises(ValueError, match="segment 2 of row 0"):
        lm_loss.check_label_mask(np.array([[0, 1, 0, 0]]), np.array([[1, 1, 2, 2]]))
    lm_loss.check_label_mask(np.array([[0, 1, 0, 1]]), np.array([[1, 1, 2, 2]]))


# ----- LVLM assembly -----

VOCAB = 40


def _random_params(model, *args, seed=0, std=0.2):
    """Fresh N(0, std) params in the model's shapes (no jitted RNG init: its CPU compile dominates)."""
    shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.key(0), *args)["params"])
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, std, s.shape), s.dtype), shapes)


SMALL = [
    "--config.data.world.resolution=32",
    "--config.data.max_len=12",
    "--config.model.vision.width=32",
    "--config.model.vision.depth=1",
    "--config.model.vision.num_heads=2",
    "--config.model.vision.mlp_dim=64",
    "--config.model.lm.width=32",
    "--config.model.lm.depth=1",
    "--config.model.lm.num_heads=4",
    "--config.model.lm.num_kv_heads=2",
    "--config.model.lm.mlp_dim=64",
    "--config.model.projector=pool_mlp",
]


def test_splice_image_tokens_matches_numpy():
    rng = np.random.default_rng(3)
    tok = rng.normal(size=(2, 7, 4)).astype(np.float32)
    img = rng.normal(size=(2, 3, 4)).astype(np.float32)
    is_img = np.zeros((2, 7), bool)
    is_img[0, 1:4] = True
    is_img[1, [2, 4, 6]] = True
    ref = tok.copy()
    for b in range(2):
        ref[b, np.flatnonzero(is_img[b])] = img[b]
    np.testing.assert_array_equal(
        np.asarray(splice_image_tokens(jnp.asarray(tok), jnp.asarray(img), jnp.asarray(is_img))), ref
    )


@pytest.mark.parametrize(
    "vision,projector,expected",
    [
        (dict(width=32, depth=1, num_heads=2, mlp_dim=64, patch_size=(4, 4)), "linear", 16),
        (dict(width=32, depth=1, num_heads=2, mlp_dim=64, patch_size=(4, 4)), "pool_mlp", 4),
        (None, "mlp", 16),
    ],
)
def test_lvlm_image_tokens_reach_the_lm(vision, projector, expected):
    model = LVLM(
        lm=dict(vocab_size=VOCAB, width=32, depth=1, num_heads=4, num_kv_heads=2, mlp_dim=64),
        vision=vision,
        image_size=16,
        projector=projector,
        patch_size=4,
    )
    assert model.num_image_tokens() == expected
    tokens = jnp.asarray([[BOS] + [4] * expected + [9, 10, EOS]])
    images = jnp.asarray(np.random.default_rng(0).integers(0, 255, (1, 16, 16, 3)), jnp.uint8)
    params = _random_params(model, images, tokens)
    f = jax.jit(lambda im: model.apply({"params": params}, im, tokens))
    a, b = f(images), f(255 - images)
    assert a.shape == (1, expected + 4, VOCAB)
    # Image tokens change the text logits after them, never the bos logit before them (causal).
    np.testing.assert_allclose(a[:, 0], b[:, 0], atol=1e-6)
    assert float(jnp.abs(a[:, -1] - b[:, -1]).max()) > 1e-4


def test_lvlm_greedy_decode_equals_naive_recompute():
    model = LVLM(
        lm=dict(vocab_size=VOCAB, width=32, depth=1, num_heads=4, num_kv_heads=2, mlp_dim=64),
        vision=dict(width=32, depth=1, num_heads=2, mlp_dim=64, patch_size=(8, 8)),
        image_size=16,
        projector="mlp",
    )
    n_img, n_new = model.num_image_tokens(), 4
    prompts = [[BOS] + [4] * n_img + [7, 11, 12, 8], [BOS] + [4] * n_img + [7, 13, 8]]
    width = max(map(len, prompts))
    tokens = np.zeros((2, width), np.int32)
    mask = np.zeros((2, width), bool)
    for i, p in enumerate(prompts):
        tokens[i, width - len(p) :], mask[i, width - len(p) :] = p, True
    images = np.random.default_rng(1).integers(0, 255, (2, 16, 16, 3)).astype(np.uint8)
    params = _random_params(model, images[:1], tokens[:1], seed=1, std=0.3)
    generate = get_method("lvlm_ntp").make_generate(model, None, max_new_tokens=n_new)
    out = np.asarray(generate(params, images, tokens, mask))
    full = jax.jit(lambda im, t: model.apply({"params": params}, im, t))
    for b, p in enumerate(prompts):
        seq = list(p)
        for i in range(n_new):
            if i and seq[-1] == EOS:
                assert out[b, i] == 0
                continue
            padded = np.zeros((1, width + n_new), np.int32)
            padded[0, : len(seq)] = seq
            logits = np.array(full(images[b : b + 1], padded)[0, len(seq) - 1])
            logits[4] = -np.inf  # the LVLM never proposes the <image> placeholder
            nxt = int(np.argmax(logits))
            assert out[b, i] == nxt, (b, i)
            seq.append(nxt)


def test_conversation_without_supervised_token_raises():
    method = get_method("lvlm_ntp")
    conv = method.conversation([BOS, 4, 4, 7, 20, 8], [33], max_len=10)
    assert conv["tokens"].tolist() == [BOS, 4, 4, 7, 20, 8, 33, EOS, 0, 0]
    assert np.flatnonzero(conv["label_mask"]).tolist() == [6, 7]
    with pytest.raises(ValueError, match="no supervised token"):
        method.conversation([BOS, 4, 4, 7, 20, 8], [], max_len=10)
    with pytest.raises(ValueError, match="max_len"):
        method.conversation([BOS, 4, 4, 7, 20, 8], [33, 34, 35], max_len=8)


def test_make_example_on_world_qa():
    cfg = load_config("configs/lvlm_ntp.py:tiny", SMALL + ["--config.data.max_len=24"])
    from vljax.data import world as world_lib
    from vljax.data.tokenizer import WorldTokenizer

    w = world_lib.World(cfg.data.world)
    method = get_method("lvlm_ntp")
    sample = w.sample("train", 5, fields=method.data_spec(cfg)["fields"])
    ex = method.make_example(sample, WorldTokenizer(w.vocab), cfg)
    tok = WorldTokenizer(w.vocab)
    n_img = method.build_static(cfg).num_image_tokens()
    assert ex["tokens"][0] == BOS and (ex["tokens"][1 : 1 + n_img] == 4).all() and ex["tokens"][1 + n_img] == 7
    answer = [int(t) for t in ex["tokens"][ex["label_mask"]]]
    question, reference, _ = method.select_text(sample, "qa")
    assert answer == tok.encode(reference) + [EOS]
    assert ex["image"].shape == (32, 32, 3)
    cfg.task = "caption"
    sample = w.sample("train", 5, fields=method.data_spec(cfg)["fields"])
    ex = method.make_example(sample, tok, cfg)
    assert [int(t) for t in ex["tokens"][ex["label_mask"]]] == tok.encode(str(sample["captions/short"])) + [EOS]


def test_lvlm_loss_sharded_equals_single_device():
    cfg = load_config("configs/lvlm_ntp.py:tiny", SMALL)
    rng = np.random.default_rng(4)
    n_img = get_method("lvlm_ntp").build_static(cfg).num_image_tokens()
    tokens = rng.integers(10, VOCAB, size=(16, 12)).astype(np.int32)
    tokens[:, 0], tokens[:, 1 : 1 + n_img] = BOS, 4
    label = np.zeros((16, 12), bool)
    label[:, 8:11] = True
    batch = {"image": rng.integers(0, 255, size=(16, 32, 32, 3), dtype=np.uint8), "tokens": tokens, "label_mask": label}
    check_method_sharded(cfg, batch, VOCAB, meshes=({"data": 8}, {"data": 2, "fsdp": 2, "tensor": 2}))


def test_align_stage_trains_only_the_projector():
    from vljax.train import optim

    cfg = load_config("configs/lvlm_ntp.py:tiny_align", SMALL)
    method = get_method("lvlm_ntp")
    model = method.build(cfg, vocab_size=VOCAB)
    abstract = nn.meta.unbox(jax.eval_shape(lambda r: method.init_params(model, cfg, r), jax.random.key(0)))
    tx, _ = optim.make_optimizer(cfg.optim, abstract, cfg.train.steps)
    params = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), abstract)
    _, state = tx.update(params, tx.init(params), params)  # NOTE: step 0 of the warmup has lr 0
    updates, _ = tx.update(params, state, params)
    moved = {
        optim.param_path(p).split("/")[0]
        for p, u in jax.tree_util.tree_leaves_with_path(updates)
        if float(jnp.abs(u).max()) > 0
    }
    assert moved == {"image_projector"}


def test_generation_scoring():
    from vljax.eval import generation

    assert generation.strip_generation([9, 0, 11, EOS, 12, 0]) == [9, 11]
    qa = generation.score([[20], [21], [22, 23]], [[20], [22], [22, 23]], [0, 0, 1])
    assert qa == {"exact_match": 2 / 3, "exact_match/color": 0.5, "exact_match/shape": 1.0}
    cap = generation.score([[5, 6, 7], [5]], [[5, 9, 7], [5, 6]], ["caption", "caption"])
    # reference tokens + eos: [5, 9, 7, eos] -> 3 hits; [5, 6, eos] vs [5, eos] -> 1 hit
    assert cap == {"exact_match": 0.0, "token_accuracy": 4 / 7}


def test_presets_load_and_fit_their_image_tokens():
    method = get_method("lvlm_ntp")
    for preset in ("tiny", "tiny_align", "tiny_encoder_free", "small"):
        cfg = load_config(f"configs/lvlm_ntp.py:{preset}")
        assert cfg.method == "lvlm_ntp"
        # NOTE: bos, <user>, <assistant>, eos + the longest world color QA (14 words, 1500 scenes).
        assert method.build_static(cfg).num_image_tokens() + 4 + 14 <= cfg.data.max_len, preset
