"""Late-interaction kernel paths and the FILIP loss (local and sharded) against plain references."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType

from vljax.kernels import late_interaction as li
from vljax.losses.late_interaction import filip_loss

# NOTE: f32 paths differ only by summation order; bf16 gradients are rounded to bf16 on output.
TOL = {jnp.float32: dict(rtol=1e-5, atol=1e-5), jnp.bfloat16: dict(rtol=2e-2, atol=2e-2)}


def _inputs(seed, bi=5, bt=6, nv=7, nt=9, d=12, dtype=jnp.float32, masked=True):
    """Fresh random tokens and masks; one text and one image fully masked when `masked`."""
    k = jax.random.split(jax.random.key(seed), 4)
    v = jax.random.normal(k[0], (bi, nv, d)).astype(dtype)
    t = jax.random.normal(k[1], (bt, nt, d)).astype(dtype)
    if not masked:
        return v, t, None, None
    mv = jax.random.bernoulli(k[2], 0.7, (bi, nv)).at[:, 0].set(True).at[bi - 1].set(False)
    mt = jax.random.bernoulli(k[3], 0.7, (bt, nt)).at[:, 0].set(True).at[2].set(False)
    return v, t, mv, mt


def _loop_reference(v, t, mv, mt):
    """float64 double loop over (i, j): the definition, with 0 for pairs where a side has no valid token."""
    v, t = np.asarray(v, np.float64), np.asarray(t, np.float64)
    mv = np.ones(v.shape[:2], bool) if mv is None else np.asarray(mv)
    mt = np.ones(t.shape[:2], bool) if mt is None else np.asarray(mt)
    i2t = np.zeros((v.shape[0], t.shape[0]))
    t2i = np.zeros_like(i2t)
    for i, j in itertools.product(range(v.shape[0]), range(t.shape[0])):
        if mv[i].any() and mt[j].any():
            s = v[i][mv[i]] @ t[j][mt[j]].T
            i2t[i, j] = s.max(axis=1).mean()
            t2i[i, j] = s.max(axis=0).mean()
    return i2t, t2i


# NOTE: jitted because eager dispatch of every small op would dominate the test time.
_jit_scores = jax.jit(li.late_interaction, static_argnames=("impl", "interpret"))


def _objective(impl, mv, mt, weights):
    """Scalar with distinct weights on every score, so each entry's gradient is tested."""

    def f(v, t):
        i2t, t2i = _jit_scores(v, t, mv, mt, impl=impl)
        return jnp.sum(weights[0] * i2t) + jnp.sum(weights[1] * t2i)

    return f


@pytest.mark.parametrize("masked", [True, False])
def test_naive_matches_float64_loop(masked):
    v, t, mv, mt = _inputs(0, masked=masked)
    want = _loop_reference(v, t, mv, mt)
    got = _jit_scores(v, t, mv, mt, impl="naive")
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "impl,masked,dtype",
    [
        ("chunked", True, jnp.float32),
        ("chunked", False, jnp.float32),
        ("chunked", True, jnp.bfloat16),
        ("pallas", True, jnp.float32),
        ("pallas", False, jnp.float32),
        ("pallas", True, jnp.bfloat16),
    ],
)
def test_path_matches_naive_forward_and_grad(impl, masked, dtype):
    v, t, mv, mt = _inputs(1 + masked, dtype=dtype, masked=masked)
    weights = jax.random.normal(jax.random.key(7), (2,) + (v.shape[0], t.shape[0]))
    got = _jit_scores(v, t, mv, mt, impl=impl)
    want = _jit_scores(v, t, mv, mt, impl="naive")
    for g, w in zip(got, want):
        assert g.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), **TOL[dtype])
    grads = jax.jit(jax.grad(_objective(impl, mv, mt, weights), argnums=(0, 1)))(v, t)
    ref_grads = jax.jit(jax.grad(_objective("naive", mv, mt, weights), argnums=(0, 1)))(v, t)
    for g, w in zip(grads, ref_grads):
        assert g.dtype == dtype and float(jnp.max(jnp.abs(w.astype(jnp.float32)))) > 0
        np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(w, np.float32), **TOL[dtype])


def test_pallas_pads_batches_and_tokens_of_any_size():
    # NOTE: 11 x 3 batches with block 8 and odd token counts exercise every padding branch.
    v, t, mv, mt = _inputs(3, bi=11, bt=3, nv=5, nt=13, d=6)
    got = _jit_scores(v, t, mv, mt, impl="pallas")
    for g, w in zip(got, _loop_reference(v, t, mv, mt)):
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_pallas_patch_and_feature_chunks_match_naive(dtype):
    # NOTE: chunk 8 over 21 patches and 20 features gives 3 x 3 chunks per pair (with padding in each).
    v, t, mv, mt = _inputs(13, bi=6, bt=5, nv=21, nt=7, d=20, dtype=dtype)
    weights = jax.random.normal(jax.random.key(14), (2, 6, 5))
    chunked = jax.jit(lambda v, t: li.pallas(v, t, mv.astype(jnp.float32), mt.astype(jnp.float32), chunk_v=8,
                                             chunk_d=8))

    def objective(fn):
        return lambda v, t: jnp.sum(weights[0] * fn(v, t)[0]) + jnp.sum(weights[1] * fn(v, t)[1])

    naive = lambda v, t: li.late_interaction(v, t, mv, mt, impl="naive")
    for g, w in zip(chunked(v, t), naive(v, t)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), **TOL[dtype])
    grads = jax.jit(jax.grad(objective(chunked), argnums=(0, 1)))(v, t)
    ref_grads = jax.jit(jax.grad(objective(naive), argnums=(0, 1)))(v, t)
    for g, w in zip(grads, ref_grads):
        np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(w, np.float32), **TOL[dtype])


def test_pallas_tied_patches_in_different_chunks_route_to_the_first():
    v, t, _, _ = _inputs(15, bi=1, bt=1, nv=20, nt=3, d=8, masked=False)
    # NOTE: patch 13 (third chunk of 8) copies patch 2 (first chunk), so every word's best-patch tie
    # involving them must send the t2i gradient to patch 2 only.
    v = v.at[0, 13].set(v[0, 2] * 1.0).at[0, 2].multiply(100.0).at[0, 13].multiply(100.0)
    gv = jax.jit(jax.grad(lambda v: li.pallas(v, t, jnp.ones((1, 20)), jnp.ones((1, 3)), chunk_v=8)[1][0, 0]))(v)
    assert float(jnp.abs(gv[0, 2]).sum()) > 0 and float(jnp.abs(gv[0, 13]).sum()) == 0


@pytest.mark.parametrize("impl", ["naive", "chunked", "pallas"])
def test_fully_masked_samples_score_zero_without_nan(impl):
    v, t, mv, mt = _inputs(4)
    i2t, t2i = _jit_scores(v, t, mv, mt, impl=impl)
    for s in (i2t, t2i):
        assert np.all(np.asarray(s[:, 2]) == 0) and np.all(np.asarray(s[-1, :]) == 0)
    gv, gt = jax.jit(jax.grad(_objective(impl, mv, mt, jnp.ones((2, 5, 6))), argnums=(0, 1)))(v, t)
    assert np.isfinite(np.asarray(gv)).all() and np.isfinite(np.asarray(gt)).all()
    assert np.all(np.asarray(gv[-1]) == 0) and np.all(np.asarray(gt[2]) == 0)


def test_directions_differ_and_padding_is_invariant():
    v, t, mv, mt = _inputs(5)
    i2t, t2i = _jit_scores(v, t, mv, mt, impl="pallas")
    assert float(jnp.max(jnp.abs(i2t - t2i))) > 1e-2
    extra = jax.random.normal(jax.random.key(9), (t.shape[0], 4, t.shape[2])) * 100.0
    t_pad = jnp.concatenate([t, extra], axis=1)
    mt_pad = jnp.concatenate([mt, jnp.zeros((t.shape[0], 4), bool)], axis=1)
    for impl in ("naive", "pallas"):
        got = _jit_scores(v, t_pad, mv, mt_pad, impl=impl)
        for g, w in zip(got, (i2t, t2i)):
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-5)


def test_pallas_gradient_routes_only_through_argmax():
    v, t, _, _ = _inputs(6, bi=1, bt=1, nv=6, nt=4, d=8, masked=False)
    gv = jax.jit(jax.grad(lambda v: li.late_interaction(v, t, impl="pallas")[1][0, 0]))(v)
    s = np.asarray(v[0]) @ np.asarray(t[0]).T
    # NOTE: t2i = mean over words of the best patch, so only argmax patches receive gradient.
    nonzero_rows = set(np.flatnonzero(np.abs(np.asarray(gv[0])).sum(axis=1) > 0))
    assert nonzero_rows == set(s.argmax(axis=0).tolist())


@pytest.mark.parametrize("shape", [(3, 5, 7, 9, 12), (2, 20, 13, 30, 40)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_mosaic_kernel_matches_naive_forward_and_grad_in_interpret_mode(shape, dtype):
    # The TPU kernel (texts on lanes, 16 per inner step) with the XLA backward from its argmaxes. (2, 20, ...):
    # two inner steps of texts; one image and one text fully masked (zero scores, zero gradient).
    bi, bt, nv, nt, d = shape
    v, t, mv, mt = _inputs(sum(shape), bi=bi, bt=bt, nv=nv, nt=nt, d=d, dtype=dtype)
    w = jax.random.normal(jax.random.key(1), (bi, bt))

    def loss(v, t, path):
        i2t, t2i = path(v, t, mv.astype(jnp.float32), mt.astype(jnp.float32))
        return jnp.sum(i2t * w) + jnp.sum(t2i**2), (i2t, t2i)

    kernel = lambda *a: li.mosaic(*a, interpret=True)
    (_, got), got_g = jax.jit(jax.value_and_grad(lambda v, t: loss(v, t, kernel), argnums=(0, 1), has_aux=True))(v, t)
    (_, want), want_g = jax.value_and_grad(lambda v, t: loss(v, t, li.naive), argnums=(0, 1), has_aux=True)(v, t)
    for a, b in zip(got + got_g, want + want_g):
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), **TOL[dtype])


def test_mosaic_backward_in_small_text_blocks_matches(monkeypatch):
    # A tile budget of 2 texts per backward block: 128 padded texts in 64 scan steps.
    monkeypatch.setattr(li, "CHUNK_ELEMENTS", 4 * 2 * 8 * 128)
    v, t, mv, mt = _inputs(5, bi=4, bt=6, nv=7, nt=9, d=12)
    f = lambda path: jax.grad(lambda v, t: sum(jnp.sum(x**2) for x in path(v, t, mv * 1.0, mt * 1.0)), (0, 1))
    got = jax.jit(f(lambda *a: li.mosaic(*a, interpret=True)))(v, t)
    for a, b in zip(got, f(li.naive)(v, t)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **TOL[jnp.float32])


def test_pallas_under_a_mesh_scores_each_image_shard_against_all_texts(monkeypatch):
    # XLA does not partition the kernel's custom call; under a data-4 mesh each shard scores its 2 of 8 images
    # against all 6 texts (vljax.sharding.per_batch_shard), and values and gradients equal the naive path.
    from vljax.sharding import make_mesh

    v, t, mv, mt = _inputs(11, bi=8, bt=6)
    seen, kernel = [], li.pallas

    def spy(v, t, *args, **kwargs):
        seen.append((v.shape, t.shape))
        return kernel(v, t, *args, **kwargs)

    monkeypatch.setattr(li, "pallas", spy)
    w = jnp.arange(6.0)

    def loss(v, t, impl):
        i2t, t2i = li.late_interaction(v, t, mv, mt, impl=impl)
        return jnp.sum(i2t * w) + jnp.sum(t2i**2), (i2t, t2i)

    mesh = make_mesh({"data": 4, "tensor": 2})
    with jax.set_mesh(mesh):
        sharded = jax.device_put(v, jax.NamedSharding(mesh, jax.P("data")))
        grad = jax.jit(jax.value_and_grad(lambda v, t: loss(v, t, "pallas"), argnums=(0, 1), has_aux=True))
        (_, got), got_g = grad(sharded, t)
    (_, want), want_g = jax.value_and_grad(lambda v, t: loss(v, t, "naive"), argnums=(0, 1), has_aux=True)(v, t)
    assert seen == [((2, 7, 12), (6, 9, 12))]
    for a, b in zip(got + got_g, want + want_g):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **TOL[jnp.float32])


def test_auto_dispatch_and_errors():
    assert li.pick_impl(4, 4, 8, 8, backend="cpu") == "naive"
    assert li.pick_impl(512, 512, 196, 77, backend="cpu") == "chunked"
    # NOTE: measured on an H200 (docs/kernels.md): the kernel beats naive and chunked there; TPU is unmeasured.
    assert li.pick_impl(512, 512, 196, 77, backend="gpu") == "pallas"
    assert li.pick_impl(512, 512, 196, 77, backend="tpu") == "chunked"
    assert li.pick_impl(4, 4, 8, 8, backend="gpu") == "naive"
    v, t, mv, mt = _inputs(8)
    with pytest.raises(ValueError, match="impl"):
        li.late_interaction(v, t, impl="fast")
    with pytest.raises(ValueError, match="mt"):
        li.late_interaction(v, t, mv, mt[:, :3])
    with pytest.raises(ValueError, match="feature dim"):
        li.late_interaction(v, t[..., :4])


def test_single_token_loss_equals_clip_loss():
    v, t, _, _ = _inputs(10, bi=6, bt=6, nv=1, nt=1, d=8, masked=False)
    logits = 3.0 * (v[:, 0] @ t[:, 0].T)
    diag = jnp.arange(6)
    clip = 0.5 * (
        jnp.mean(jax.nn.logsumexp(logits, 1) - logits[diag, diag])
        + jnp.mean(jax.nn.logsumexp(logits, 0) - logits[diag, diag])
    )
    np.testing.assert_allclose(float(jax.jit(filip_loss)(v, t, scale=3.0)), float(clip), rtol=1e-6)


@pytest.mark.parametrize("shape,impl", [((2, 4), "naive"), ((8, 1), "pallas")])
def test_sharded_loss_equals_local(shape, impl):
    v, t, mv, mt = _inputs(11, bi=16, bt=16)
    mesh = jax.make_mesh(shape, ("data", "fsdp"), axis_types=(AxisType.Auto,) * 2)
    loss = lambda v, t, s, mesh: filip_loss(v, t, mv, mt, s, mesh=mesh, impl=impl)
    want, want_g = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)), static_argnums=3)(v, t, 2.5, None)
    got, got_g = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)), static_argnums=3)(v, t, 2.5, mesh)
    np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
    for g, w in zip(got_g, want_g):
        assert float(jnp.max(jnp.abs(w))) > 0
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-6)


def test_sharded_loss_on_explicit_mesh():
    v, t, mv, mt = _inputs(12, bi=8, bt=8)
    mesh = jax.make_mesh((2, 4), ("data", "fsdp"), axis_types=(AxisType.Explicit,) * 2)
    want = jax.jit(filip_loss)(v, t, mv, mt, 2.0)
    with jax.set_mesh(mesh):
        got = jax.jit(filip_loss, static_argnames="mesh")(v, t, mv, mt, 2.0, mesh=mesh)
    np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
