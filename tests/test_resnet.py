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
from vljax.models.two_tower import image_tower, normalize_pixels
from vljax.nn.norms import FrozenBatchNorm, GroupNorm, fold_batch_norm, group_norm_groups


# NOTE: model calls in these tests are jitted and random parameters come from numpy: eager flax runs every op on its
# own (one small compile per op and shape), and a jitted init compiles a threefry hash per leaf (about 5 s for a tiny
# ResNet); either made one init, gradient or optimizer update take 5-20 s on the 2-core CI machine.
def _randomize(params, seed, scale=0.2):
    """Every leaf -> fresh N(0, scale) values (the zero-initialized norm scales would hide the residual path)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: jnp.asarray(scale * rng.standard_normal(x.shape), x.dtype), params)


def _shapes(model, x):
    """model's parameter shapes for input x (jax.ShapeDtypeStructs; every test randomizes them)."""
    return nn.unbox(jax.eval_shape(model.init, jax.random.key(0), x)["params"])


def _apply(model, params, x, **kw):
    """model.apply({"params": params}, x, **kw), jitted (kw static)."""
    return jax.jit(lambda p, x: model.apply({"params": p}, x, **kw))(params, x)


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


def test_frozen_batch_norm_is_batch_norm_in_inference_form():
    rng = np.random.default_rng(11)
    x = rng.normal(3.0, 2.0, (2, 5, 4, 6)).astype(np.float32)
    gamma, beta, mean = rng.normal(1.0, 0.3, 6), rng.normal(0, 0.5, 6), rng.normal(3.0, 1.0, 6)
    var = rng.uniform(0.5, 4.0, 6)
    scale, bias = fold_batch_norm(gamma, beta, mean, var)
    y = np.asarray(FrozenBatchNorm().apply({"params": {"scale": scale, "bias": bias}}, x))
    ref = (x.astype(np.float64) - mean) / np.sqrt(var + 1e-5) * gamma + beta
    np.testing.assert_allclose(y, ref, atol=1e-5, rtol=0)  # float32 affine on O(1)-O(10) values


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


def _clip_state_dict(params, layers) -> dict:
    """flax ResNet params -> CLIP ModifiedResNet names and torch layouts (norm scale/bias as bn weight/bias)."""
    import torch

    t = lambda x: torch.from_numpy(np.array(x, np.float32))  # a writable copy
    sd = {}

    def conv_norm(theirs_conv, theirs_norm, conv, norm):
        sd[f"{theirs_conv}.weight"] = t(conv["kernel"]).permute(3, 2, 0, 1)  # [kh, kw, in, out] -> [out, in, kh, kw]
        sd[f"{theirs_norm}.weight"], sd[f"{theirs_norm}.bias"] = t(norm["scale"]), t(norm["bias"])

    for i in range(3):
        conv_norm(f"conv{i + 1}", f"bn{i + 1}", params[f"stem_conv_{i}"], params[f"stem_norm_{i}"])
    for s, n in enumerate(layers):
        for j in range(n):
            p, theirs = params[f"stage_{s}_block_{j}"], f"layer{s + 1}.{j}"
            for k in (1, 2, 3):
                conv_norm(f"{theirs}.conv{k}", f"{theirs}.bn{k}", p[f"conv_{k}"], p[f"norm_{k}"])
            if "conv_down" in p:
                conv_norm(f"{theirs}.downsample.0", f"{theirs}.downsample.1", p["conv_down"], p["norm_down"])
    a = params["pool"]["attn"]
    c = a["query_kernel"].shape[0]
    sd["attnpool.positional_embedding"] = t(params["pool"]["pos_embedding"])
    for ours, theirs in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj")):
        sd[f"attnpool.{theirs}.weight"] = t(a[f"{ours}_kernel"]).reshape(c, -1).T  # [C, H, K] -> [H*K, C]
        sd[f"attnpool.{theirs}.bias"] = t(a[f"{ours}_bias"]).reshape(-1)
    sd["attnpool.c_proj.weight"] = t(a["out_kernel"]).reshape(c, -1).T
    sd["attnpool.c_proj.bias"] = t(a["out_bias"])
    return sd


def _clip_resnet_reference(sd, images, layers, num_heads, norm="group"):
    """A plain PyTorch translation of CLIP's ModifiedResNet over its state dict `sd` (CLIP's names):
    [B, H, W, 3] numpy -> [B, out]. norm 'group' (vljax's training tower) or 'batch' (CLIP's BatchNorm in eval
    mode, with running statistics)."""
    import torch

    F = torch.nn.functional

    def bn(x, name):
        if norm == "group":
            return F.group_norm(x, group_norm_groups(x.shape[1]), sd[f"{name}.weight"], sd[f"{name}.bias"], eps=1e-5)
        stats = (sd[f"{name}.running_mean"], sd[f"{name}.running_var"], sd[f"{name}.weight"], sd[f"{name}.bias"])
        return F.batch_norm(x, *stats, training=False, eps=1e-5)

    def conv(x, name, stride=1):
        w = sd[f"{name}.weight"]
        return F.conv2d(x, w, stride=stride, padding=w.shape[-1] // 2)

    def bottleneck(x, name, stride):
        y = F.relu(bn(conv(x, f"{name}.conv1"), f"{name}.bn1"))
        y = F.relu(bn(conv(y, f"{name}.conv2"), f"{name}.bn2"))
        y = bn(conv(F.avg_pool2d(y, stride) if stride > 1 else y, f"{name}.conv3"), f"{name}.bn3")
        if f"{name}.downsample.0.weight" in sd:
            down = F.avg_pool2d(x, stride) if stride > 1 else x
            x = bn(conv(down, f"{name}.downsample.0"), f"{name}.downsample.1")
        return F.relu(y + x)

    x = torch.from_numpy(np.array(images, np.float32)).permute(0, 3, 1, 2)
    for i, stride in enumerate((2, 1, 1)):
        x = F.relu(bn(conv(x, f"conv{i + 1}", stride), f"bn{i + 1}"))
    x = F.avg_pool2d(x, 2)
    for s, n in enumerate(layers):
        for j in range(n):
            x = bottleneck(x, f"layer{s + 1}.{j}", 2 if (s > 0 and j == 0) else 1)
    x = x.flatten(2).permute(2, 0, 1)  # [B, C, H, W] -> [HW, B, C], as CLIP's AttentionPool2d
    x = torch.cat([x.mean(0, keepdim=True), x], 0) + sd["attnpool.positional_embedding"][:, None]
    out, _ = F.multi_head_attention_forward(
        query=x[:1],
        key=x,
        value=x,
        embed_dim_to_check=x.shape[-1],
        num_heads=num_heads,
        q_proj_weight=sd["attnpool.q_proj.weight"],
        k_proj_weight=sd["attnpool.k_proj.weight"],
        v_proj_weight=sd["attnpool.v_proj.weight"],
        in_proj_weight=None,
        in_proj_bias=torch.cat([sd[f"attnpool.{n}_proj.bias"] for n in "qkv"]),
        bias_k=None,
        bias_v=None,
        add_zero_attn=False,
        dropout_p=0.0,
        out_proj_weight=sd["attnpool.c_proj.weight"],
        out_proj_bias=sd["attnpool.c_proj.bias"],
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
    params = _randomize(_shapes(model, x), 3)
    y = np.asarray(_apply(model, params, x))
    assert y.shape == (3, 24)
    ref = _clip_resnet_reference(_clip_state_dict(jax.tree.map(np.asarray, params), layers), x, layers, heads)
    np.testing.assert_allclose(y, ref, atol=1e-4, rtol=0)
    assert np.abs(ref).mean() > 0.05  # non-trivial outputs


def _clip_text_state(torch, gen, vocab=40, width=64, max_len=8, embed=64) -> dict:
    """A random one-layer CLIP text side (open_clip names): the part of a checkpoint beside `visual.*`."""
    shapes = {
        "token_embedding.weight": (vocab, width),
        "positional_embedding": (max_len, width),
        "ln_final.weight": (width,),
        "ln_final.bias": (width,),
        "text_projection": (width, embed),
        "transformer.resblocks.0.attn.in_proj_weight": (3 * width, width),
        "transformer.resblocks.0.attn.in_proj_bias": (3 * width,),
        "transformer.resblocks.0.attn.out_proj.weight": (width, width),
        "transformer.resblocks.0.attn.out_proj.bias": (width,),
        "transformer.resblocks.0.mlp.c_fc.weight": (4 * width, width),
        "transformer.resblocks.0.mlp.c_fc.bias": (4 * width,),
        "transformer.resblocks.0.mlp.c_proj.weight": (width, 4 * width),
        "transformer.resblocks.0.mlp.c_proj.bias": (width,),
    }
    for ln in ("ln_1", "ln_2"):
        shapes.update({f"transformer.resblocks.0.{ln}.{p}": (width,) for p in ("weight", "bias")})
    out = {k: 0.1 * torch.randn(v, generator=gen) for k, v in shapes.items()}
    out["logit_scale"] = torch.tensor(4.6)
    return out


def _max_rel_err(ours, ref) -> float:
    """max |ours - ref| / max |ref|, in float64."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module")
def clip_resnet_checkpoint(tmp_path_factory):
    """(path of an OpenAI-CLIP-layout ResNet .pt with BatchNorm statistics, its visual state dict, layers, heads).

    The tower has the tiny_resnet preset's dims (CLIP's head rule, 32 x width / 64, gives its 8 heads).
    """
    torch = pytest.importorskip("torch")
    layers, width, heads, out = (1, 1, 1), 16, 8, 64
    model = R.ResNet(layers=layers, width=width, num_heads=heads, output_dim=out, image_size=64)
    params = _randomize(_shapes(model, jnp.zeros((1, 64, 64, 3))), 8)
    sd = _clip_state_dict(jax.tree.map(np.asarray, params), layers)
    gen = torch.Generator().manual_seed(0)
    for name in [k.removesuffix(".weight") for k in list(sd) if k.endswith(".weight") and sd[k].ndim == 1]:
        if "attnpool" in name:
            continue
        c = sd[f"{name}.weight"].shape[0]
        # non-trivial running statistics: the fold must use them
        sd[f"{name}.running_mean"] = 0.5 * torch.randn(c, generator=gen)
        sd[f"{name}.running_var"] = 0.5 + torch.rand(c, generator=gen)
        sd[f"{name}.num_batches_tracked"] = torch.tensor(1000)
    path = tmp_path_factory.mktemp("open_clip_rn") / "rn.pt"
    torch.save({**{f"visual.{k}": v for k, v in sd.items()}, **_clip_text_state(torch, gen)}, path)
    return path, sd, layers, heads


def test_open_clip_resnet_checkpoint_loads_with_frozen_batch_norm(clip_resnet_checkpoint, tmp_path, capsys):
    from vljax.convert import common, open_clip
    from vljax.convert.cli import load
    from vljax.main import main

    path, sd, layers, heads = clip_resnet_checkpoint
    conv = open_clip.load_open_clip(path)
    assert conv.model_config["image"] == dict(
        arch="resnet",
        layers=[1, 1, 1],
        width=16,
        num_heads=8,
        output_dim=64,
        image_size=64,
        pool="attn",
        norm="frozen_batch",
    )
    assert conv.model_config["img_proj_kind"] == "none" and "img_proj" not in conv.params
    x = np.random.default_rng(9).uniform(-1, 1, (3, 64, 64, 3)).astype(np.float32)
    ours = np.asarray(_apply(conv.model, conv.params, x, method=lambda m, im: m.img_tower(im)))
    ref = _clip_resnet_reference(sd, x, layers, heads, norm="batch")
    # float32: max relative error 1e-5, the bound of the other converters' parity tests (docs/pretrained.md)
    assert _max_rel_err(ours, ref) <= 1e-5
    assert np.abs(ref).mean() > 0.05
    # a BatchNorm without its statistics is refused, naming the tensor
    import torch

    torn = torch.load(path, weights_only=True)
    del torn["visual.layer2.0.bn2.running_var"]
    torch.save(torn, tmp_path / "torn.pt")
    with pytest.raises(common.ConversionError, match=r"visual\.layer2\.0\.bn2\.running_var"):
        open_clip.load_open_clip(tmp_path / "torn.pt")
    # `vljax convert` writes it as a vljax folder that loads back bit for bit; transformers has no CLIP ResNet
    assert main(["convert", "--from", "open_clip", "--src", str(path), "--dst", str(tmp_path / "rn")]) == 0
    back = load("vljax", str(tmp_path / "rn"))
    assert back.model_config["image"] == conv.model_config["image"]
    assert jax.tree.all(
        jax.tree.map(lambda a, b: bool((np.asarray(a) == np.asarray(b)).all()), back.params, conv.params)
    )
    capsys.readouterr()
    assert main(
        ["convert", "--from", "vljax", "--src", str(tmp_path / "rn"), "--to", "hf", "--dst", str(tmp_path / "h")]
    )
    assert "image.arch='resnet' (CLIPModel has a ViT only)" in capsys.readouterr().err


def test_resnet_preset_starts_from_an_open_clip_resnet(clip_resnet_checkpoint, tmp_path):
    """config.init.image=open_clip:... into configs/clip.py:tiny_resnet with norm=frozen_batch (the rn50 route)."""
    from vljax.config import load_config
    from vljax.convert.init import load_pretrained
    from vljax.train.loop import Experiment
    from vljax.models.two_tower import CLIP_PIXEL_MEAN, CLIP_PIXEL_STD, TwoTower
    from vljax.train.optim import make_optimizer

    path, sd, layers, heads = clip_resnet_checkpoint
    cfg = load_config(
        "configs/clip.py:tiny_resnet",
        [
            "--config.model.image.norm=frozen_batch",
            f"--config.init.image=open_clip:{path}",
            # the folded BatchNorms kept fixed while the convs fine-tune (docs/pretrained.md)
            """--config.optim.freeze=("^img_tower/.*norm",)""",
            "--config.optim.warmup_steps=0",
            "--config.model.pixel_norm=clip",  # CLIP's mean / std, as the released towers were trained
        ],
    )
    exp = Experiment(cfg, str(tmp_path / "run"))
    state, _ = exp.create_state()
    params = load_pretrained(cfg, state.params)
    x = np.random.default_rng(10).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    ours = np.asarray(_apply(exp.model, params, x, method=TwoTower.encode_image))
    # the reference gets [0, 1] pixels normalized by CLIP's mean / std, as CLIP's own preprocessing gives them
    clip_pixels = ((x + 1) / 2 - np.array(CLIP_PIXEL_MEAN, np.float32)) / np.array(CLIP_PIXEL_STD, np.float32)
    ref = _clip_resnet_reference(sd, clip_pixels, layers, heads, norm="batch")
    assert _max_rel_err(ours, ref / np.linalg.norm(ref, axis=-1, keepdims=True)) <= 1e-5
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), params["txt_tower"], state.params["txt_tower"]))
    tx, _ = make_optimizer(cfg.optim, params, cfg.train.steps)
    updates, _ = jax.jit(tx.update)(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
    tower = updates["img_tower"]
    assert float(jnp.abs(tower["stage_1_block_0"]["conv_2"]["kernel"]).max()) > 0
    norms = [v for k, v in tower.items() if "norm" in k]
    norms += [v for k, block in tower.items() if k.startswith("stage_") for n, v in block.items() if "norm" in n]
    assert len(norms) == 3 + 3 * 4 and all(float(jnp.abs(x).max()) == 0 for x in jax.tree.leaves(norms))


def test_per_location_tokens_are_projected_values_and_resolution_resamples():
    model = R.ResNet(layers=(1, 1), width=8, num_heads=2, output_dim=12, image_size=32)
    x = np.random.default_rng(4).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    params = _randomize(_shapes(model, x), 5)
    pooled, tokens = _apply(model, params, x, return_tokens=True)
    assert pooled.shape == (2, 12) and tokens.shape == (2, 16, 12)  # 32 / 8 = 4x4 locations
    np.testing.assert_allclose(pooled, _apply(model, params, x), atol=1e-6)
    # the feature map the pool sees, from the module's own blocks
    feats = _apply(model, params, x, method=_feature_map)
    a, pe = params["pool"]["attn"], params["pool"]["pos_embedding"]
    v = jnp.einsum("bnc,chk->bnhk", feats + pe[1:], a["value_kernel"]) + a["value_bias"]
    ref = jnp.einsum("bnhk,hkd->bnd", v, a["out_kernel"]) + a["out_bias"]
    np.testing.assert_allclose(tokens, ref, atol=1e-5, rtol=0)
    # 64 px input on a 32 px model: 8x8 locations, the 4x4 position table resampled
    big = np.random.default_rng(6).uniform(-1, 1, (1, 64, 64, 3)).astype(np.float32)
    assert _apply(model, params, big, return_tokens=True)[1].shape == (1, 64, 12)


def _feature_map(m, x):
    """ResNet module m: the [B, N, C] map before pooling (the same module with pool='gap' returns it)."""
    gap = R.ResNet(layers=m.layers, width=m.width, num_heads=m.num_heads, image_size=m.image_size, pool="gap")
    params = {k: v for k, v in m.variables["params"].items() if k != "pool"}
    return gap.apply({"params": params}, x, return_tokens=True)[1]


def test_blocks_start_as_identity_and_bad_configs_fail_clearly():
    model = R.ResNet(layers=(1, 1), width=8, num_heads=2, image_size=32)
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 3)), jnp.float32)
    params = nn.unbox(jax.jit(model.init)(jax.random.key(0), x)["params"])
    assert all(float(jnp.abs(params[f"stage_{s}_block_0"]["norm_3"]["scale"]).max()) == 0.0 for s in (0, 1))
    trace = lambda **kw: jax.eval_shape(R.ResNet(**kw).init, jax.random.key(0), x)  # errors raise while tracing
    with pytest.raises(ValueError, match="unknown ResNet variant 'RN51'"):
        R.resnet_dims("RN51")
    with pytest.raises(ValueError, match=r"needs \['num_heads'\]"):
        R.resnet_dims(layers=(1,), width=8)
    with pytest.raises(ValueError, match="divisible by 16"):
        trace(layers=(1, 1, 1), width=8, num_heads=2, image_size=40)
    with pytest.raises(ValueError, match="pool='gap' has no output projection"):
        trace(layers=(1,), width=8, num_heads=2, image_size=32, pool="gap", output_dim=4)
    with pytest.raises(ValueError, match=r"ResNet norm='batch' is not one of \('group', 'frozen_batch'\)"):
        trace(layers=(1,), width=8, num_heads=2, image_size=32, norm="batch")
    with pytest.raises(ValueError, match=r"pixel_norm='imagenet' is not one of \('none', 'clip'\)"):
        normalize_pixels(x, "imagenet")
    with pytest.raises(ValueError, match="token_merging is a ViT option"):
        trace(layers=(1,), width=8, num_heads=2, image_size=32, token_merging={"r": 2})
    with pytest.raises(ValueError, match=r"arch='convnext' is not one of \['resnet', 'vit'\]"):
        image_tower({"arch": "convnext"})
    assert isinstance(image_tower({"arch": "resnet", "variant": "RN50"}), R.ResNet)


def test_remat_gives_the_same_gradients():
    x = jnp.asarray(np.random.default_rng(7).uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
    grads = []
    for remat in ("none", "full"):
        model = R.ResNet(layers=(1, 1), width=8, num_heads=2, image_size=32, remat=remat)
        params = _randomize(_shapes(model, x), 8)
        grads.append(jax.jit(jax.grad(lambda p, m=model: jnp.sum(m.apply({"params": p}, x) ** 2)))(params))
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_bfloat16_tower_tracks_float32():
    # bf16 convs / attention with float32 GroupNorm statistics: within 3% of the output scale of the f32 tower
    x = np.random.default_rng(9).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    f32 = R.ResNet(layers=(1, 1), width=16, num_heads=2, output_dim=8, image_size=32)
    params = _randomize(_shapes(f32, x), 10)
    ref = np.asarray(_apply(f32, params, x))
    bf16 = R.ResNet(layers=(1, 1), width=16, num_heads=2, output_dim=8, image_size=32, dtype=jnp.bfloat16)
    y = _apply(bf16, params, x)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y, np.float32), ref, atol=0.03 * np.abs(ref).max(), rtol=0)
