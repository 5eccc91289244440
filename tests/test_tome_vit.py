"""Token merging in the ViT and the TomeFormer connector: exactness at r=0, schedules, gradients, prop. attention."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vljax.kernels import token_merging as tm
from vljax.models.tomeformer import TomeFormer, parse_token_merging
from vljax.models.vit import ViT
from vljax.nn.attention import dot_product_attention
from vljax.nn.transformer import Encoder

KW = dict(width=32, depth=4, num_heads=2, mlp_dim=64, patch_size=(8, 8), image_size=64)


@pytest.fixture(scope="module")
def images():
    return jax.random.normal(jax.random.key(0), (2, 64, 64, 3))


@pytest.mark.parametrize("pool", ["gap", "cls"])
def test_r0_equals_unmerged_vit_exactly(images, pool):
    params = ViT(**KW, pool=pool).init(jax.random.key(1), images)
    p0, t0 = ViT(**KW, pool=pool).apply(params, images, return_tokens=True)
    p1, t1 = ViT(**KW, pool=pool, token_merging=dict(r=0, schedule="decreasing")).apply(
        params, images, return_tokens=True
    )
    np.testing.assert_array_equal(np.asarray(p0), np.asarray(p1))
    np.testing.assert_array_equal(np.asarray(t0), np.asarray(t1))


@pytest.mark.parametrize(
    "pool,schedule,expected",
    [
        ("gap", "constant", [8, 8, 8, 8]),
        ("gap", "decreasing", [16, 10, 5, 0]),
        ("gap", "increasing", [0, 5, 10, 16]),
        ("cls", "constant", [8, 8, 8, 8]),
        ("cls", "decreasing", [16, 10, 5, 0]),
    ],
)
def test_token_count_follows_schedule(images, pool, schedule, expected):
    model = ViT(**KW, pool=pool, token_merging=dict(r=8, schedule=schedule))
    params = ViT(**KW, pool=pool).init(jax.random.key(1), images)
    # NOTE: jitted: eager op-by-op merging dispatches (and compiles) every small op on its own, 3-4x slower here.
    (_, tokens), state = jax.jit(lambda p, x: model.apply(
        p, x, return_tokens=True, capture_intermediates=lambda mdl, name: name == "mlp_branch"
    ))(params, images)
    n0 = 64 + (pool == "cls")
    per_layer = [state["intermediates"][f"block_{i:02d}"]["mlp_branch"][0].shape[1] for i in range(4)]
    np.testing.assert_array_equal(per_layer, n0 - np.cumsum(expected))
    assert tokens.shape == (2, 64 - sum(expected), 32)


def test_merging_changes_output_and_gradients_flow(images):
    params = ViT(**KW).init(jax.random.key(1), images)
    merged = ViT(**KW, token_merging=dict(r=8))
    loss = lambda p: jnp.sum(merged.apply(p, images) ** 2)
    grads = jax.jit(jax.grad(loss))(params)
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert np.all(np.isfinite(g)), path
    for name in ("embedding", "block_00", "block_03", "norm_out"):
        assert any(np.abs(g).max() > 0 for g in jax.tree.leaves(grads["params"][name])), name
    apply = lambda model: np.asarray(jax.jit(model.apply)(params, images))
    with_merging = apply(merged)
    assert not np.allclose(apply(ViT(**KW)), with_merging)
    assert not np.allclose(apply(ViT(**KW, token_merging=dict(r=8, prop_attn=False))), with_merging)


def test_proportional_attention_equals_duplicated_keys():
    """log(size) bias == attention where a key/value of size s appears s times (the ToMe identity)."""
    k1, k2, k3 = jax.random.split(jax.random.key(4), 3)
    q = jax.random.normal(k1, (2, 5, 2, 8))
    k = jax.random.normal(k2, (2, 4, 2, 8))
    v = jax.random.normal(k3, (2, 4, 2, 8))
    sizes = np.array([[1, 3, 2, 1], [2, 1, 1, 4]])
    got = dot_product_attention(q, k, v, bias=tm.size_bias(jnp.asarray(sizes, jnp.float32)[..., None]))
    for b in range(2):
        rep = np.repeat(np.arange(4), sizes[b])
        want = dot_product_attention(q[b : b + 1], k[b : b + 1, rep], v[b : b + 1, rep])
        np.testing.assert_allclose(np.asarray(got[b : b + 1]), np.asarray(want), rtol=1e-5, atol=1e-6)


def test_tomeformer_shapes_sizes_and_r0_equals_encoder():
    x = jax.random.normal(jax.random.key(5), (3, 33, 32))
    plain = Encoder(depth=2, num_heads=2, mlp_dim=64)
    params = plain.init(jax.random.key(6), x)
    tf0 = TomeFormer(depth=2, num_heads=2, mlp_dim=64, r=0)
    np.testing.assert_array_equal(np.asarray(tf0.apply(params, x)), np.asarray(plain.apply(params, x)))
    for mode in ("mean", "weighted"):
        tf = TomeFormer(depth=2, num_heads=2, mlp_dim=64, r=6, mode=mode, protect_first=True)
        y, sizes = jax.jit(lambda p, x: tf.apply(p, x, return_sizes=True))(params, x)
        assert y.shape == (3, tf.output_length(33), 32) == (3, 21, 32)
        np.testing.assert_allclose(np.asarray(sizes.sum((1, 2))), 33.0)
        assert np.all(np.asarray(sizes[:, 0, 0]) == 1.0)  # the protected first token is never merged
    default = TomeFormer(depth=2, num_heads=2, mlp_dim=64, r=6)  # SimVLG's: mean merge, CLS kept, no prop. attn
    assert (default.mode, default.protect_first, default.prop_attn) == ("mean", True, False)
    assert default.output_length(33) == 21
    g = jax.jit(jax.grad(lambda p: jnp.sum(default.apply(p, x) ** 2)))(params)
    assert all(np.all(np.isfinite(l)) for l in jax.tree.leaves(g))


def test_bad_merging_config_names_the_field():
    with pytest.raises(ValueError, match="unknown keys"):
        parse_token_merging(dict(r=2, ratio=0.5))
    with pytest.raises(ValueError, match="schedule"):
        parse_token_merging(dict(r=2, schedule="cosine"))
    with pytest.raises(ValueError, match="token_merging.r"):
        parse_token_merging(dict(r=-1))
    with pytest.raises(ValueError, match="token_merging.impl"):
        parse_token_merging(dict(r=2, impl="mosaic"))
