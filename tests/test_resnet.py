"""CLIP's modified ResNet image tower (vljax/models/resnet.py) and GroupNorm (vljax/nn/norms.py).

References: GroupNorm against a float64 numpy formula; the whole tower against a plain PyTorch
translation of CLIP's ModifiedResNet (GroupNorm in place of BatchNorm), weights copied from the flax
parameters. Tolerance: float32 towers, 1e-4 absolute on outputs of O(1) magnitude (conv / attention
reductions in different orders).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vljax.models import resnet as R
from vljax.models.two_tower import image_tower
from vljax.nn.norms import GroupNorm, group_norm_groups


def _randomize(params, seed, scale=0.2):
    """Every leaf -> fresh N(0, scale) values (the zero-initialized norm scales would hide the residual path)."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(tree, [scale * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)])


@pytest.mark.parametrize("loc,groups", [(1.5, 4), (300.0, 4), (-2.0, None)])
def test_group_norm_matches_float64_reference(loc, groups):
    # loc 300: a large mean next to unit spread, where a one-pass E[x^2] - E[x]^2 variance loses float32 digits
    x = np.random.default_rng(0).normal(loc, 2.0, (3, 5, 4, 12)).astype(np.float32)
    m = GroupNorm(groups=groups)
    p = _randomize(nn.unbox(m.init(jax.random.key(0), x)["params"]), 1, scale=1.0)
    y = np.asarray(m.apply({"params": p}, x))
    g_count = groups or group_norm_groups(12)
    g = x.astype(np.float64).reshape(3, 5, 4, g_count, 12 // g_count)
    ref = (g - g.mean((1, 2, 4), keepdims=True)) / np.sqrt(g.var((1, 2, 4), keepdims=True) + 1e-5)
    ref = ref.reshape(x.shape) * np.asarray(p["scale"], np.float64) + np.asarray(p["bias"], np.float64)
    np.testing.assert_allclose(y, ref, atol=5e-5, rtol=0)


def test_group_norm_groups_and_errors():
    assert group_norm_groups(2048) == 32 and group_norm_groups(24) == 24 and group_norm_groups(40) == 20
    with pytest.raises(ValueError, match="not divisible into 5 groups"):
        GroupNorm(groups=5).init(jax.random.key(0), np.ones((1, 2, 2, 12), np.float32))


# NOTE: image-tower parameters in millions at each model's image size, from open_clip's published model
# profile (docs/model_profile.csv there); BatchNorm has weight + bias per channel, as GroupNorm has here.
OPEN_CLIP_IMAGE_MPARAMS = {
    "RN50": (224, 38.32),
    "RN101": (224, 56.26),
    "RN50x4": (288, 87.14),
    "RN50x16": (384, 167.33),
    "RN50x64": (448, 420.38),
}


@pytest.mark.parametrize("variant", sorted(OPEN_CLIP_IMAGE_MPARAMS))
def test_variant_parameter_counts_match_clip(variant):
    size, mparams = OPEN_CLIP_IMAGE_MPARAMS[variant]
    model = R.ResNet(variant=variant, image_size=size)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))["params"]
    assert round(sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes)) / 1e6, 2) == mparams
    out = jax.eval_shape(lambda p, x: model.apply({"params": p}, x), nn.unbox(shapes), jnp.zeros((2, size, size, 3)))
    assert out.shape == (2, R.RESNET_VARIANTS[variant]["output_dim"])
    assert R.feature_grid(size, 4) == size // 32


class _TorchReference:
    """A plain PyTorch translation of CLIP's ModifiedResNet with GroupNorm, built from flax params."""

    def __init__(self, params, layers, num_heads):
        import torch

        self.torch, self.p, self.layers, self.heads = torch, params, layers, num_heads

    def t(self, x):
        return self.torch.from_numpy(np.array(x, np.float32))  # a writable copy

    def conv(self, x, p, stride=1):
        k = self.t(p["kernel"]).permute(3, 2, 0, 1)  # [kh, kw, in, out] -> [out, in, kh, kw]
        return self.torch.nn.functional.conv2d(x, k, stride=stride, padding=k.shape[-1] // 2)

    def norm(self, x, p):
        return self.torch.nn.functional.group_norm(
            x, group_norm_groups(x.shape[1]), self.t(p["scale"]), self.t(p["bias"]), eps=1e-5
        )

    def bottleneck(self, x, p, stride):
        F = self.torch.nn.functional
        y = F.relu(self.norm(self.conv(x, p["conv_1"]), p["norm_1"]))
        y = F.relu(self.norm(self.conv(y, p["conv_2"]), p["norm_2"]))
        if stride > 1:
            y = F.avg_pool2d(y, stride)
        y = self.norm(self.conv(y, p["conv_3"]), p["norm_3"])
        if "conv_down" in p:
            x = self.norm(self.conv(F.avg_pool2d(x, stride) if stride > 1 else x, p["conv_down"]), p["norm_down"])
        return F.relu(y + x)

    def __call__(self, images):
        torch, F, p = self.torch, self.torch.nn.functional, self.p
        x = self.t(images).permute(0, 3, 1, 2)
        for i, stride in enumerate((2, 1, 1)):
            x = F.relu(self.norm(self.conv(x, p[f"stem_conv_{i}"], stride), p[f"stem_norm_{i}"]))
        x = F.avg_pool2d(x, 2)
        for s, n in enumerate(self.layers):
            for j in range(n):
                x = self.bottleneck(x, p[f"stage_{s}_block_{j}"], 2 if (s > 0 and j == 0) else 1)
        x = x.flatten(2).permute(2, 0, 1)  # [B, C, H, W] -> [HW, B, C], as CLIP's AttentionPool2d
        x = torch.cat([x.mean(0, keepdim=True), x], 0) + self.t(p["pool"]["pos_embedding"])[:, None]
        a = p["pool"]["attn"]
        c, c_out = x.shape[-1], a["out_kernel"].shape[-1]
        w = lambda name: self.t(a[f"{name}_kernel"]).reshape(c, -1).T  # [C, H, K] -> [H*K, C]
        b = lambda name: self.t(a[f"{name}_bias"]).reshape(-1)
        out, _ = F.multi_head_attention_forward(
            query=x[:1],
            key=x,
            value=x,
            embed_dim_to_check=c,
            num_heads=self.heads,
            q_proj_weight=w("query"),
            k_proj_weight=w("key"),
            v_proj_weight=w("value"),
            in_proj_weight=None,
            in_proj_bias=torch.cat([b("query"), b("key"), b("value")]),
            bias_k=None,
            bias_v=None,
            add_zero_attn=False,
            dropout_p=0.0,
            out_proj_weight=self.t(a["out_kernel"]).reshape(-1, c_out).T,
            out_proj_bias=self.t(a["out_bias"]),
            use_separate_proj_weight=True,
            training=False,
            need_weights=False,
        )
        return out[0].numpy()


def test_resnet_matches_torch_reference():
    pytest.importorskip("torch")
    layers, heads = (2, 1, 1), 4
    model = R.ResNet(layers=layers, width=16, num_heads=heads, output_dim=24, image_size=32)
    x = np.random.default_rng(2).uniform(-1, 1, (3, 32, 32, 3)).astype(np.float32)
    params = _randomize(nn.unbox(model.init(jax.random.key(0), x)["params"]), 3)
    y = np.asarray(model.apply({"params": params}, x))
    assert y.shape == (3, 24)
    ref = _TorchReference(jax.tree.map(np.asarray, params), layers, heads)(x)
    np.testing.assert_allclose(y, ref, atol=1e-4, rtol=0)
    assert np.abs(ref).mean() > 0.05  # non-trivial outputs


def test_per_location_tokens_are_projected_values_and_resolution_resamples():
    model = R.ResNet(layers=(1, 1), width=8, num_heads=2, output_dim=12, image_size=32)
    x = np.random.default_rng(4).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    params = _randomize(nn.unbox(model.init(jax.random.key(0), x)["params"]), 5)
    pooled, tokens = model.apply({"params": params}, x, return_tokens=True)
    assert pooled.shape == (2, 12) and tokens.shape == (2, 16, 12)  # 32 / 8 = 4x4 locations
    np.testing.assert_allclose(pooled, model.apply({"params": params}, x), atol=1e-6)
    # the feature map the pool sees, from the module's own blocks
    feats = model.apply({"params": params}, x, method=lambda m, x: _feature_map(m, x))
    a, pe = params["pool"]["attn"], params["pool"]["pos_embedding"]
    v = jnp.einsum("bnc,chk->bnhk", feats + pe[1:], a["value_kernel"]) + a["value_bias"]
    ref = jnp.einsum("bnhk,hkd->bnd", v, a["out_kernel"]) + a["out_bias"]
    np.testing.assert_allclose(tokens, ref, atol=1e-5, rtol=0)
    # 64 px input on a 32 px model: 8x8 locations, the 4x4 position table resampled
    big = np.random.default_rng(6).uniform(-1, 1, (1, 64, 64, 3)).astype(np.float32)
    assert model.apply({"params": params}, big, return_tokens=True)[1].shape == (1, 64, 12)


def _feature_map(m, x):
    """ResNet module m: the [B, N, C] map before pooling (the same module with pool='gap' returns it)."""
    gap = R.ResNet(layers=m.layers, width=m.width, num_heads=m.num_heads, image_size=m.image_size, pool="gap")
    params = {k: v for k, v in m.variables["params"].items() if k != "pool"}
    return gap.apply({"params": params}, x, return_tokens=True)[1]


def test_blocks_start_as_identity_and_bad_configs_fail_clearly():
    model = R.ResNet(layers=(1, 1), width=8, num_heads=2, image_size=32)
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 3)), jnp.float32)
    params = nn.unbox(model.init(jax.random.key(0), x)["params"])
    assert all(float(jnp.abs(params[f"stage_{s}_block_0"]["norm_3"]["scale"]).max()) == 0.0 for s in (0, 1))
    with pytest.raises(ValueError, match="unknown ResNet variant 'RN51'"):
        R.resnet_dims("RN51")
    with pytest.raises(ValueError, match=r"needs \['num_heads'\]"):
        R.resnet_dims(layers=(1,), width=8)
    with pytest.raises(ValueError, match="divisible by 16"):
        R.ResNet(layers=(1, 1, 1), width=8, num_heads=2, image_size=40).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="pool='gap' has no output projection"):
        R.ResNet(layers=(1,), width=8, num_heads=2, image_size=32, pool="gap", output_dim=4).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="token_merging is a ViT option"):
        R.ResNet(layers=(1,), width=8, num_heads=2, image_size=32, token_merging={"r": 2}).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match=r"arch='convnext' is not one of \['resnet', 'vit'\]"):
        image_tower({"arch": "convnext"})
    assert isinstance(image_tower({"arch": "resnet", "variant": "RN50"}), R.ResNet)


def test_remat_gives_the_same_gradients():
    x = jnp.asarray(np.random.default_rng(7).uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
    grads = []
    for remat in ("none", "full"):
        model = R.ResNet(layers=(1, 1), width=8, num_heads=2, image_size=32, remat=remat)
        params = _randomize(nn.unbox(model.init(jax.random.key(0), x)["params"]), 8)
        grads.append(jax.grad(lambda p, m=model: jnp.sum(m.apply({"params": p}, x) ** 2))(params))
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_bfloat16_tower_tracks_float32():
    # bf16 convs / attention with float32 GroupNorm statistics: within 3% of the output scale of the f32 tower
    x = np.random.default_rng(9).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    f32 = R.ResNet(layers=(1, 1), width=16, num_heads=2, output_dim=8, image_size=32)
    params = _randomize(nn.unbox(f32.init(jax.random.key(0), x)["params"]), 10)
    ref = np.asarray(f32.apply({"params": params}, x))
    bf16 = R.ResNet(layers=(1, 1), width=16, num_heads=2, output_dim=8, image_size=32, dtype=jnp.bfloat16)
    y = bf16.apply({"params": params}, x)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y, np.float32), ref, atol=0.03 * np.abs(ref).max(), rtol=0)
