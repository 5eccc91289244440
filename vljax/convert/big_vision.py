"""big_vision SigLIP .npz (flattened 'params/img/...', 'params/txt/...' names) <-> vljax TwoTower.

    img/embedding/{kernel [p, p, 3, D], bias}                  -> img_tower/embedding/proj/{kernel, bias}
    img/pos_embedding [1, N, D]                                -> img_tower/pos_embedding [N, D]
    img/Transformer/encoderblock_i/LayerNorm_0 / LayerNorm_1   -> img_tower/block_ii/norm_attn / norm_mlp
    img/Transformer/encoderblock_i/MultiHeadDotProductAttention_0/{query,key,value,out}
                                                               -> img_tower/block_ii/attn/*_{kernel,bias}
    img/Transformer/encoderblock_i/MlpBlock_0/Dense_{0,1}      -> img_tower/block_ii/mlp/{wi,wo}
    img/Transformer/encoder_norm                               -> img_tower/norm_out
    img/MAPHead_0/{probe [1, 1, D], MultiHeadDotProductAttention_0, LayerNorm_0, MlpBlock_0}
                                                               -> img_tower/pool/map/{probe, attn, norm, mlp}
    txt/Embed_0/embedding, txt/pos_embedding [1, L, D]         -> txt_tower/token_embed, txt_tower/pos_embed
    txt/Encoder_0/encoderblock_i/..., txt/Encoder_0/encoder_norm -> txt_tower/encoder/block_ii/..., norm_out
    txt/head/{kernel, bias}                                    -> txt_proj/{kernel, bias}
    t [1], b [1]                                               -> logit_scale, logit_bias

Kernels are already flax layouts ([D, H, K] attention, [in, out] dense), so the mapping is names and
the two [1, N, D] -> [N, D] position tables. Only unrolled checkpoints are read (no scanned layers).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from vljax.convert import hf_clip, hf_siglip
from vljax.convert.common import (
    DTYPES,
    IDENTITY,
    ConversionError,
    Layout,
    MappingSource,
    Rule,
    abstract_params,
    entries_from_rules,
    export_rules,
    load_params,
)

PREFIX = "params/"
POS = Layout(lambda x: x.reshape(x.shape[-2], x.shape[-1]), lambda x: x[None])
PROBE = Layout(lambda x: x.reshape(1, -1), lambda x: x.reshape(1, 1, -1))
SCALAR = Layout(lambda x: x.reshape(()), lambda x: np.asarray(x).reshape(1))


class NpzSource(MappingSource):
    """A big_vision .npz read key by key, with the leading 'params/' stripped when present."""

    def __init__(self, path: str | Path):
        self._npz = np.load(str(path), allow_pickle=False)
        keys = {k.removeprefix(PREFIX): k for k in self._npz.files}
        super().__init__(keys, lambda key: self._npz[key])


def _depth(names, prefix: str) -> int:
    if any(n.startswith(prefix.rstrip("_") + "/") for n in names):
        raise ConversionError(
            f"scanned big_vision layout ({prefix.rstrip('_')}/ with a leading depth axis) is not "
            "supported; re-save the checkpoint with scan=False"
        )
    idx = {int(m.group(1)) for n in names if (m := re.match(re.escape(prefix) + r"(\d+)/", n))}
    if not idx:
        raise ConversionError(f"no '{prefix}<i>/' tensors: not a big_vision SigLIP checkpoint")
    return max(idx) + 1


def model_config(source: MappingSource) -> dict:
    """npz shapes -> TwoTower kwargs (the SigLIP layout: MAP head, last-token text pooling, gelu_tanh)."""
    names = source.names()
    shape = lambda n: source.get(n).shape
    patch, width = shape("img/embedding/kernel")[0], shape("img/embedding/kernel")[-1]
    grid = int(round(shape("img/pos_embedding")[-2] ** 0.5))
    block = "img/Transformer/encoderblock_0"
    vocab, twidth = shape("txt/Embed_0/embedding")
    image = dict(
        width=width,
        depth=_depth(names, "img/Transformer/encoderblock_"),
        num_heads=shape(f"{block}/MultiHeadDotProductAttention_0/query/kernel")[1],
        mlp_dim=shape(f"{block}/MlpBlock_0/Dense_0/kernel")[1],
        patch_size=[patch, patch],
        image_size=grid * patch,
        pool="map",
        posemb="learn",
        activation="gelu_tanh",
        norm_epsilon=1e-6,
        pool_activation="gelu_tanh",
    )
    tblock = "txt/Encoder_0/encoderblock_0"
    text = dict(
        vocab_size=vocab,
        width=twidth,
        depth=_depth(names, "txt/Encoder_0/encoderblock_"),
        num_heads=shape(f"{tblock}/MultiHeadDotProductAttention_0/query/kernel")[1],
        mlp_dim=shape(f"{tblock}/MlpBlock_0/Dense_0/kernel")[1],
        max_len=shape("txt/pos_embedding")[-2],
        pool="final",
        causal=False,
        pad_id=1,
        activation="gelu_tanh",
        norm_epsilon=1e-6,
        pad_mask=False,
    )
    embed = shape("txt/head/kernel")[1]
    if embed != width:
        raise ConversionError(f"txt/head output {embed} != image width {width}: image heads are not supported")
    return hf_siglip.siglip_two_tower(image, text, embed)


def _block_rules(ours: str, theirs: str) -> list[Rule]:
    rules = []
    for norm, ln in (("norm_attn", "LayerNorm_0"), ("norm_mlp", "LayerNorm_1")):
        rules += [(f"{ours}/{norm}/{p}", f"{theirs}/{ln}/{p}", IDENTITY) for p in ("scale", "bias")]
    return (
        rules
        + _attn_rules(f"{ours}/attn", f"{theirs}/MultiHeadDotProductAttention_0")
        + _mlp_rules(f"{ours}/mlp", f"{theirs}/MlpBlock_0")
    )


def _attn_rules(ours: str, theirs: str) -> list[Rule]:
    return [
        (f"{ours}/{proj}_{p}", f"{theirs}/{bv}/{p}", IDENTITY)
        for proj, bv in (("query", "query"), ("key", "key"), ("value", "value"), ("out", "out"))
        for p in ("kernel", "bias")
    ]


def _mlp_rules(ours: str, theirs: str) -> list[Rule]:
    return [
        (f"{ours}/{d}/{p}", f"{theirs}/{bv}/{p}", IDENTITY)
        for d, bv in (("wi", "Dense_0"), ("wo", "Dense_1"))
        for p in ("kernel", "bias")
    ]


def _rules(cfg: dict) -> list[Rule]:
    ph, pw = cfg["image"]["patch_size"]
    patch = Layout(lambda k: k.reshape(-1, k.shape[-1]), lambda k: k.reshape(ph, pw, 3, k.shape[-1]))
    head = "img_tower/pool/map"
    rules = [
        ("img_tower/embedding/proj/kernel", "img/embedding/kernel", patch),
        ("img_tower/embedding/proj/bias", "img/embedding/bias", IDENTITY),
        ("img_tower/pos_embedding", "img/pos_embedding", POS),
        ("img_tower/norm_out/scale", "img/Transformer/encoder_norm/scale", IDENTITY),
        ("img_tower/norm_out/bias", "img/Transformer/encoder_norm/bias", IDENTITY),
        (f"{head}/probe", "img/MAPHead_0/probe", PROBE),
        (f"{head}/norm/scale", "img/MAPHead_0/LayerNorm_0/scale", IDENTITY),
        (f"{head}/norm/bias", "img/MAPHead_0/LayerNorm_0/bias", IDENTITY),
        ("txt_tower/token_embed/embedding", "txt/Embed_0/embedding", IDENTITY),
        ("txt_tower/pos_embed/embedding", "txt/pos_embedding", POS),
        ("txt_tower/encoder/norm_out/scale", "txt/Encoder_0/encoder_norm/scale", IDENTITY),
        ("txt_tower/encoder/norm_out/bias", "txt/Encoder_0/encoder_norm/bias", IDENTITY),
        ("txt_proj/kernel", "txt/head/kernel", IDENTITY),
        ("txt_proj/bias", "txt/head/bias", IDENTITY),
        ("logit_scale", "t", SCALAR),
        ("logit_bias", "b", SCALAR),
    ]
    rules += _attn_rules(f"{head}/attn", "img/MAPHead_0/MultiHeadDotProductAttention_0")
    rules += _mlp_rules(f"{head}/mlp", "img/MAPHead_0/MlpBlock_0")
    for i in range(cfg["image"]["depth"]):
        rules += _block_rules(f"img_tower/block_{i:02d}", f"img/Transformer/encoderblock_{i}")
    for i in range(cfg["text"]["depth"]):
        rules += _block_rules(f"txt_tower/encoder/block_{i:02d}", f"txt/Encoder_0/encoderblock_{i}")
    return rules


def load_big_vision(path: str | Path, mesh=None, *, dtype: str = "float32", rules=None, prefixes=None):
    """big_vision SigLIP .npz -> hf.Converted (kind 'two_tower', arch 'SiglipModel') with sharded params."""
    from vljax import sharding as shard_lib
    from vljax.convert.hf import Converted

    source = NpzSource(path)
    cfg = model_config(source)
    mesh = mesh if mesh is not None else shard_lib.make_mesh({"data": -1})
    model = hf_clip.build(cfg, param_dtype=DTYPES[dtype])
    shapes, shardings = abstract_params(hf_clip.init_fn(model), mesh, rules)
    params = load_params(
        entries_from_rules(_rules(cfg)),
        source,
        shapes,
        shardings,
        dtype=dtype,
        prefixes=prefixes,
        what=f"{path} (big_vision)",
    )
    return Converted("two_tower", "SiglipModel", cfg, model, params)


def save_big_vision(flat: Mapping[str, Any], cfg: dict, path: str | Path) -> Path:
    """Flat vljax SigLIP-layout params -> big_vision .npz ('params/...' names)."""
    if cfg["image"].get("pool") != "map" or cfg.get("img_proj_kind") != "none":
        raise ConversionError("only the SigLIP layout (image pool 'map', img_proj_kind 'none') exports to big_vision")
    tensors = export_rules(_rules(cfg), flat)
    np.savez(str(path), **{PREFIX + k: v for k, v in tensors.items()})
    return Path(path)
