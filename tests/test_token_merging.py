"""Token merging: Pallas matching kernel vs argsort reference, merge vs a naive loop, schedules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vljax.kernels import token_merging as tm

_match_pallas = jax.jit(tm.match_pallas, static_argnames=("protect_cls", "interpret"))
_match_reference = jax.jit(tm.match_reference, static_argnames="protect_cls")
_plan = jax.jit(tm.bipartite_soft_matching, static_argnames=("r", "protect_cls", "impl", "interpret"))
_merge = jax.jit(tm.merge, static_argnames="mode")


def _tokens(seed, b=3, n=17, c=12, dtype=jnp.float32):
    """Fresh random tokens; continuous values make every score and rank tie-free."""
    return jax.random.normal(jax.random.key(seed), (b, n, c)).astype(dtype)


def _naive_merge(x, sizes, plan, mode):
    """float64 loops over destinations: dst and all its sources averaged (size-weighted or plain)."""
    x, sizes = np.asarray(x, np.float64), np.asarray(sizes, np.float64)
    out, out_sizes = [], []
    for bi in range(x.shape[0]):
        a, b, sa, sb = x[bi, ::2], x[bi, 1::2], sizes[bi, ::2], sizes[bi, 1::2]
        merged, merged_sizes = b.copy(), sb.copy()
        for d in range(b.shape[0]):
            srcs = [int(s) for s, dd in zip(plan.src_idx[bi], plan.dst_idx[bi]) if int(dd) == d]
            w = [sb[d, 0]] + [sa[s, 0] for s in srcs] if mode == "weighted" else [1.0] * (1 + len(srcs))
            vals = [b[d]] + [a[s] for s in srcs]
            merged[d] = sum(wi * vi for wi, vi in zip(w, vals)) / sum(w)
            merged_sizes[d] = sb[d] + sum(sa[s] for s in srcs)
        unm = [int(u) for u in plan.unm_idx[bi]]
        out.append(np.concatenate([a[unm], merged]))
        out_sizes.append(np.concatenate([sa[unm], merged_sizes]))
    return np.stack(out), np.stack(out_sizes)


def _sorted_rows(x):
    """[B, N, C] -> rows sorted lexicographically per sample (order-invariant comparison)."""
    x = np.asarray(x, np.float64)
    return np.stack([xb[np.lexsort(xb.T[::-1])] for xb in x])


@pytest.mark.parametrize(
    "n,c,protect,dtype",
    [
        (17, 12, True, jnp.float32),
        (16, 12, False, jnp.float32),
        (33, 5, True, jnp.float32),
        (24, 16, True, jnp.bfloat16),
    ],
)
def test_match_kernel_equals_reference(n, c, protect, dtype):
    metric = _tokens(n, n=n, c=c, dtype=dtype)
    got = _match_pallas(metric, protect_cls=protect)
    want = _match_reference(metric, protect_cls=protect)
    np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(want[0]))
    # NOTE: both paths normalize and dot in float32, whatever the metric dtype.
    np.testing.assert_allclose(np.asarray(got[1]), np.asarray(want[1]), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(got[2]), np.asarray(want[2]))
    assert sorted(np.asarray(got[2][0]).tolist()) == list(range((n + 1) // 2))
    if protect:
        assert np.all(np.asarray(got[2])[:, 0] == (n + 1) // 2 - 1)


def test_match_kernel_in_blocks_and_chunks_equals_reference():
    # NOTE: blocks of 8 A rows and chunks of 8 B tokens: 33 A x 32 B is split 5 x 4 ways (with padding).
    metric = _tokens(21, b=2, n=65, c=10)
    got = jax.jit(lambda m: tm.match_pallas(m, block=8, chunk=8))(metric)
    want = _match_reference(metric, protect_cls=True)
    np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(want[0]))
    np.testing.assert_allclose(np.asarray(got[1]), np.asarray(want[1]), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(got[2]), np.asarray(want[2]))


@pytest.mark.parametrize(
    "n,c,protect,chunk,dtype",
    [
        (17, 12, True, 128, jnp.float32),
        (16, 12, False, 128, jnp.float32),
        (65, 10, True, 8, jnp.float32),  # B scanned in 4 chunks of 8 (with padding)
        (577, 20, True, 64, jnp.float32),  # 289 A tokens: 3 lane tiles, ranked in 3 chunks of 128
        (24, 16, True, 128, jnp.bfloat16),
    ],
)
def test_mosaic_match_kernel_equals_reference_in_interpret_mode(n, c, protect, chunk, dtype):
    metric = _tokens(n + c, b=2, n=n, c=c, dtype=dtype)
    got = jax.jit(lambda m: tm.match_mosaic(m, protect, interpret=True, chunk=chunk))(metric)
    want = _match_reference(metric, protect_cls=protect)
    np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(want[0]))
    np.testing.assert_allclose(np.asarray(got[1]), np.asarray(want[1]), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(got[2]), np.asarray(want[2]))


def test_mosaic_match_kernel_never_matches_padding():
    # The only B token is the negative of A token 1 (cosine -1); B is padded to 8 rows of zeros (cosine 0),
    # which must never win.
    x = jax.random.normal(jax.random.key(3), (2, 1, 12))
    y = jax.random.normal(jax.random.key(4), (2, 1, 12))
    metric = jnp.concatenate([x, -y, y], axis=1)
    idx, score, rank = tm.match_mosaic(metric, True, interpret=True)
    np.testing.assert_allclose(np.asarray(score[:, 1]), -1.0, atol=1e-6)
    assert np.asarray(idx).tolist() == [[0, 0], [0, 0]] and np.asarray(rank).tolist() == [[1, 0], [1, 0]]


def test_kernel_matching_runs_per_batch_shard_under_a_mesh():
    # A kernel's custom call is not partitioned by XLA; under a mesh that splits the batch the matching runs on
    # each shard's rows (shard_map) and must equal the reference.
    from vljax.sharding import make_mesh, per_batch_shard

    metric = _tokens(5, b=8, n=33, c=16)
    mesh = make_mesh({"data": 4, "tensor": 2})
    seen = []

    def spy(m):
        seen.append(m.shape)
        return tm.match_reference(m)

    with jax.set_mesh(mesh):
        sharded = jax.device_put(metric, jax.NamedSharding(mesh, jax.P("data")))
        got = jax.jit(lambda m: tm.bipartite_soft_matching(m, 5, impl="pallas"))(sharded)
        jax.jit(lambda m: per_batch_shard(spy, m))(sharded)
        jax.jit(lambda m: per_batch_shard(spy, m))(metric[:6])  # 6 rows do not split 4 ways: runs whole
    want = _plan(metric, r=5, impl="reference")
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))
    assert seen == [(2, 33, 16), (6, 33, 16)]


@pytest.mark.parametrize("protect", [True, False])
def test_kernel_plan_merges_like_reference(protect):
    x = _tokens(1, n=21)
    kernel_plan = _plan(x, r=7, protect_cls=protect, impl="pallas")
    ref_plan = _plan(x, r=7, protect_cls=protect, impl="reference")
    got, got_sizes = _merge(x, kernel_plan)
    want, want_sizes = _merge(x, ref_plan)
    assert got.shape == (3, 14, 12)
    np.testing.assert_allclose(_sorted_rows(got), _sorted_rows(want), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.sort(got_sizes[..., 0]), np.sort(want_sizes[..., 0]))
    if protect:
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", ["weighted", "mean"])
def test_merge_matches_naive_loop_with_shared_destinations(mode):
    # NOTE: many near-copies of a few directions make several sources share one destination.
    base = _tokens(2, b=2, n=4, c=6)
    x = jnp.tile(base, (1, 5, 1))[:, :19] + 0.01 * _tokens(3, b=2, n=19, c=6)
    sizes = jax.random.randint(jax.random.key(4), (2, 19, 1), 1, 5).astype(jnp.float32)
    plan = _plan(x, r=8, impl="pallas")
    assert any(len(set(np.asarray(p).tolist())) < 8 for p in plan.dst_idx)
    got, got_sizes = _merge(x, plan, sizes, mode=mode)
    want, want_sizes = _naive_merge(x, sizes, plan, mode)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got_sizes), want_sizes)


def test_sizes_conserved_and_cls_protected_over_layers():
    x = _tokens(5, b=2, n=65, c=8)
    sizes = None
    # NOTE: the cap (N - 1) // 2 binds at 23 tokens, so 4 x r=14 ends at 12 tokens, not 65 - 56 = 9.
    assert tm.r_schedule("constant", 14, 4, 65) == [14, 14, 14, 11]
    for r in tm.r_schedule("constant", 14, 4, 65):
        # NOTE: the reference keeps this test cheap (one kernel compile per shape); kernel == reference above.
        plan = _plan(x, r=r, impl="reference")
        cls = x[:, 0]
        x, sizes = _merge(x, plan, sizes)
        np.testing.assert_array_equal(np.asarray(x[:, 0]), np.asarray(cls))
        np.testing.assert_allclose(np.asarray(sizes.sum(axis=(1, 2))), 65.0)
    assert x.shape == (2, 12, 8) and np.all(np.asarray(sizes[:, 0]) == 1)
    bias = tm.size_bias(sizes)
    assert bias.shape == (2, 1, 1, 12)
    np.testing.assert_allclose(np.asarray(bias[:, 0, 0]), np.log(np.asarray(sizes[..., 0])), rtol=1e-6)


def test_r_zero_is_identity_and_r_is_capped():
    x = _tokens(6, n=9)
    for impl in ("pallas", "reference"):
        plan = _plan(x, r=0, impl=impl)
        got, sizes = _merge(x, plan)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(x))
        np.testing.assert_array_equal(np.asarray(tm.unmerge(got, plan)), np.asarray(x))
        assert np.all(np.asarray(sizes) == 1)
    plan = _plan(x, r=100, impl="pallas")
    assert plan.src_idx.shape == (3, 4) and 0 not in np.asarray(plan.src_idx)


def test_duplicates_are_matched_and_merge_unchanged():
    a = _tokens(7, b=1, n=6, c=8)
    x = jnp.repeat(a, 2, axis=1)  # tokens 2k and 2k+1 are copies: each A has an exact B twin
    plan = _plan(x, r=3, protect_cls=False, impl="pallas")
    np.testing.assert_array_equal(np.asarray(plan.dst_idx), np.asarray(plan.src_idx))
    got, _ = _merge(x, plan)
    np.testing.assert_allclose(_sorted_rows(got[:, 3:]), _sorted_rows(a), rtol=1e-6)


def test_unmerge_restores_positions():
    x = _tokens(8, n=15)
    plan = _plan(x, r=5, impl="pallas")
    merged, _ = _merge(x, plan)
    back = np.asarray(tm.unmerge(merged, plan))
    for bi in range(3):
        for u in np.asarray(plan.unm_idx[bi]):
            np.testing.assert_array_equal(back[bi, 2 * u], np.asarray(x[bi, 2 * u]))
        for s, d in zip(np.asarray(plan.src_idx[bi]), np.asarray(plan.dst_idx[bi])):
            np.testing.assert_array_equal(back[bi, 2 * s], back[bi, 2 * d + 1])


def test_gradients_flow_through_values_not_indices():
    x = _tokens(9, n=11)
    w = _tokens(10, n=7)

    def f(x, metric):
        merged, _ = tm.merge(x, tm.bipartite_soft_matching(metric, 4, impl="pallas"), mode="mean")
        return jnp.sum(merged * w)

    gx, gm = jax.jit(jax.grad(f, argnums=(0, 1)))(x, x)
    assert np.all(np.asarray(gm) == 0)
    plan = _plan(x, r=4, impl="pallas")
    src_rows = np.asarray(2 * plan.src_idx)
    for bi in range(3):
        assert np.all(np.abs(np.asarray(gx[bi, src_rows[bi]])).sum(axis=-1) > 0)


@pytest.mark.parametrize("kind", ["constant", "decreasing", "increasing"])
def test_r_schedule_never_runs_out(kind):
    for n, r, depth in [(257, 19, 12), (65, 14, 4), (10, 50, 6), (2, 3, 2)]:
        sched = tm.r_schedule(kind, r, depth, n)
        assert len(sched) == depth and min(sched) >= 0 and sum(sched) <= n - 1
    assert tm.r_schedule("constant", 19, 12, 257) == [19] * 12
    # NOTE: uncapped ramps are ToMe's parse_r((r, -1)) / parse_r((r, +1)) lists (int() truncation, so a total of
    # at most r * depth); capping only trims late, small layers.
    assert tm.r_schedule("decreasing", 6, 8, 10**6) == [12, 10, 8, 6, 5, 3, 1, 0]
    assert tm.r_schedule("increasing", 6, 8, 10**6) == [0, 1, 3, 5, 6, 8, 10, 12]
    assert sum(tm.r_schedule("decreasing", 19, 12, 10**6)) == sum(tm.r_schedule("increasing", 19, 12, 10**6)) == 223
    assert tm.r_schedule("constant", 40, 3, 9, protect_cls=False) == [4, 2, 1]


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="kind"):
        tm.r_schedule("cosine", 1, 2, 10)
    with pytest.raises(ValueError, match="metric"):
        tm.bipartite_soft_matching(jnp.zeros((4, 5)), 1)
    with pytest.raises(ValueError, match="mode"):
        tm.merge(jnp.zeros((1, 5, 2)), tm.bipartite_soft_matching(jnp.ones((1, 5, 2)), 1, impl="reference"), mode="max")
