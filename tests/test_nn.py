"""vljax.nn: attention vs a float64 numpy reference, norms, MLP, blocks, embeddings, pooling."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from scipy.special import erf

from vljax.nn.attention import (
    MultiHeadAttention,
    dot_product_attention,
    fused_attention,
    make_attention_mask,
    resolve_attention_impl,
)
from vljax.nn.embeddings import LearnedPosEmb, PatchEmbed, TokenEmbed, apply_rope, posemb_sincos_2d, resample_posemb
from vljax.nn.mlp import Mlp
from vljax.nn.norms import make_norm
from vljax.nn.pooling import MAPHead, Pool, eos_index, gap_pool, last_token_index
from vljax.nn.transformer import Block, Encoder, block_class

F32_TOL = dict(rtol=1e-5, atol=1e-5)


def _np(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), nn.meta.unbox(tree))


def _rope_np(x, pos, max_wavelength=10_000.0):
    half = x.shape[-1] // 2
    inv = 1.0 / max_wavelength ** (np.arange(half) / half)
    ang = pos[..., None].astype(np.float64) * inv
    sin, cos = np.sin(ang)[:, :, None], np.cos(ang)[:, :, None]
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)


def _attention_np(p, xq, xkv, kv_mask, causal, rope):
    """Naive float64 multi-head attention with GQA by repeating kv heads."""
    q = np.einsum("bnd,dhk->bnhk", xq, p["query_kernel"]) + p["query_bias"]
    k = np.einsum("bnd,dhk->bnhk", xkv, p["key_kernel"]) + p["key_bias"]
    v = np.einsum("bnd,dhk->bnhk", xkv, p["value_kernel"]) + p["value_bias"]
    b, nq, h, kd = q.shape
    nk = k.shape[1]
    if rope:
        q = _rope_np(q, np.broadcast_to(np.arange(nq), (b, nq)))
        k = _rope_np(k, np.broadcast_to(np.arange(nk), (b, nk)))
    rep = h // k.shape[2]
    k, v = np.repeat(k, rep, axis=2), np.repeat(v, rep, axis=2)
    out = np.zeros((b, nq, h, v.shape[-1]))
    for bi in range(b):
        for hi in range(h):
            s = q[bi, :, hi] @ k[bi, :, hi].T / np.sqrt(kd)
            allowed = np.ones((nq, nk), bool)
            if kv_mask is not None:
                allowed &= kv_mask[bi][None, :]
            if causal:
                allowed &= np.tril(np.ones((nq, nk), bool), k=nk - nq)
            s = np.where(allowed, s, -np.inf)
            s = np.exp(s - s.max(-1, keepdims=True))
            out[bi, :, hi] = (s / s.sum(-1, keepdims=True)) @ v[bi, :, hi]
    return np.einsum("bnhk,hkd->bnd", out, p["out_kernel"]) + p["out_bias"]


@pytest.mark.parametrize(
    "causal,num_kv_heads,rope,cross",
    [(True, None, False, False), (True, 2, True, False), (False, 1, True, False), (False, 2, False, True)],
)
def test_attention_matches_float64_reference(causal, num_kv_heads, rope, cross):
    rng = np.random.default_rng(0)
    b, nq, d = 2, 5, 16
    nk = 7 if cross else nq
    xq = rng.normal(size=(b, nq, d)).astype(np.float32)
    xkv = rng.normal(size=(b, nk, d)).astype(np.float32) if cross else None
    kv_mask = np.ones((b, nk), bool)
    kv_mask[1, -2:] = False
    mod = MultiHeadAttention(num_heads=4, num_kv_heads=num_kv_heads, causal=causal, use_rope=rope)
    params = jax.jit(mod.init)(jax.random.key(1), xq, xkv)
    # NOTE: non-zero biases so the reference checks them too.
    params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(2), a.shape), params)
    got = jax.jit(lambda p: mod.apply(p, xq, xkv, kv_mask=kv_mask))(params)
    ref = _attention_np(
        _np(params)["params"], xq.astype(np.float64), (xkv if cross else xq).astype(np.float64), kv_mask, causal, rope
    )
    np.testing.assert_allclose(np.asarray(got), ref, **F32_TOL)


def test_fully_masked_row_is_finite_with_finite_grads():
    x = jax.random.normal(jax.random.key(0), (2, 4, 8))
    kv_mask = jnp.array([[True] * 4, [False] * 4])
    mod = MultiHeadAttention(num_heads=2)
    params = jax.jit(mod.init)(jax.random.key(1), x)
    loss = lambda p: jnp.sum(mod.apply(p, x, kv_mask=kv_mask) ** 2)
    value, grads = jax.jit(jax.value_and_grad(loss))(params)
    assert np.isfinite(float(value))
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


def test_causal_mask_aligned_to_end_and_bad_shapes():
    m = make_attention_mask(None, True, nq=2, nk=4, batch=1)
    np.testing.assert_array_equal(np.asarray(m[0]), [[1, 1, 1, 0], [1, 1, 1, 1]])
    with pytest.raises(ValueError, match="kv_mask"):
        make_attention_mask(jnp.ones((1, 3), bool), False, 2, 4, 1)
    with pytest.raises(ValueError, match="num_kv_heads"):
        bad = MultiHeadAttention(num_heads=4, num_kv_heads=3)
        jax.jit(bad.init)(jax.random.key(0), jnp.ones((1, 2, 8)))


def test_attention_dropout_needs_rng_and_changes_output():
    x = jax.random.normal(jax.random.key(0), (2, 6, 8))
    mod = MultiHeadAttention(num_heads=2, dropout_rate=0.5)
    params = jax.jit(mod.init)(jax.random.key(1), x)
    det = jax.jit(mod.apply)(params, x)
    drop = jax.jit(lambda p: mod.apply(p, x, deterministic=False, rngs={"dropout": jax.random.key(3)}))(params)
    assert not np.allclose(np.asarray(det), np.asarray(drop))


@pytest.mark.parametrize("hkv", [4, 2])
@pytest.mark.parametrize("masked", [False, True])
def test_fused_attention_adaptor_matches_einsum_path(hkv, masked):
    # The cuDNN path goes through fused_attention; its layout, scale and GQA grouping are checked here with
    # jax.nn's XLA implementation (same call, any backend). f32 tolerance 1e-5 (different summation order).
    kq, kk, kv, km, kb = jax.random.split(jax.random.key(7), 5)
    q = jax.random.normal(kq, (2, 5, 4, 8))
    k = jax.random.normal(kk, (2, 7, hkv, 8))
    v = jax.random.normal(kv, (2, 7, hkv, 8))
    mask = jax.random.bernoulli(km, 0.7, (2, 5, 7)).at[:, :, 0].set(True) if masked else None
    bias = jax.random.normal(kb, (2, 1, 1, 7)) if masked else None
    ref = dot_product_attention(q, k, v, mask, bias=bias, impl="xla")
    got = fused_attention(q, k, v, mask, bias=bias, dtype=jnp.float32, implementation="xla")
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [16, 20])
def test_pallas_flash_attention_matches_einsum_path(n):
    # jax's Pallas flash-attention kernel in interpret mode; n = 20 pads to 32 with masked segment ids.
    # f32 tolerance 1e-5 (online softmax vs a materialized one).
    from vljax.nn.attention import pallas_attention

    kq, kk, kv, kw = jax.random.split(jax.random.key(3), 4)
    q, k, v = (jax.random.normal(key, (2, n, 2, 16)) for key in (kq, kk, kv))
    w = jax.random.normal(kw, (2, n, 2, 16))
    ref_loss = lambda q, k, v: jnp.sum(dot_product_attention(q, k, v, impl="xla") * w)
    got_loss = lambda q, k, v: jnp.sum(pallas_attention(q, k, v, dtype=jnp.float32, block=16) * w)
    ref = jax.value_and_grad(ref_loss, argnums=(0, 1, 2))(q, k, v)
    got = jax.jit(jax.value_and_grad(got_loss, argnums=(0, 1, 2)))(q, k, v)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="self-attention"):
        pallas_attention(q, k[:, :8], v[:, :8])
    # Through dot_product_attention, cross-attention under 'pallas' keeps the XLA path.
    cross = dot_product_attention(q, k[:, :8], v[:, :8], impl="pallas")
    np.testing.assert_array_equal(np.asarray(cross), np.asarray(dot_product_attention(q, k[:, :8], v[:, :8])))


def test_tpu_flash_attention_matches_einsum_path_in_the_tpu_interpreter():
    # jax's TPU flash attention (attention_impl='pallas' on TPU) in jax's TPU interpreter: 20 tokens pad to one
    # 128-token block with masked segment ids. f32 forward and gradients within 1e-5 of the XLA path.
    from jax.experimental.pallas import tpu as pltpu

    from vljax.nn.attention import tpu_flash_attention

    kq, kk, kv, kw = jax.random.split(jax.random.key(4), 4)
    q, k, v = (jax.random.normal(key, (2, 20, 2, 16)) for key in (kq, kk, kv))
    w = jax.random.normal(kw, (2, 20, 2, 16))
    ref_loss = lambda q, k, v: jnp.sum(dot_product_attention(q, k, v, impl="xla") * w)
    got_loss = lambda q, k, v: jnp.sum(tpu_flash_attention(q, k, v, dtype=jnp.float32) * w)
    ref = jax.value_and_grad(ref_loss, argnums=(0, 1, 2))(q, k, v)
    with pltpu.force_tpu_interpret_mode():
        got = jax.jit(jax.value_and_grad(got_loss, argnums=(0, 1, 2)))(q, k, v)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_pallas_attention_runs_per_batch_shard_under_a_mesh():
    # Under a data-4 mesh the (interpreted Triton) kernel runs on each shard's 2 of 8 samples and equals XLA's.
    from vljax.nn.attention import pallas_attention
    from vljax.sharding import make_mesh

    q, k, v = (jax.random.normal(key, (8, 20, 2, 16)) for key in jax.random.split(jax.random.key(5), 3))
    mesh = make_mesh({"data": 4, "tensor": 2})
    with jax.set_mesh(mesh):
        sharded = [jax.device_put(x, jax.NamedSharding(mesh, jax.P("data"))) for x in (q, k, v)]
        fn = jax.jit(lambda q, k, v: pallas_attention(q, k, v, dtype=jnp.float32, block=16))
        got = fn(*sharded)
        text = fn.lower(*sharded).as_text()
    np.testing.assert_allclose(np.asarray(got), np.asarray(dot_product_attention(q, k, v, impl="xla")),
                               rtol=1e-5, atol=1e-5)
    assert "sdy.manual_computation" in text and "tensor<2x32x2x16xf32>" in text


def test_attention_impl_resolution_and_errors():
    kw = dict(dtype=jnp.bfloat16, head_dim=64, masked=False, dropout=False)
    assert resolve_attention_impl("auto", backend="gpu", **kw) == "cudnn"
    assert resolve_attention_impl("auto", backend="cpu", **kw) == "xla"
    assert resolve_attention_impl("auto", backend="tpu", **kw) == "xla"
    # Masked (text padding), float32, dropout or an odd head dim keep the XLA path.
    assert resolve_attention_impl("auto", backend="gpu", **{**kw, "masked": True}) == "xla"
    assert resolve_attention_impl("auto", backend="gpu", **{**kw, "dtype": jnp.float32}) == "xla"
    assert resolve_attention_impl("auto", backend="gpu", **{**kw, "dropout": True}) == "xla"
    assert resolve_attention_impl("auto", backend="gpu", **{**kw, "head_dim": 12}) == "xla"
    assert resolve_attention_impl("xla", backend="gpu", **kw) == "xla"
    with pytest.raises(ValueError, match="needs a GPU"):
        resolve_attention_impl("cudnn", backend="cpu", **kw)
    # 'pallas' takes the unmasked calls only (interpret mode off-GPU), so one setting serves both towers.
    assert resolve_attention_impl("pallas", backend="cpu", **kw) == "pallas"
    assert resolve_attention_impl("pallas", backend="gpu", **{**kw, "masked": True}) == "xla"
    with pytest.raises(ValueError, match="not one of"):
        resolve_attention_impl("flash", backend="gpu", **kw)
    # Through the module: an unknown impl fails at trace time, 'auto' on this CPU equals 'xla'.
    x = jax.random.normal(jax.random.key(0), (2, 6, 8))
    params = jax.jit(MultiHeadAttention(num_heads=2).init)(jax.random.key(1), x)
    with pytest.raises(ValueError, match="attention_impl"):
        MultiHeadAttention(num_heads=2, attention_impl="flash").apply(params, x)
    auto = MultiHeadAttention(num_heads=2, attention_impl="auto").apply(params, x)
    xla = MultiHeadAttention(num_heads=2, attention_impl="xla").apply(params, x)
    np.testing.assert_array_equal(np.asarray(auto), np.asarray(xla))


def test_auto_attention_falls_back_to_xla_and_says_why(monkeypatch, caplog):
    from vljax.nn import attention as attn

    def unavailable(*args, **kwargs):
        raise RuntimeError("cuDNN is not detected.")

    # As on a GPU where jax cannot use cuDNN: 'auto' resolves to cudnn, the call raises at trace time.
    monkeypatch.setattr(attn, "resolve_attention_impl", lambda impl, **kw: "cudnn")
    monkeypatch.setattr(attn, "fused_attention", unavailable)
    monkeypatch.setattr(attn, "_FALLBACK_WARNED", set())
    q, k, v = jax.random.normal(jax.random.key(0), (3, 2, 4, 2, 8))
    with caplog.at_level("WARNING"):
        got = attn.dot_product_attention(q, k, v, impl="auto")
        attn.dot_product_attention(q, k, v, impl="auto")
    ref = dot_product_attention(q, k, v, impl="xla")
    np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))
    warnings = [r for r in caplog.records if "cuDNN is not detected" in r.getMessage()]
    assert len(warnings) == 1  # once per reason, not once per layer
    with pytest.raises(RuntimeError, match="not detected"):
        attn.dot_product_attention(q, k, v, impl="cudnn")


def test_rope_matches_numpy_and_preserves_norm():
    x = jax.random.normal(jax.random.key(0), (2, 5, 3, 8))
    pos = jnp.broadcast_to(jnp.arange(5) * 3, (2, 5))
    got = apply_rope(x, pos)
    np.testing.assert_allclose(np.asarray(got), _rope_np(np.asarray(x, np.float64), np.asarray(pos)), **F32_TOL)
    np.testing.assert_allclose(jnp.linalg.norm(got, axis=-1), jnp.linalg.norm(x, axis=-1), rtol=1e-5)


@pytest.mark.parametrize("kind", ["layernorm", "rmsnorm"])
def test_norms_match_numpy(kind):
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(3, 5, 16)).astype(np.float32)
    mod = make_norm(kind)
    params = jax.jit(mod.init)(jax.random.key(0), x)
    params = jax.tree.map(lambda a: a + jax.random.normal(jax.random.key(1), a.shape), params)
    p = _np(params)["params"]
    xd = x.astype(np.float64)
    if kind == "layernorm":
        ref = (xd - xd.mean(-1, keepdims=True)) / np.sqrt(xd.var(-1, keepdims=True) + 1e-6)
        ref = ref * p["scale"] + p["bias"]
    else:
        ref = xd / np.sqrt((xd**2).mean(-1, keepdims=True) + 1e-6) * p["scale"]
    np.testing.assert_allclose(np.asarray(mod.apply(params, x)), ref, **F32_TOL)
    with pytest.raises(ValueError, match="norm"):
        make_norm("batchnorm")


def test_gelu_matches_float64_with_derivative():
    from vljax.nn.mlp import gelu

    # NOTE: the erf form loses relative accuracy for x << 0 (1 + erf rounds), so the bound is absolute
    x = np.concatenate([np.linspace(-12, 12, 2401), np.random.default_rng(0).normal(size=500) * 3])
    val, grad = jax.jit(jax.vmap(jax.value_and_grad(gelu)))(jnp.asarray(x, jnp.float32))
    cdf, pdf = 0.5 * (1 + erf(x / np.sqrt(2))), np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)
    np.testing.assert_allclose(np.asarray(val, np.float64), x * cdf, rtol=1e-6, atol=2e-6)
    np.testing.assert_allclose(np.asarray(grad, np.float64), cdf + x * pdf, rtol=1e-6, atol=2e-6)


@pytest.mark.parametrize("backend", ["cpu", "gpu"])  # CPU runs the MLP on flattened rows, elsewhere on [B, N, D]
@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh", "quick_gelu", "swiglu"])
def test_mlp_matches_numpy(activation, backend, monkeypatch):
    from vljax.kernels import tiling

    monkeypatch.setattr(tiling, "backend", lambda: backend)
    x = np.random.default_rng(0).normal(size=(2, 3, 8)).astype(np.float32)
    mod = Mlp(mlp_dim=12, activation=activation)
    params = jax.jit(mod.init)(jax.random.key(0), x)
    params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(1), a.shape), params)
    p, xd = _np(params)["params"], x.astype(np.float64)
    got = jax.jit(mod.apply)(params, x)
    h = xd @ p["wi"]["kernel"] + p["wi"]["bias"]
    sig = lambda u: 1 / (1 + np.exp(-u))
    h = {
        "gelu": lambda u: 0.5 * u * (1 + erf(u / np.sqrt(2))),
        "gelu_tanh": lambda u: 0.5 * u * (1 + np.tanh(np.sqrt(2 / np.pi) * (u + 0.044715 * u**3))),
        "quick_gelu": lambda u: u * sig(1.702 * u),
        "swiglu": lambda u: u * sig(u) * (xd @ p["wi_gate"]["kernel"] + p["wi_gate"]["bias"]),
    }[activation](h)
    ref = h @ p["wo"]["kernel"] + p["wo"]["bias"]
    np.testing.assert_allclose(np.asarray(got), ref, **F32_TOL)


@pytest.mark.parametrize(
    "x_shape,k_shape,n",
    [((2, 5, 8), (8, 12), 1), ((2, 5, 8), (8, 3, 4), 1), ((2, 5, 3, 4), (3, 4, 8), 2), ((2, 4, 4, 6), (6, 10), 1)],
)
def test_contract_matches_float64_with_gradients(x_shape, k_shape, n):
    from vljax.nn.dense import contract

    rng = np.random.default_rng(3)
    x, k = rng.normal(size=x_shape).astype(np.float32), rng.normal(size=k_shape).astype(np.float32)
    g = rng.normal(size=x_shape[: len(x_shape) - n] + k_shape[n:])
    axes = (tuple(range(len(x_shape) - n, len(x_shape))), tuple(range(n)))
    np.testing.assert_allclose(np.asarray(contract(x, k, n)), np.tensordot(x.astype(np.float64), k, axes), **F32_TOL)
    # the VJP of a contraction: dx = g . k over the output axes, dk = x . g over the leading axes
    dx, dk = jax.vjp(lambda x, k: contract(x, k, n), x, k)[1](g.astype(np.float32))
    lead, out = tuple(range(len(x_shape) - n)), tuple(range(n, len(k_shape)))
    ref_dx = np.tensordot(g, k.astype(np.float64), (tuple(range(len(lead), g.ndim)), out))
    ref_dk = np.tensordot(x.astype(np.float64), g, (lead, lead))
    np.testing.assert_allclose(np.asarray(dx), ref_dx, **F32_TOL)
    np.testing.assert_allclose(np.asarray(dk), ref_dk, **F32_TOL)
    with pytest.raises(ValueError, match="does not end in the kernel's contracted axes"):
        contract(x, k.reshape(-1, *k.shape[n:])[:1], 1)


def test_flat_dot_general_is_dense_dot_general():
    from vljax.nn.dense import flat_dot_general

    rng = np.random.default_rng(4)
    x, k = rng.normal(size=(3, 7, 5)).astype(np.float32), rng.normal(size=(5, 6)).astype(np.float32)
    dense = ((2,), (0,)), ((), ())
    np.testing.assert_allclose(
        np.asarray(flat_dot_general(x, k, dense)), np.asarray(jax.lax.dot_general(x, k, dense)), **F32_TOL
    )
    # other dimension numbers (a batch dim, a non-last contraction) go to lax.dot_general unchanged
    batched = ((2,), (1,)), ((0,), (0,))
    kb = rng.normal(size=(3, 5, 4)).astype(np.float32)
    assert np.array_equal(np.asarray(flat_dot_general(x, kb, batched)), np.asarray(jax.lax.dot_general(x, kb, batched)))
    a = nn.Dense(6, dot_general=flat_dot_general)
    b = nn.Dense(6)
    params = a.init(jax.random.key(0), x)
    np.testing.assert_allclose(np.asarray(a.apply(params, x)), np.asarray(b.apply(params, x)), **F32_TOL)


def test_dense_dot_is_2d_on_cpu_only():
    from vljax.nn.dense import dense_dot

    x, k = np.ones((2, 5, 8), np.float32), np.ones((8, 3, 4), np.float32)

    def dot_ranks():
        """Ranks of the dot_general's operands in dense_dot's jaxpr."""
        eqns = jax.make_jaxpr(lambda x, k: dense_dot(x, k))(x, k).eqns
        (dot,) = [e for e in eqns if e.primitive.name == "dot_general"]
        return [v.aval.ndim for v in dot.invars]

    assert dot_ranks() == [2, 2]
    # NOTE: on TPU a merged token axis that is not a multiple of 8 would be a relayout copy: N-D dot there.
    device = jax.sharding.AbstractDevice(device_kind="TPU v5 lite", num_cores=1, platform="tpu")
    with jax.sharding.use_abstract_mesh(jax.sharding.AbstractMesh((1,), ("data",), abstract_device=device)):
        assert dot_ranks() == [3, 3]


def test_block_branches_compose_and_remat_matches():
    x = jax.random.normal(jax.random.key(0), (2, 5, 16))
    kw = dict(num_heads=2, mlp_dim=32)
    params = jax.jit(Block(**kw).init)(jax.random.key(1), x)
    full = jax.jit(Block(**kw).apply)(params, x)
    split = jax.jit(lambda p: Block(**kw).apply(p, x, method=lambda m, x: m.mlp_branch(m.attention_branch(x))))(params)
    np.testing.assert_allclose(np.asarray(full), np.asarray(split), **F32_TOL)
    grad = lambda cls: jax.jit(jax.grad(lambda p: jnp.sum(jnp.sin(cls(**kw).apply(p, x)))))(params)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, **F32_TOL), grad(block_class("dots_saveable")), grad(Block)
    )
    with pytest.raises(ValueError, match="remat"):
        block_class("sometimes")


def test_encoder_shapes_logical_names_and_rmsnorm_gqa():
    x = jax.random.normal(jax.random.key(0), (2, 6, 16))
    enc = Encoder(
        depth=2,
        num_heads=4,
        mlp_dim=32,
        remat="full",
        block_kwargs=dict(
            norm="rmsnorm", num_kv_heads=2, use_rope=True, causal=True, activation="swiglu", use_bias=False
        ),
    )
    params = jax.jit(enc.init)(jax.random.key(1), x)
    assert jax.jit(enc.apply)(params, x, jnp.ones((2, 6), bool)).shape == (2, 6, 16)
    specs = nn.get_partition_spec(params)["params"]
    blk = specs["block_00"]
    assert blk["attn"]["key_kernel"] == P("embed", "heads", "kv")
    assert blk["attn"]["out_kernel"] == P("heads", "kv", "embed")
    assert blk["mlp"]["wi_gate"]["kernel"] == P("embed", "mlp")
    assert blk["mlp"]["wo"]["kernel"] == P("mlp", "embed")
    assert blk["norm_attn"]["scale"] == P("norm")
    assert params["params"]["block_00"]["attn"]["key_kernel"].value.shape == (16, 2, 4)


def test_patch_embed_equals_strided_conv():
    images = jax.random.normal(jax.random.key(0), (2, 8, 12, 3))
    mod = PatchEmbed(width=5, patch_size=(4, 4))
    params = jax.jit(mod.init)(jax.random.key(1), images)
    p = nn.meta.unbox(params)["params"]["proj"]
    got = mod.apply(params, images)
    kernel = p["kernel"].reshape(4, 4, 3, 5)  # (ph pw c) flattening order -> HWIO
    ref = (
        jax.lax.conv_general_dilated(
            images,
            kernel,
            (4, 4),
            "VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=jax.lax.Precision.HIGHEST,
        )
        + p["bias"]
    )
    assert got.shape == (2, 2, 3, 5)
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), **F32_TOL)
    assert nn.get_partition_spec(params)["params"]["proj"]["kernel"] == P("patch", "embed")
    with pytest.raises(ValueError, match="patch_size"):
        mod.apply(params, jnp.ones((1, 9, 12, 3)))


def test_sincos2d_matches_direct_formula():
    gh, gw, d = 3, 4, 8
    pe = np.asarray(posemb_sincos_2d(gh, gw, d))
    omega = 1.0 / 10_000.0 ** (np.arange(d // 4) / (d // 4 - 1))
    for i in range(gh):
        for j in range(gw):
            row = np.concatenate([np.sin(j * omega), np.cos(j * omega), np.sin(i * omega), np.cos(i * omega)])
            np.testing.assert_allclose(pe[i * gw + j], row, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="width"):
        posemb_sincos_2d(2, 2, 6)


def _bilinear_np(grid, nh, nw):
    """Half-pixel-centre bilinear upsampling with edge clamping, float64."""
    h, w, _ = grid.shape

    def axis(n_out, n_in):
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        i0 = np.floor(src).astype(int)
        return i0, np.minimum(i0 + 1, n_in - 1), src - i0

    y0, y1, wy = axis(nh, h)
    x0, x1, wx = axis(nw, w)
    top = grid[y0][:, x0] * (1 - wx)[None, :, None] + grid[y0][:, x1] * wx[None, :, None]
    bot = grid[y1][:, x0] * (1 - wx)[None, :, None] + grid[y1][:, x1] * wx[None, :, None]
    return top * (1 - wy)[:, None, None] + bot * wy[:, None, None]


def test_resample_posemb_identity_and_upsampling():
    grid = np.random.default_rng(0).normal(size=(4, 4, 6)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(resample_posemb(jnp.asarray(grid), (4, 4))), grid, rtol=1e-6, atol=1e-6)
    flat = grid.reshape(1, 16, 6)
    np.testing.assert_allclose(np.asarray(resample_posemb(jnp.asarray(flat), (4, 4))), flat, rtol=1e-6, atol=1e-6)
    up = resample_posemb(jnp.asarray(flat), (6, 7))
    assert up.shape == (1, 42, 6)
    np.testing.assert_allclose(np.asarray(up).reshape(6, 7, 6), _bilinear_np(grid.astype(np.float64), 6, 7), **F32_TOL)
    with pytest.raises(ValueError, match="square"):
        resample_posemb(jnp.ones((1, 17, 6)), (4, 4))


def test_token_and_position_embeddings():
    tokens = jnp.array([[3, 1, 0], [2, 2, 4]], jnp.int32)
    emb = TokenEmbed(vocab_size=5, width=4)
    params = jax.jit(emb.init)(jax.random.key(0), tokens)
    table = nn.meta.unbox(params)["params"]["embedding"]
    np.testing.assert_array_equal(np.asarray(emb.apply(params, tokens)), np.asarray(table)[tokens])
    x = jnp.ones((2, 3, 4))
    assert emb.apply(params, x, method=TokenEmbed.attend).shape == (2, 3, 5)
    assert nn.get_partition_spec(params)["params"]["embedding"] == P("vocab", "embed")
    pos = LearnedPosEmb(length=3)
    pp = jax.jit(pos.init)(jax.random.key(1), x)
    np.testing.assert_allclose(
        pos.apply(pp, x) - x, jnp.broadcast_to(nn.meta.unbox(pp)["params"]["embedding"], (2, 3, 4)), **F32_TOL
    )
    with pytest.raises(ValueError, match="length"):
        pos.apply(pp, jnp.ones((1, 4, 4)))


def test_pooling_indices_and_gap():
    tokens = jnp.array([[5, 7, 9, 0, 0], [4, 0, 0, 0, 0], [1, 2, 3, 4, 6]], jnp.int32)
    np.testing.assert_array_equal(np.asarray(last_token_index(tokens)), [2, 0, 4])
    np.testing.assert_array_equal(np.asarray(eos_index(tokens)), [2, 0, 4])
    np.testing.assert_array_equal(np.asarray(eos_index(tokens, eos_id=4)), [0, 0, 3])
    x = jax.random.normal(jax.random.key(0), (3, 5, 4))
    mask = tokens != 0
    got = gap_pool(x, mask)
    np.testing.assert_allclose(np.asarray(got[0]), np.asarray(x[0, :3].mean(0)), rtol=1e-6)
    last = Pool("last").apply({}, x, tokens=tokens)
    np.testing.assert_array_equal(np.asarray(last), np.asarray(x[jnp.arange(3), jnp.array([2, 0, 4])]))
    with pytest.raises(ValueError, match="pool"):
        Pool("median").apply({}, x)


def test_map_head_ignores_masked_tokens():
    x = jax.random.normal(jax.random.key(0), (2, 5, 8))
    mask = jnp.array([[True] * 3 + [False] * 2] * 2)
    head = MAPHead(num_heads=2, mlp_dim=16)
    params = jax.jit(head.init)(jax.random.key(1), x, mask)
    apply = jax.jit(head.apply)
    out = apply(params, x, mask)
    assert out.shape == (2, 8)
    x2 = x.at[:, 3:].set(100.0)
    np.testing.assert_allclose(np.asarray(apply(params, x2, mask)), np.asarray(out), **F32_TOL)
    assert nn.get_partition_spec(params)["params"]["probe"] == P(None, "embed")
