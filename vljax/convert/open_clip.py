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

A state dict has no config: dims come from tensor shapes; heads default to width // 64 (OpenAI and
open_clip ViT-B/L), the activation to quick_gelu (OpenAI weights) and LayerNorm eps to 1e-5.
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
    heads_out,
    load_params,
    packed_qkv_entries,
)

IGNORE = (r"attn_mask", r"input_resolution", r"context_length", r"vocab_size")


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
        raise ConversionError(f"no '{prefix}<i>.' tensors: not an open_clip ViT CLIP state dict")
    return max(idx) + 1


def model_config(source: MappingSource, **overrides: Any) -> dict:
    """State-dict shapes (+ overrides: image_heads, text_heads, activation, norm_epsilon) -> TwoTower kwargs."""
    names = source.names()
    if "visual.conv1.weight" not in names:
        raise ConversionError("visual.conv1.weight missing: only ViT open_clip models are supported (not ResNet)")
    conv = source.get("visual.conv1.weight")
    width, patch = conv.shape[0], conv.shape[-1]
    grid = int(round((source.get("visual.positional_embedding").shape[0] - 1) ** 0.5))
    tok = source.get("token_embedding.weight")
    twidth = tok.shape[1]
    act = overrides.get("activation", "quick_gelu")
    eps = float(overrides.get("norm_epsilon", 1e-5))
    image = dict(
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
        img_proj_kind="linear",
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


def entries(cfg: dict) -> dict[str, Entry]:
    """vljax model config -> {vljax path: Entry} over open_clip names."""
    img, txt = cfg["image"], cfg["text"]
    rules = [
        ("img_tower/embedding/proj/kernel", "visual.conv1.weight", conv_patch(img["patch_size"])),
        ("img_proj/kernel", "visual.proj", IDENTITY),
        ("txt_proj/kernel", "text_projection", IDENTITY),
        ("logit_scale", "logit_scale", IDENTITY),
        ("txt_tower/token_embed/embedding", "token_embedding.weight", IDENTITY),
        ("txt_tower/pos_embed/embedding", "positional_embedding", IDENTITY),
    ]
    rules += hf_clip.norm_rules("img_tower/norm_pre", "visual.ln_pre")
    rules += hf_clip.norm_rules("img_tower/norm_out", "visual.ln_post")
    rules += hf_clip.norm_rules("txt_tower/encoder/norm_out", "ln_final")
    packed = {}
    for tower, ours, theirs in (
        ("image", "img_tower/block_{:02d}", "visual.transformer.resblocks.{}"),
        ("text", "txt_tower/encoder/block_{:02d}", "transformer.resblocks.{}"),
    ):
        t = cfg[tower]
        for i in range(t["depth"]):
            r, p = _block(ours.format(i), theirs.format(i), t["width"], t["num_heads"])
            rules += r
            packed.update(p)
    out = {**entries_from_rules(rules), **packed}
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
