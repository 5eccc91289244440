"""vljax.models: ViT, TextEncoder, TwoTower shapes, pooling, normalization, logical sharding."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from vljax.models.text_encoder import TextEncoder
from vljax.models.two_tower import TwoTower
from vljax.models.vit import VIT_VARIANTS, ViT, vit_config

F32_TOL = dict(rtol=1e-5, atol=1e-5)
TINY_VIT = dict(width=32, depth=1, num_heads=2, mlp_dim=64, patch_size=(8, 8), image_size=32)
TINY_TXT = dict(vocab_size=64, width=32, depth=1, num_heads=2, mlp_dim=64, max_len=12)


def _images(b=2, size=32, seed=0):
    return jax.random.normal(jax.random.key(seed), (b, size, size, 3))


def _tokens():
    return jnp.array([[5, 9, 3, 7, 0, 0, 0, 0], [2, 4, 6, 8, 10, 12, 14, 1]], jnp.int32)


def test_vit_config_parsing_and_variants():
    assert vit_config("B/16") == dict(width=768, depth=12, mlp_dim=3072, num_heads=12, patch_size=(16, 16))
    assert vit_config("So400m/14") == dict(width=1152, depth=27, mlp_dim=4304, num_heads=16, patch_size=(14, 14))
    assert vit_config("ti/16")["width"] == 192 and vit_config("L")["depth"] == 24
    assert vit_config("g/14")["width"] == 1408 and vit_config("G/14")["width"] == 1664
    assert {"mu", "ti", "s", "m", "b", "l", "h", "g", "So400m"} <= set(VIT_VARIANTS)
    for bad in ("Q/16", "B/x", "B/0"):
        with pytest.raises(ValueError):
            vit_config(bad)
    with pytest.raises(ValueError, match="width"):
        ViT(depth=1, num_heads=1, mlp_dim=4, patch_size=(8, 8)).dims()


@pytest.mark.parametrize("pool,posemb", [("cls", "learn"), ("gap", "sincos2d"), ("map", "learn")])
def test_vit_shapes_and_tokens(pool, posemb):
    model = ViT(**TINY_VIT, pool=pool, posemb=posemb)
    images = _images()
    params = jax.jit(model.init)(jax.random.key(0), images)
    pooled, tokens = jax.jit(lambda p, x: model.apply(p, x, return_tokens=True))(params, images)
    assert pooled.shape == (2, 32) and tokens.shape == (2, 16, 32)
    assert ("pos_embedding" in params["params"]) == (posemb == "learn")
    if pool == "gap":
        np.testing.assert_allclose(np.asarray(pooled), np.asarray(tokens.mean(1)), **F32_TOL)
    if pool == "cls":
        # NOTE: a learned table is resampled for other resolutions; the same params run at 48px.
        assert jax.jit(model.apply)(params, _images(size=48)).shape == (2, 32)


def test_vit_variant_with_override_and_remat_equivalence():
    model = ViT(variant="mu/8", image_size=16, pool="gap")
    images = _images(size=16)
    params = jax.jit(model.init)(jax.random.key(0), images)
    assert params["params"]["embedding"]["proj"]["kernel"].value.shape == (8 * 8 * 3, 32)
    rematted = ViT(variant="mu/8", image_size=16, pool="gap", remat="full")
    loss = lambda m: jax.jit(jax.grad(lambda p: jnp.sum(m.apply(p, images) ** 2)))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **F32_TOL), loss(model), loss(rematted))


def test_text_encoder_last_pool_and_padding_invariance():
    model = TextEncoder(**TINY_TXT, pool="last")
    tokens = _tokens()
    params = jax.jit(model.init)(jax.random.key(0), tokens)
    apply = jax.jit(lambda p, t: model.apply(p, t, return_tokens=True))
    pooled, feats = apply(params, tokens)
    assert pooled.shape == (2, 32) and feats.shape == (2, 8, 32)
    np.testing.assert_allclose(np.asarray(pooled), np.asarray(feats[jnp.arange(2), jnp.array([3, 7])]), **F32_TOL)
    # NOTE: more right padding must not change anything: pads are masked keys and never pooled.
    padded = jnp.pad(tokens, ((0, 0), (0, 4)))
    np.testing.assert_allclose(np.asarray(apply(params, padded)[0]), np.asarray(pooled), **F32_TOL)
    with pytest.raises(ValueError, match="max_len"):
        model.apply(params, jnp.ones((1, 13), jnp.int32))
    with pytest.raises(ValueError, match="pool"):
        TextEncoder(**TINY_TXT, pool="median").init(jax.random.key(0), tokens)


def test_text_encoder_causal_ignores_future_tokens():
    model = TextEncoder(**TINY_TXT, pool="first", causal=True)
    tokens = _tokens()
    params = jax.jit(model.init)(jax.random.key(0), tokens)
    apply = jax.jit(lambda p, t: model.apply(p, t, return_tokens=True)[1])
    changed = tokens.at[:, 5:].set(33)
    a, b = apply(params, tokens), apply(params, changed)
    np.testing.assert_allclose(np.asarray(a[1, :5]), np.asarray(b[1, :5]), **F32_TOL)
    assert not np.allclose(np.asarray(a[1, 5:]), np.asarray(b[1, 5:]))


def _two_tower(**kw):
    return TwoTower(image=dict(TINY_VIT, pool="map"), text=dict(TINY_TXT), embed_dim=16, **kw)


def test_two_tower_outputs_normalized_and_methods_agree():
    model = _two_tower(bias_init=-10.0)
    images, tokens = _images(), _tokens()
    params = jax.jit(model.init)(jax.random.key(0), images, tokens)
    out = jax.jit(lambda p: model.apply(p, images, tokens, return_tokens=True))(params)
    assert out["img"].shape == (2, 16) and out["txt"].shape == (2, 16)
    assert out["img_tokens"].shape == (2, 16, 16) and out["txt_tokens"].shape == (2, 8, 16)
    for key in ("img", "txt", "img_tokens", "txt_tokens"):
        np.testing.assert_allclose(np.linalg.norm(np.asarray(out[key]), axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(float(out["logit_scale"]), 1 / 0.07, rtol=1e-5)
    np.testing.assert_allclose(float(out["logit_bias"]), -10.0)
    img = jax.jit(lambda p: model.apply(p, images, method=TwoTower.encode_image))(params)
    txt = jax.jit(lambda p: model.apply(p, tokens, method=TwoTower.encode_text))(params)
    np.testing.assert_allclose(np.asarray(img), np.asarray(out["img"]), **F32_TOL)
    np.testing.assert_allclose(np.asarray(txt), np.asarray(out["txt"]), **F32_TOL)
    specs = nn.get_partition_spec(params)["params"]
    assert specs["img_proj"]["kernel"] == P("proj_in", "proj_out")
    assert specs["txt_tower"]["token_embed"]["embedding"] == P("vocab", "embed")


def test_two_tower_scale_clipped_and_no_bias():
    model = _two_tower(temperature_init=float(np.log(500.0)))
    images, tokens = _images(), _tokens()
    abstract = jax.eval_shape(model.init, jax.random.key(0), images, tokens)
    assert "logit_bias" not in abstract["params"]
    out = jax.eval_shape(lambda p: model.apply(p, images, None), abstract)
    assert out["logit_bias"] is None and out["txt"] is None and out["img"].shape == (2, 16)
    # NOTE: only the logit parameters are needed to check the clip at 100.
    params = {"params": {"logit_scale": jnp.asarray(np.log(500.0), jnp.float32)}}
    scale, bias = model.apply(params, method=TwoTower.logit_params)
    assert float(scale) == 100.0 and bias is None


RULES = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("vocab", "tensor"),
    ("act_mlp", "tensor"),
    ("act_heads", "tensor"),
)


def test_two_tower_sharded_init_and_apply_match_single_device():
    model = _two_tower(bias_init=-10.0)
    images, tokens = _images(b=4), jnp.tile(_tokens(), (2, 1))
    ref_params = jax.jit(model.init)(jax.random.key(0), images, tokens)
    ref = jax.jit(model.apply)(ref_params, images, tokens)
    mesh = Mesh(np.array(jax.devices()).reshape(2, 2, 2), ("data", "fsdp", "tensor"))
    with nn.logical_axis_rules(RULES):
        abstract = jax.eval_shape(model.init, jax.random.key(0), images, tokens)
        shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(abstract), mesh, RULES)
        params = jax.jit(model.init, out_shardings=shardings)(jax.random.key(0), images, tokens)
        kernel = params["params"]["img_tower"]["block_00"]["mlp"]["wi"]["kernel"].value
        assert kernel.sharding.spec == P("fsdp", "tensor")
        batch = NamedSharding(mesh, P(("data", "fsdp")))
        with jax.set_mesh(mesh):
            out = jax.jit(model.apply)(params, jax.device_put(images, batch), jax.device_put(tokens, batch))
    for key in ("img", "txt"):
        np.testing.assert_allclose(np.asarray(out[key]), np.asarray(ref[key]), **F32_TOL)


def _conv3x3_s2_same(x, kernel, bias):
    """Naive float64 reference: [B, H, W, Ci] x [3, 3, Ci, Co] -> [B, H/2, W/2, Co], SAME padding, stride 2."""
    # NOTE: SAME with stride 2, kernel 3 on even H pads 0 before and 1 after (XLA / TF convention).
    xp = np.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
    b, h, w, _ = x.shape
    out = np.zeros((b, h // 2, w // 2, kernel.shape[-1]))
    for i in range(h // 2):
        for j in range(w // 2):
            out[:, i, j] = np.einsum("bhwc,hwco->bo", xp[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3], kernel)
    return out + bias


def test_vit_conv_stem_shapes_params_and_reference():
    model = ViT(**TINY_VIT, stem="conv")
    images = _images()
    params = jax.jit(model.init)(jax.random.key(0), images)
    stem = params["params"]["embedding"]
    # NOTE: patch 8 -> three stride-2 convs (channels width/4, width/2, width) and a 1x1 projection to width.
    assert sorted(stem) == ["conv_0", "conv_1", "conv_2", "proj"]
    assert [stem[f"conv_{i}"]["kernel"].value.shape for i in range(3)] == [(3, 3, 3, 8), (3, 3, 8, 16), (3, 3, 16, 32)]
    assert stem["proj"]["kernel"].value.shape == (32, 32) and stem["proj"]["kernel"].names == ("patch", "embed")
    pooled, tokens = jax.jit(lambda p, x: model.apply(p, x, return_tokens=True))(params, images)
    assert pooled.shape == (2, 32) and tokens.shape == (2, 16, 32)

    # The stem against a float64 numpy reference on random non-zero params (tolerance: float32 rounding).
    raw = jax.tree.map(lambda a: np.asarray(a, np.float64), nn.unbox(params)["params"]["embedding"])
    raw = jax.tree.map(lambda a: a + 0.1 * np.random.default_rng(1).standard_normal(a.shape), raw)
    x = np.asarray(images, np.float64)
    for i in range(3):
        y = _conv3x3_s2_same(x, raw[f"conv_{i}"]["kernel"], raw[f"conv_{i}"]["bias"])
        x = 0.5 * y * (1 + np.tanh(np.sqrt(2 / np.pi) * (y + 0.044715 * y**3)))  # tanh-approximate GELU (flax default)
    ref = x @ raw["proj"]["kernel"] + raw["proj"]["bias"]
    from vljax.models.vit import ConvStem  # NOTE: local import keeps this appended block self-contained.

    got = ConvStem(32, (8, 8)).apply({"params": jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), raw)}, images)
    assert got.shape == (2, 4, 4, 32)
    np.testing.assert_allclose(np.asarray(got, np.float64), ref, rtol=1e-4, atol=1e-4)

    explicit = ViT(**TINY_VIT, stem="conv", stem_channels=(4, 4, 12))
    shapes = jax.eval_shape(explicit.init, jax.random.key(0), images)["params"]["embedding"]
    assert shapes["conv_2"]["kernel"].value.shape == (3, 3, 4, 12) and shapes["proj"]["kernel"].value.shape == (12, 32)


def test_vit_stem_errors_name_the_field():
    images = _images()
    with pytest.raises(ValueError, match="stem="):
        ViT(**TINY_VIT, stem="convs").init(jax.random.key(0), images)
    with pytest.raises(ValueError, match="power-of-two"):
        ViT(**dict(TINY_VIT, patch_size=(6, 6), image_size=36), stem="conv").init(jax.random.key(0), _images(size=36))
    with pytest.raises(ValueError, match="stem_channels"):
        ViT(**TINY_VIT, stem="conv", stem_channels=(8, 16)).init(jax.random.key(0), images)


def test_two_tower_presets_expose_text_causal():
    from vljax.config import load_config
    from vljax.methods import clip

    assert load_config("configs/clip.py:tiny", []).model.text.causal is False
    model = clip.build(load_config("configs/clip.py:tiny", ["--config.model.text.causal=True"]), vocab_size=50)
    assert model.text["causal"] is True
