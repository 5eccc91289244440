"""FILIP method wiring: CLIP equivalence, float64 reference, sharded == local, pruning, fine-grained split, train steps."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vljax.config import load_config
from vljax.eval import finegrained
from vljax.losses import contrastive
from vljax.losses.late_interaction import filip_loss
from vljax.methods import filip
from vljax.train import loop

SMALL = [
    "--config.data.world.resolution=32",
    "--config.data.max_len=16",
    "--config.train.batch_size=16",
    "--config.model.image.width=32",
    "--config.model.image.depth=1",
    "--config.model.image.num_heads=2",
    "--config.model.image.mlp_dim=64",
    "--config.model.image.patch_size=(8, 8)",
    "--config.model.text.width=32",
    "--config.model.text.depth=1",
    "--config.model.text.num_heads=2",
    "--config.model.text.mlp_dim=64",
    "--config.model.embed_dim=16",
    "--config.evals.zeroshot.n=16",
    "--config.evals.retrieval.n=16",
    "--config.evals.finegrained.n=24",
    "--config.eval_batch_size=16",
    "--config.train.log_every=1",
    "--config.checkpoint.every=1000",
    "--config.data.num_threads=1",
]


def _cfg(*extra):
    return load_config("configs/filip.py:tiny", SMALL + list(extra))


def _batch(exp, seed=0):
    """A real world batch (images uint8, tokens with padding)."""
    return next(iter(exp.train_dataset()))


def _filip_np(v, mv, t, mt, scale):
    """float64 double-loop FILIP loss (the card's formulas) from token features and masks."""
    v, t = v.astype(np.float64), t.astype(np.float64)
    b = len(v)
    si, st = np.zeros((b, b)), np.zeros((b, b))
    for i in range(b):
        for j in range(b):
            s = v[i][mv[i]] @ t[j][mt[j]].T
            si[i, j], st[i, j] = s.max(1).mean(), s.max(0).mean()
    ce = lambda z: np.mean(np.log(np.exp(z).sum(1)) - np.diag(z))
    return 0.5 * (ce(scale * si) + ce(scale * st.T))


def test_one_token_per_side_equals_clip_loss():
    k1, k2 = jax.random.split(jax.random.key(3))
    img = jax.random.normal(k1, (12, 24))
    txt = jax.random.normal(k2, (12, 24))
    img, txt = (x / jnp.linalg.norm(x, axis=-1, keepdims=True) for x in (img, txt))
    got = filip_loss(img[:, None], txt[:, None], scale=13.0)
    want, _ = contrastive.softmax_infonce(img, txt, 13.0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.fixture(scope="module")
def exp_and_state(tmp_path_factory):
    exp = loop.Experiment(_cfg(), tmp_path_factory.mktemp("filip"))
    state, _ = exp.create_state()
    return exp, state


def test_method_loss_matches_float64_reference_with_padding(exp_and_state):
    exp, state = exp_and_state
    batch = _batch(exp)
    assert (batch["text"] == 0).any(), "the batch must contain padding for this test to mean anything"
    with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
        loss, metrics = jax.jit(filip.make_loss(exp.model, exp.config, None))(state.params, batch, None)
        v, mv, t, mt, scale = jax.jit(lambda p, b: filip.token_terms(exp.model, p, b["image"], b["text"], False))(
            state.params, batch
        )
    want = _filip_np(*(np.asarray(x) for x in (v, mv, t, mt)), float(scale))
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(mt), batch["text"] != 0)
    # Dropping padding matters: the unmasked loss differs (pads are real vectors after the tower).
    unmasked = _filip_np(np.asarray(v), np.asarray(mv), np.asarray(t), np.ones_like(np.asarray(mt)), float(scale))
    assert abs(unmasked - want) > 1e-4
    assert float(metrics["text_tokens"]) == pytest.approx(float((batch["text"] != 0).sum(1).mean()))


def test_unmasked_padding_ablation_scores_pad_tokens(exp_and_state):
    """mask_padding=False (the card's ablation) is the float64 loss with every text token, padding included."""
    exp, state = exp_and_state
    batch = _batch(exp)
    cfg = exp.config.copy_and_resolve_references()
    cfg.model.filip.mask_padding = False
    with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
        loss, metrics = jax.jit(filip.make_loss(exp.model, cfg, None))(state.params, batch, None)
        v, mv, t, mt, scale = jax.jit(
            lambda p, b: filip.token_terms(exp.model, p, b["image"], b["text"], False, mask_padding=False)
        )(state.params, batch)
    assert np.asarray(mt).all()
    want = _filip_np(*(np.asarray(x) for x in (v, mv, t, mt)), float(scale))
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    assert float(metrics["text_tokens"]) == batch["text"].shape[1]


def test_image_cls_takes_part_as_token_zero(tmp_path):
    """image_cls=True: the projected CLS (the pooled embedding) is image token 0 of the float64 loss."""
    cfg = _cfg("--config.model.image.pool=cls", "--config.model.filip.image_cls=True")
    exp = loop.Experiment(cfg, tmp_path)
    state, _ = exp.create_state()
    batch = _batch(exp)
    with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
        loss, _ = jax.jit(filip.make_loss(exp.model, cfg, None))(state.params, batch, None)
        v, mv, t, mt, scale = jax.jit(
            lambda p, b: filip.token_terms(exp.model, p, b["image"], b["text"], False, image_cls=True)
        )(state.params, batch)
        out = jax.jit(lambda p, b: exp.model.apply({"params": p}, filip.preprocess_images(b["image"]), b["text"],
                                                  return_tokens=True))(state.params, batch)
    assert v.shape[1] == out["img_tokens"].shape[1] + 1
    np.testing.assert_array_equal(np.asarray(v[:, 0]), np.asarray(out["img"]))
    np.testing.assert_array_equal(np.asarray(v[:, 1:]), np.asarray(out["img_tokens"]))
    want = _filip_np(*(np.asarray(x) for x in (v, mv, t, mt)), float(scale))
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    with pytest.raises(ValueError, match="pool='cls'"):
        filip.make_loss(exp.model, _cfg("--config.model.filip.image_cls=True"), None)
    # Unset (None), the CLS takes part whenever the tower has one, as the card's default.
    assert filip._options(_cfg("--config.model.image.pool=cls"))["image_cls"] is True
    assert filip._options(_cfg())["image_cls"] is False
    assert filip._options(_cfg("--config.model.image.pool=cls", "--config.model.filip.image_cls=False"))[
        "image_cls"] is False


@pytest.mark.parametrize("keep", [1.0, 0.5])
def test_sharded_loss_and_grads_equal_local(exp_and_state, keep):
    exp, state = exp_and_state
    assert exp.mesh.shape["data"] * exp.mesh.shape["fsdp"] == 8
    batch = _batch(exp)
    cfg = _cfg(f"--config.model.filip.token_keep_ratio={keep}")
    with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
        sharded = jax.jit(jax.value_and_grad(filip.make_loss(exp.model, cfg, exp.mesh), has_aux=True))
        (ls, _), gs = sharded(state.params, batch, None)
        if keep == 1.0:
            local = jax.jit(jax.value_and_grad(filip.make_loss(exp.model, cfg, None), has_aux=True))
            (ll, _), gl = local(state.params, batch, None)
        else:
            # NOTE: pruning ranks tokens among each device's *local* partners, so the local reference is
            # the per-shard selection (2 pairs per device) followed by the unpruned global loss.
            def ref(p):
                v, mv, t, mt, scale = filip.token_terms(exp.model, p, batch["image"], batch["text"], False)
                parts = [
                    filip.keep_top_tokens(v[s : s + 2], mv[s : s + 2], t[s : s + 2], mt[s : s + 2], keep)
                    for s in range(0, 16, 2)
                ]
                v, mv, t, mt = (jnp.concatenate(x) for x in zip(*parts))
                return filip_loss(v, t, mv, mt, scale)

            ll, gl = jax.jit(jax.value_and_grad(ref))(state.params)
    np.testing.assert_allclose(float(ls), float(ll), rtol=1e-5)
    # NOTE: float32 sums over 8 shards reassociate: an absolute floor of 1e-5 (gradients here are O(1); with the
    # causal text tower one element of 512 differed by 1.4e-6 at 1e-6) and 1e-4 relative.
    for a, b in zip(jax.tree.leaves(gs), jax.tree.leaves(gl)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_keep_top_tokens_selects_best_matched_tokens():
    rng = np.random.default_rng(0)
    v, t = rng.normal(size=(3, 8, 5)).astype(np.float32), rng.normal(size=(3, 6, 5)).astype(np.float32)
    mv = np.ones((3, 8), bool)
    mt = np.array([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4], bool)
    v2, mv2, t2, mt2 = filip.keep_top_tokens(jnp.asarray(v), jnp.asarray(mv), jnp.asarray(t), jnp.asarray(mt), 0.5)
    assert v2.shape == (3, 4, 5) and t2.shape == (3, 3, 5)
    valid_t = t.reshape(-1, 5)[mt.reshape(-1)]
    for i in range(3):
        best = (v[i] @ valid_t.T).max(1)
        np.testing.assert_array_equal(np.sort(np.asarray(v2[i]), 0), np.sort(v[i][np.argsort(-best)[:4]], 0))
        # A text keeps its valid tokens first; the masked ones only fill up and stay masked.
        n_valid = min(3, mt[i].sum())
        assert np.asarray(mt2[i]).sum() == n_valid
    # ratio 1 keeps every token (a permutation), so the loss is unchanged.
    full = filip.keep_top_tokens(jnp.asarray(v), jnp.asarray(mv), jnp.asarray(t), jnp.asarray(mt), 1.0)
    np.testing.assert_allclose(
        filip_loss(*full[:1], full[2], full[1], full[3], scale=7.0),
        filip_loss(jnp.asarray(v), jnp.asarray(t), jnp.asarray(mv), jnp.asarray(mt), scale=7.0),
        rtol=1e-6,
    )


def test_finegrained_negatives_change_one_word_and_are_false():
    from vljax.data.world import World

    cfg = _cfg()
    wcfg = cfg.data.world.copy_and_resolve_references()
    wcfg.objects.count = (2, 3)
    world = World(wcfg)
    split = finegrained.build_split(world, "test", 20, 3)
    assert len(split["captions"]) >= 15
    for caps, changed, idx in zip(split["captions"], split["changed"], split["index"]):
        truth, negs = caps[0], caps[1:]
        assert len(set(caps)) == 4 and len(set(changed)) >= 2
        spec = world.scene("test", int(idx))
        assert spec.num_objects >= 2
        for neg in negs:
            a, b = truth.split(), neg.split()
            assert len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == 1


def test_finegrained_metrics_from_scores():
    scores = np.array([[0.9, 0.1, 0.2, 0.95], [0.5, 0.4, 0.3, 0.1]])
    m = finegrained.metrics_from_scores(scores, [["color", "shape", "size"], ["color", "size", "size"]])
    assert m["pair_acc"] == pytest.approx(5 / 6) and m["r1"] == 0.5
    assert m["pair_acc_size"] == pytest.approx(2 / 3) and m["pair_acc_color"] == 1.0


@pytest.mark.slow  # ~25 s of CPU, but well over 60 s of wall time on the shared 2-core machine
def test_two_train_steps_and_finegrained_eval(tmp_path):
    res = loop.train_and_evaluate(_cfg("--config.train.steps=2"), tmp_path)
    assert res["train_steps"] == 2
    assert {"finegrained/pair_acc", "finegrained/r1", "zeroshot/shape_acc", "retrieval/i2t_r1"} <= set(res)
    assert 0.0 <= res["finegrained/pair_acc"] <= 1.0 and res["finegrained/n_images"] >= 16


def test_config_uses_the_cards_causal_text_tower():
    # The card's text encoder is causal; with bidirectional text the word -> patch alignment did not form
    # (docs/METHODS.md). CLIP keeps the preset's bidirectional default.
    assert _cfg().model.text.causal is True
    assert load_config("configs/clip.py:tiny", []).model.text.causal is False


@pytest.mark.parametrize("keep", [1.0, 0.5])
def test_flops_count_matches_compiled_forward(tmp_path, keep):
    """The MFU count includes the token projections and the token-wise similarity (most of the forward at these
    dims: B 32, 16 patches, 16 text tokens, E 64); XLA's count of the naive path adds only elementwise work."""
    from vljax.experiments import flops

    cfg = _cfg("--config.model.filip.impl=naive", f"--config.model.filip.token_keep_ratio={keep}",
               "--config.train.batch_size=32", "--config.model.embed_dim=64")
    exp = loop.Experiment(cfg, tmp_path)
    state, _ = exp.create_state()
    # NOTE: host copies, no mesh: XLA's cost analysis is per device, and the count is for the whole batch.
    batch, params = jax.device_get(_batch(exp)), jax.device_get(state.params)
    loss_fn = filip.make_loss(exp.model, cfg, None)
    per_example = flops.compiled_flops_per_call(lambda p, b: loss_fn(p, b, None)[0], params, batch) / 32
    count = filip.forward_flops_per_example(cfg)
    kept = 16 if keep == 1.0 else 8
    similarity = 2.0 * 32 * kept * kept * 64  # 2 B Nv' Nt' E
    selection = 0.0  # XLA's count of the uncounted local scoring that picks the kept tokens
    if keep < 1.0:
        terms = jax.jit(lambda p, b: filip.token_terms(exp.model, p, b["image"], b["text"], False))(params, batch)
        pick = lambda v, mv, t, mt: filip.keep_top_tokens(v, mv, t, mt, keep)
        selection = flops.compiled_flops_per_call(pick, *terms[:4]) / 32
        assert selection >= 2 * 2.0 * 16 * 32 * 16 * 64  # [b, n, b n] scores for each side
    assert similarity > 0.2 * count  # the term the CLIP count leaves out is a real share here
    # NOTE: the rest of XLA's number is elementwise work the count leaves out (norms, GELU, softmax, masks): about
    # 0.2 MFLOP per example at these tiny widths, 10% of the keep=1 forward and 14% of the keep=0.5 one.
    assert 0.85 * (per_example - selection) <= count <= per_example - selection, (count, per_example)
    assert filip.train_flops_per_example(cfg) == pytest.approx(3 * count)


def test_flops_similarity_term_uses_the_micro_batch():
    whole = filip.forward_flops_per_example(_cfg())
    accum = filip.forward_flops_per_example(_cfg("--config.train.grad_accum_steps=2"))
    # B 16 -> micro-batches of 8: the similarity term (2 B Nv Nt E = 2 x 16 x 16 x 16 x 16) halves.
    assert whole - accum == pytest.approx(2.0 * 8 * 16 * 16 * 16)
