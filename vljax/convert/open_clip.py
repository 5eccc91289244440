"""open_clip / OpenAI CLIP state dicts (ViT-B/32-style) -> vljax TwoTower.

    visual.conv1.weight [W, 3, p, p]                  -> img_tower/embedding/proj/kernel
    visual.class_embedding + positional_embedding[0]  -> img_tower/cls
    visual.positional_embedding[1:]                   -> img_tower/pos_embedding
    visual.ln_pre / ln_post                           -> img_tower/norm_pre / norm_out
    visual.transformer.resblocks.i.ln_1 / ln_2        -> img_tower/block_ii/norm_attn / norm_mlp
    visual.transformer.resblocks.i.attn.in_proj_*     -> img_tower/block_ii/attn/{query,key,value}_*
    visual.transformer.resblocks.i.attn.out_proj.*    -> img_tower/block_ii/attn/out_*
    visual.transformer.resblocks.i.mlp.c_fc / c_proj  -> img_tower/block_ii/mlp/wi / wo
    visual.proj [W, E] (already x @ proj)             -> img_proj/kernel
    token_embedding.weight, positional_embedding      -> txt_tower/token_embed, txt_tower/pos_embed
    transformer.resblocks.i.* / ln_final              -> txt_tower/encoder/block_ii/* / norm_out
    text_projection [W, E], logit_scale               -> txt_proj/kernel, logit_scale

CLIP's modified ResNets (RN50, RN101, RN50x4, ...; recognized by visual.attnpool.*) map to the ResNet image
tower with norm='frozen_batch' (each BatchNorm's running statistics folded into a per-channel affine,
vljax.nn.norms.fold_batch_norm):

    visual.conv{1,2,3} / bn{1,2,3}                     -> img_tower/stem_conv_{0,1,2} / stem_norm_{0,1,2}
    visual.layer{s+1}.{j}.conv{k} / bn{k}              -> img_tower/stage_{s}_block_{j}/conv_{k} / norm_{k}
    visual.layer{s+1}.{j}.downsample.0 / .1            -> .../conv_down / norm_down (downsample.-1 is the pool)
    visual.attnpool.positional_embedding               -> img_tower/pool/pos_embedding
    visual.attnpool.{q,k,v}_proj / c_proj              -> img_tower/pool/attn/{query,key,value}_* / out_*

and there is no image projection (the attention pool's output is the embedding).

A state dict has no config: dims come from tensor shapes; heads default to width // 64 (OpenAI and
open_clip ViT-B/L) and, for ResNets, to 32 x width // 64 (CLIP's rule: 32 for RN50), the activation to
quick_gelu (OpenAI weights) and LayerNorm eps to 1e-5.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from vljax.convert import hf_clip
from vljax.convert.common import (
    DTYPES,
    IDENTITY,
    LINEAR,
    ConversionError,
    Entry,
    MappingSource,
    Rule,
    abstract_params,
    conv_patch,
    entries_from_rules,
    heads_bias,
    heads_in,
    heads_out,
    load_params,
    packed_qkv_entries,
)
from vljax.models.resnet import feature_channels, total_stride
from vljax.nn.norms import fold_batch_norm

IGNORE = (r"attn_mask", r"input_resolution", r"context_length", r"vocab_size", r".*\.num_batches_tracked")
# NOTE: torch BatchNorm2d's default epsilon, which CLIP's ResNets use.
BN_EPS = 1e-5


def read_state_dict(path: str | Path) -> MappingSource:
    """.pt / .bin torch state dict (or a TorchScript OpenAI archive's state) -> MappingSource."""
    try:
        import torch
    except ImportError as e:
        raise ConversionError("reading open_clip .pt files needs torch (pip install torch)") from e
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    # NOTE: checkpoints saved from DistributedDataParallel prefix every key with 'module.'.
    state = {k.removeprefix("module."): v for k, v in state.items()}
    return MappingSource(state, lambda t: t.detach().float().numpy() if t.is_floating_point() else t.numpy())


def _depth(names, prefix: str) -> int:
    idx = {int(m.group(1)) for n in names if (m := re.match(re.escape(prefix) + r"(\d+)\.", n))}
    if not idx:
        raise ConversionError(f"no '{prefix}<i>.' tensors: not an open_clip / OpenAI CLIP state dict")
    return max(idx) + 1


def is_resnet(names) -> bool:
    """True for CLIP's modified-ResNet state dicts (an attention pool), False for ViTs."""
    return "visual.attnpool.c_proj.weight" in set(names)


def _resnet_image_config(source: MappingSource, names, overrides: dict) -> dict:
    """ResNet state-dict shapes -> config.model.image for vljax's ResNet (norm 'frozen_batch')."""
    stages = sorted({int(m.group(1)) for n in names if (m := re.match(r"visual\.layer(\d+)\.", n))})
    if not stages or stages != list(range(1, len(stages) + 1)):
        raise ConversionError(f"ResNet state dict: expected stages visual.layer1, layer2, ...; found {stages}")
    width = int(source.get("visual.layer1.0.conv1.weight").shape[0])
    stem = int(source.get("visual.conv1.weight").shape[0])
    if 2 * stem != width:
        raise ConversionError(f"ResNet stem: visual.conv1 has {stem} channels, expected width / 2 = {width // 2}")
    grid = round((source.get("visual.attnpool.positional_embedding").shape[0] - 1) ** 0.5)
    return dict(
        arch="resnet",
        layers=[_depth(names, f"visual.layer{s}.") for s in stages],
        width=width,
        num_heads=int(overrides.get("image_heads", 32 * width // 64)),
        output_dim=int(source.get("visual.attnpool.c_proj.weight").shape[0]),
        image_size=grid * total_stride(len(stages)),
        pool="attn",
        norm="frozen_batch",
    )


def _vit_image_config(source: MappingSource, names, overrides: dict, act: str, eps: float) -> dict:
    """ViT state-dict shapes -> config.model.image for vljax's ViT (CLIP layout)."""
    conv = source.get("visual.conv1.weight")
    width, patch = conv.shape[0], conv.shape[-1]
    grid = int(round((source.get("visual.positional_embedding").shape[0] - 1) ** 0.5))
    return dict(
        width=width,
        depth=_depth(names, "visual.transformer.resblocks."),
        num_heads=int(overrides.get("image_heads", width // 64)),
        mlp_dim=source.get("visual.transformer.resblocks.0.mlp.c_fc.weight").shape[0],
        patch_size=[patch, patch],
        image_size=grid * patch,
        pool="cls",
        posemb="learn",
        activation=act,
        norm_epsilon=eps,
        pre_norm=True,
        patch_bias=False,
    )


def model_config(source: MappingSource, **overrides: Any) -> dict:
    """State-dict shapes (+ overrides: image_heads, text_heads, activation, norm_epsilon) -> TwoTower kwargs."""
    names = source.names()
    if "visual.conv1.weight" not in names:
        raise ConversionError("visual.conv1.weight missing: not an open_clip / OpenAI CLIP state dict")
    act = overrides.get("activation", "quick_gelu")
    eps = float(overrides.get("norm_epsilon", 1e-5))
    resnet = is_resnet(names)
    if resnet:
        image = _resnet_image_config(source, names, overrides)
    else:
        image = _vit_image_config(source, names, overrides, act, eps)
    tok = source.get("token_embedding.weight")
    twidth = tok.shape[1]
    # NOTE: open_clip pools text at argmax(token ids): its tokenizer gives end-of-text the largest id.
    text = dict(
        vocab_size=tok.shape[0],
        width=twidth,
        depth=_depth(names, "transformer.resblocks."),
        num_heads=int(overrides.get("text_heads", twidth // 64)),
        mlp_dim=source.get("transformer.resblocks.0.mlp.c_fc.weight").shape[0],
        max_len=source.get("positional_embedding").shape[0],
        pool="argmax",
        causal=True,
        pad_id=0,
        activation=act,
        norm_epsilon=eps,
        pad_mask=False,
    )
    return dict(
        image=image,
        text=text,
        embed_dim=source.get("text_projection").shape[1],
        temperature_init=2.6592,
        bias_init=None,
        img_proj_kind="none" if resnet else "linear",
        txt_proj_kind="linear",
        max_logit_scale=None,
    )


def _block(ours: str, theirs: str, width: int, heads: int) -> tuple[list[Rule], dict[str, Entry]]:
    rules = hf_clip.norm_rules(f"{ours}/norm_attn", f"{theirs}.ln_1") + hf_clip.norm_rules(
        f"{ours}/norm_mlp", f"{theirs}.ln_2"
    )
    rules += [
        (f"{ours}/attn/out_kernel", f"{theirs}.attn.out_proj.weight", heads_out(heads, width // heads)),
        (f"{ours}/attn/out_bias", f"{theirs}.attn.out_proj.bias", IDENTITY),
    ]
    for dense, fc in (("wi", "c_fc"), ("wo", "c_proj")):
        rules += [
            (f"{ours}/mlp/{dense}/kernel", f"{theirs}.mlp.{fc}.weight", LINEAR),
            (f"{ours}/mlp/{dense}/bias", f"{theirs}.mlp.{fc}.bias", IDENTITY),
        ]
    packed = packed_qkv_entries(
        f"{ours}/attn", f"{theirs}.attn.in_proj_weight", f"{theirs}.attn.in_proj_bias", width, heads
    )
    return rules, packed


def _conv_kernel(w):
    """torch conv weight [out, in, kh, kw] -> flax kernel [kh, kw, in, out]."""
    return w.transpose(2, 3, 1, 0)


def _frozen_bn(ours: str, theirs: str) -> dict[str, Entry]:
    """torch BatchNorm2d `theirs` (weight, bias, running stats) -> FrozenBatchNorm `ours` scale / bias."""
    names = tuple(f"{theirs}.{p}" for p in ("weight", "bias", "running_mean", "running_var"))
    return {
        f"{ours}/scale": Entry(names, lambda *t: fold_batch_norm(*t, epsilon=BN_EPS)[0]),
        f"{ours}/bias": Entry(names, lambda *t: fold_batch_norm(*t, epsilon=BN_EPS)[1]),
    }


def _resnet_entries(img: dict) -> dict[str, Entry]:
    """CLIP ModifiedResNet `visual.*` -> vljax ResNet `img_tower/*` entries (module docstring)."""
    out = {}

    def conv_bn(ours_conv, ours_norm, theirs_conv, theirs_bn):
        out[f"{ours_conv}/kernel"] = Entry((f"{theirs_conv}.weight",), _conv_kernel)
        out.update(_frozen_bn(ours_norm, theirs_bn))

    for i in range(3):
        conv_bn(f"img_tower/stem_conv_{i}", f"img_tower/stem_norm_{i}", f"visual.conv{i + 1}", f"visual.bn{i + 1}")
    for s, n in enumerate(img["layers"]):
        for j in range(n):
            ours, theirs = f"img_tower/stage_{s}_block_{j}", f"visual.layer{s + 1}.{j}"
            for k in (1, 2, 3):
                conv_bn(f"{ours}/conv_{k}", f"{ours}/norm_{k}", f"{theirs}.conv{k}", f"{theirs}.bn{k}")
            # NOTE: the first block of every stage changes the channel count, so it has the shortcut conv.
            if j == 0:
                conv_bn(f"{ours}/conv_down", f"{ours}/norm_down", f"{theirs}.downsample.0", f"{theirs}.downsample.1")
    channels = feature_channels(img["width"], len(img["layers"]))
    heads = img["num_heads"]
    pool, attn = "visual.attnpool", "img_tower/pool/attn"
    rules = [
        ("img_tower/pool/pos_embedding", f"{pool}.positional_embedding", IDENTITY),
        (f"{attn}/out_kernel", f"{pool}.c_proj.weight", heads_out(heads, channels // heads)),
        (f"{attn}/out_bias", f"{pool}.c_proj.bias", IDENTITY),
    ]
    for ours, theirs in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj")):
        rules += [
            (f"{attn}/{ours}_kernel", f"{pool}.{theirs}.weight", heads_in(heads, channels // heads)),
            (f"{attn}/{ours}_bias", f"{pool}.{theirs}.bias", heads_bias(heads, channels // heads)),
        ]
    return {**out, **entries_from_rules(rules)}


def entries(cfg: dict) -> dict[str, Entry]:
    """vljax model config -> {vljax path: Entry} over open_clip names."""
    img = cfg["image"]
    resnet = img.get("arch") == "resnet"
    rules = [
        ("txt_proj/kernel", "text_projection", IDENTITY),
        ("logit_scale", "logit_scale", IDENTITY),
        ("txt_tower/token_embed/embedding", "token_embedding.weight", IDENTITY),
        ("txt_tower/pos_embed/embedding", "positional_embedding", IDENTITY),
    ]
    rules += hf_clip.norm_rules("txt_tower/encoder/norm_out", "ln_final")
    towers = [("text", "txt_tower/encoder/block_{:02d}", "transformer.resblocks.{}")]
    if not resnet:
        rules += [
            ("img_tower/embedding/proj/kernel", "visual.conv1.weight", conv_patch(img["patch_size"])),
            ("img_proj/kernel", "visual.proj", IDENTITY),
        ]
        rules += hf_clip.norm_rules("img_tower/norm_pre", "visual.ln_pre")
        rules += hf_clip.norm_rules("img_tower/norm_out", "visual.ln_post")
        towers.append(("image", "img_tower/block_{:02d}", "visual.transformer.resblocks.{}"))
    packed = _resnet_entries(img) if resnet else {}
    for tower, ours, theirs in towers:
        t = cfg[tower]
        for i in range(t["depth"]):
            r, p = _block(ours.format(i), theirs.format(i), t["width"], t["num_heads"])
            rules += r
            packed.update(p)
    out = {**entries_from_rules(rules), **packed}
    if resnet:
        return out
    pos = "visual.positional_embedding"
    out["img_tower/cls"] = Entry(("visual.class_embedding", pos), lambda c, p: (c + p[0])[None])
    out["img_tower/pos_embedding"] = Entry((pos,), lambda p: p[1:])
    return out


def load_open_clip(path: str | Path, mesh=None, *, dtype: str = "float32", rules=None, prefixes=None, **overrides: Any):
    """open_clip .pt -> hf.Converted (kind 'two_tower', arch 'open_clip') with sharded params."""
    from vljax import sharding as shard_lib
    from vljax.convert.hf import Converted

    source = read_state_dict(path)
    cfg = model_config(source, **overrides)
    mesh = mesh if mesh is not None else shard_lib.make_mesh({"data": -1})
    model = hf_clip.build(cfg, param_dtype=DTYPES[dtype])
    shapes, shardings = abstract_params(hf_clip.init_fn(model), mesh, rules)
    params = load_params(
        entries(cfg),
        source,
        shapes,
        shardings,
        dtype=dtype,
        ignore=IGNORE,
        prefixes=prefixes,
        what=f"{path} (open_clip)",
    )
    return Converted("two_tower", "CLIPModel", cfg, model, params)
