"""Vocabulary-chunked cross-entropy: same loss, metrics and gradients as full logits, far less memory."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vljax.config import load_config
from vljax.data.tokenizer import BOS
from vljax.losses import lm as lm_loss
from vljax.methods import get_method
from vljax.models.causal_lm import CausalLM


def _problem(seed, b=3, t=7, d=16, v=37, dtype=np.float32):
    """Random non-zero hidden [B, T, D], unembed [D, V], targets, mask (every row supervised), weights."""
    rng = np.random.default_rng(seed)
    hidden = rng.normal(0.0, 1.0, (b, t, d)).astype(dtype)
    unembed = rng.normal(0.0, 0.5, (d, v)).astype(dtype)
    targets = rng.integers(0, v, (b, t)).astype(np.int32)
    mask = rng.random((b, t)) < 0.7
    mask[:, 0] = True
    weights = rng.uniform(0.2, 2.0, (b, t)).astype(np.float32)
    return hidden, unembed, targets, mask, weights


def _np_reference(hidden, unembed, targets, mask, weights):
    """float64 numpy: token-normalised weighted NTP loss and its grads w.r.t. hidden and unembed."""
    h, w = hidden.astype(np.float64), unembed.astype(np.float64)
    z = h @ w                                                            # [B, T, V]
    z = z - z.max(-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    nll = -np.log(np.take_along_axis(p, targets[..., None], -1)[..., 0])
    m = mask.astype(np.float64)
    coef = m * weights / m.sum()                                         # d loss / d nll_t
    loss = (coef * nll).sum()
    dz = (p - np.eye(w.shape[1])[targets]) * coef[..., None]             # [B, T, V]
    return loss, np.einsum("btv,dv->btd", dz, w), np.einsum("btd,btv->dv", h, dz)


def _grads(loss_fn, hidden, unembed):
    return jax.jit(jax.value_and_grad(lambda h, w: loss_fn(h, w)[0], argnums=(0, 1)))(hidden, unembed)


@pytest.mark.parametrize("chunk", [8, 16, 37, 64])  # NOTE: 8 and 16 leave a ragged last chunk of V = 37.
def test_chunked_equals_full_logits_in_float32(chunk):
    hidden, unembed, targets, mask, weights = _problem(0)
    # NOTE: make about half the supervised targets the argmax so token_accuracy is not trivially 0.
    logits = np.einsum("btd,dv->btv", hidden, unembed)
    targets = np.where(np.random.default_rng(1).random(targets.shape) < 0.5, logits.argmax(-1), targets)
    full = lambda h, w: lm_loss.next_token_loss(jnp.einsum("btd,dv->btv", h, w), targets, mask, weights)
    chunked = lambda h, w: lm_loss.chunked_next_token_loss(h, w, targets, mask, weights, chunk_size=chunk)
    (l_full, m_full), (l_chunk, m_chunk) = full(hidden, unembed), jax.jit(chunked)(hidden, unembed)
    assert set(m_chunk) == set(m_full) == {"nll", "token_accuracy", "supervised_tokens"}
    np.testing.assert_allclose(l_chunk, l_full, rtol=1e-5)
    for k in m_full:
        np.testing.assert_allclose(m_chunk[k], m_full[k], rtol=1e-5, err_msg=k)
    assert 0.2 < float(m_chunk["token_accuracy"]) < 1.0
    _, (gh_full, gw_full) = _grads(full, hidden, unembed)
    _, (gh, gw) = _grads(chunked, hidden, unembed)
    np.testing.assert_allclose(gh, gh_full, rtol=1e-5, atol=1e-5 * float(np.abs(gh_full).max()))
    np.testing.assert_allclose(gw, gw_full, rtol=1e-5, atol=1e-5 * float(np.abs(gw_full).max()))


def test_chunked_matches_float64_numpy_reference():
    hidden, unembed, targets, mask, weights = _problem(2, v=50)
    ref_loss, ref_gh, ref_gw = _np_reference(hidden, unembed, targets, mask, weights)
    loss, (gh, gw) = _grads(
        lambda h, w: lm_loss.chunked_next_token_loss(h, w, targets, mask, weights, chunk_size=16), hidden, unembed
    )
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    np.testing.assert_allclose(gh, ref_gh, rtol=1e-5, atol=1e-6 * np.abs(ref_gh).max())
    np.testing.assert_allclose(gw, ref_gw, rtol=1e-5, atol=1e-6 * np.abs(ref_gw).max())


def test_chunked_segment_normalisation_with_weights_equals_full():
    hidden, unembed, targets, mask, weights = _problem(3, b=2, t=12)
    segment_ids = np.array([[1] * 5 + [2] * 4 + [3] * 2 + [0], [1] * 8 + [2] * 4], np.int32)
    mask = mask & (segment_ids > 0)
    mask[:, [0, 5, 9]] = True
    mask[1, 8] = True
    kw = dict(weights=weights, segment_ids=segment_ids, normalize="segment")
    full = lambda h, w: lm_loss.next_token_loss(jnp.einsum("btd,dv->btv", h, w), targets, mask, **kw)
    chunked = lambda h, w: lm_loss.chunked_next_token_loss(h, w, targets, mask, chunk_size=10, **kw)
    l_full, (gh_full, gw_full) = _grads(full, hidden, unembed)
    l_chunk, (gh, gw) = _grads(chunked, hidden, unembed)
    # NOTE: segment normalisation differs from the token mean here (uneven segment sizes).
    assert abs(float(l_full) - float(full(hidden, unembed)[1]["nll"])) > 1e-3
    np.testing.assert_allclose(l_chunk, l_full, rtol=1e-5)
    np.testing.assert_allclose(gh, gh_full, rtol=1e-5, atol=1e-5 * float(np.abs(gh_full).max()))
    np.testing.assert_allclose(gw, gw_full, rtol=1e-5, atol=1e-5 * float(np.abs(gw_full).max()))


def test_chunked_bfloat16_inputs_accumulate_in_float32():
    hidden, unembed, targets, mask, weights = _problem(4, b=4, t=16, d=32, v=300)
    h16, w16 = jnp.asarray(hidden, jnp.bfloat16), jnp.asarray(unembed, jnp.bfloat16)
    # NOTE: the reference sees the same bf16-rounded inputs, so only the computation's error is measured.
    ref_loss, ref_gh, ref_gw = _np_reference(np.asarray(h16, np.float64), np.asarray(w16, np.float64),
                                             targets, mask, weights)
    loss, (gh, gw) = _grads(
        lambda h, w: lm_loss.chunked_next_token_loss(h, w, targets, mask, weights, chunk_size=64), h16, w16
    )
    assert loss.dtype == jnp.float32 and gh.dtype == jnp.bfloat16 and gw.dtype == jnp.bfloat16
    # NOTE: logits and sums are float32, so the loss is float32-accurate; the grads are rounded to
    # bfloat16 on output (8 mantissa bits: relative error <= 2^-8 per element, plus summation error).
    np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(gh, np.float64), ref_gh, rtol=0, atol=1e-2 * np.abs(ref_gh).max())
    np.testing.assert_allclose(np.asarray(gw, np.float64), ref_gw, rtol=0, atol=1e-2 * np.abs(ref_gw).max())


def test_chunked_rejects_bad_chunk_size_and_shapes():
    hidden, unembed, targets, mask, _ = _problem(5)
    with pytest.raises(ValueError, match="chunk_size"):
        lm_loss.chunked_next_token_loss(hidden, unembed, targets, mask, chunk_size=0)
    with pytest.raises(ValueError, match="unembed"):
        lm_loss.chunked_next_token_loss(hidden, unembed.T, targets, mask)


def _temp_bytes(fn, *args):
    return jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes


def test_chunked_grad_temp_memory_is_far_below_full_logits():
    n, d, v = 2048, 64, 32768  # B*T = 2048 tokens, 32k vocabulary: full float32 logits are 256 MiB.
    hidden = jax.ShapeDtypeStruct((1, n, d), jnp.float32)
    unembed = jax.ShapeDtypeStruct((d, v), jnp.float32)
    targets = jnp.zeros((1, n), jnp.int32)
    mask = jnp.ones((1, n), bool)
    full = jax.grad(lambda h, w: lm_loss.next_token_loss(jnp.einsum("btd,dv->btv", h, w), targets, mask)[0],
                    argnums=(0, 1))
    chunked = jax.grad(lambda h, w: lm_loss.chunked_next_token_loss(h, w, targets, mask, chunk_size=2048)[0],
                       argnums=(0, 1))
    t_full, t_chunk = _temp_bytes(full, hidden, unembed), _temp_bytes(chunked, hidden, unembed)
    assert t_full >= n * v * 4, t_full  # NOTE: sanity: the full path does hold [N, V] float32 logits.
    # NOTE: measured 1024 MiB vs 17 MiB; chunked holds about two [N, chunk] float32 blocks (logits, dz).
    assert t_chunk < 3 * n * 2048 * 4, t_chunk
    assert t_full / t_chunk > 20, (t_full, t_chunk)


# ----- model side: hidden states @ unembedding == logits -----


@pytest.mark.parametrize("tie", [True, False])
def test_causal_lm_hidden_times_unembedding_is_logits(tie):
    model = CausalLM(vocab_size=29, width=16, depth=1, num_heads=2, mlp_dim=32, tie_embeddings=tie)
    tokens = jnp.asarray(np.random.default_rng(6).integers(0, 29, (2, 5)), jnp.int32)
    shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.key(0), tokens)["params"])
    rng = np.random.default_rng(7)
    params = jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.3, s.shape), s.dtype), shapes)
    assert ("lm_head" in params) == (not tie)
    logits = model.apply({"params": params}, tokens)
    hidden = model.apply({"params": params}, tokens, return_hidden=True)
    unembed = model.apply({"params": params}, method=CausalLM.unembedding)
    assert hidden.shape == (2, 5, 16) and unembed.shape == (16, 29)
    np.testing.assert_allclose(jnp.einsum("btd,dv->btv", hidden, unembed), logits, rtol=1e-5, atol=1e-5)


# NOTE: the tiny LVLM of tests/test_lvlm.py (one override list for every LVLM test).
from test_lvlm import SMALL, VOCAB  # noqa: E402


def test_lvlm_ntp_loss_chunked_equals_full():
    # NOTE: tiny ties the embeddings; the untied unembedding is checked on CausalLM above.
    method = get_method("lvlm_ntp")
    overrides = SMALL
    cfg_full = load_config("configs/lvlm_ntp.py:tiny", overrides)
    cfg_chunk = load_config("configs/lvlm_ntp.py:tiny", overrides + ["--config.loss_vocab_chunk=16"])
    assert cfg_full.loss_vocab_chunk == 0
    model = method.build(cfg_full, vocab_size=VOCAB)
    rng = np.random.default_rng(8)
    n_img = method.build_static(cfg_full).num_image_tokens()
    tokens = rng.integers(10, VOCAB, size=(4, 12)).astype(np.int32)
    tokens[:, 0], tokens[:, 1 : 1 + n_img] = BOS, 4
    label = np.zeros((4, 12), bool)
    label[:, 7:11] = True
    batch = {"image": rng.integers(0, 255, size=(4, 32, 32, 3), dtype=np.uint8), "tokens": tokens,
             "label_mask": label}
    shapes = nn.meta.unbox(jax.eval_shape(lambda r: method.init_params(model, cfg_full, r), jax.random.key(0)))
    params = jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.2, s.shape), s.dtype), shapes)
    weights = jnp.asarray(rng.uniform(0.5, 1.5, (4, 12)), jnp.float32)
    out = {}
    for name, cfg in (("full", cfg_full), ("chunk", cfg_chunk)):
        fn = lambda p: method.ntp_loss(model, p, batch, jax.random.key(1), cfg, weights=weights)
        out[name] = jax.jit(jax.value_and_grad(fn, has_aux=True))(params)
    (l_full, m_full), g_full = out["full"]
    (l_chunk, m_chunk), g_chunk = out["chunk"]
    np.testing.assert_allclose(l_chunk, l_full, rtol=1e-5)
    assert set(m_chunk) == set(m_full)
    for k in m_full:
        np.testing.assert_allclose(m_chunk[k], m_full[k], rtol=1e-5, err_msg=k)
    gmax = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(g_full))
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(g_full), jax.tree.leaves(g_chunk)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * gmax, err_msg=jax.tree_util.keystr(path))


@pytest.mark.slow
def test_lvlm_ntp_chunked_loss_on_a_sharded_mesh_equals_full_on_one_device():
    from vljax import sharding as shard_lib

    method = get_method("lvlm_ntp")
    rng = np.random.default_rng(9)
    tokens = rng.integers(10, VOCAB, size=(8, 12)).astype(np.int32)
    cfg = load_config("configs/lvlm_ntp.py:tiny", SMALL)
    tokens[:, 0], tokens[:, 1 : 1 + method.build_static(cfg).num_image_tokens()] = BOS, 4
    label = np.zeros((8, 12), bool)
    label[:, 7:11] = True
    batch = {"image": rng.integers(0, 255, size=(8, 32, 32, 3), dtype=np.uint8), "tokens": tokens,
             "label_mask": label}
    values = None
    out = {}
    for name, sizes, devices, chunk in (("full", {"data": 1}, jax.devices()[:1], 0),
                                        ("chunk", {"data": 2, "fsdp": 2, "tensor": 2}, jax.devices(), 16)):
        cfg = load_config("configs/lvlm_ntp.py:tiny", SMALL + [f"--config.loss_vocab_chunk={chunk}"])
        mesh = shard_lib.make_mesh(sizes, devices)
        rules = shard_lib.rules_from_config(cfg.sharding.rules)
        with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
            model = method.build(cfg, vocab_size=VOCAB)
            boxed = jax.eval_shape(lambda r: method.init_params(model, cfg, r), jax.random.key(0))
        shardings = shard_lib.logical_to_mesh_sharding(nn.get_partition_spec(boxed), mesh, rules)
        if values is None:
            values = jax.tree.map(lambda s: rng.normal(0.0, 0.2, s.shape).astype(s.dtype), nn.meta.unbox(boxed))
        params = jax.tree.map(jax.device_put, values, shardings)
        with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
            loss_fn = method.make_loss(model, cfg, mesh)
            gb = shard_lib.host_to_global(batch, mesh)
            out[name] = jax.jit(jax.value_and_grad(lambda p, b: loss_fn(p, b, jax.random.key(1))[0]))(params, gb)
    (l_full, g_full), (l_chunk, g_chunk) = out["full"], out["chunk"]
    np.testing.assert_allclose(float(l_chunk), float(l_full), rtol=1e-5)
    gmax = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(g_full))
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(g_full), jax.tree.leaves(g_chunk)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-4 * gmax, rtol=0,
                                   err_msg=jax.tree_util.keystr(path))
