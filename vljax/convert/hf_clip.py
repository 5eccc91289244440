"""Hugging Face CLIPModel <-> vljax TwoTower (ViT with class token + causal text transformer).

    vision_model.embeddings.patch_embedding.weight [D, 3, p, p]  -> img_tower/embedding/proj/kernel
    vision_model.embeddings.class_embedding + position_embedding[0] -> img_tower/cls
    vision_model.embeddings.position_embedding.weight[1:]         -> img_tower/pos_embedding
    vision_model.pre_layrnorm / post_layernorm                    -> img_tower/norm_pre / norm_out
    vision_model.encoder.layers.i.*                               -> img_tower/block_ii/*
    text_model.embeddings.{token,position}_embedding.weight       -> txt_tower/{token,pos}_embed/embedding
    text_model.encoder.layers.i.* / final_layer_norm              -> txt_tower/encoder/block_ii/* / norm_out
    visual_projection.weight, text_projection.weight [E, D]       -> img_proj/kernel, txt_proj/kernel [D, E]
    logit_scale                                                   -> logit_scale

NOTE: CLIP adds its position embedding to the class token too; vljax's ViT adds positions to the
patches only, so the class position is folded into `cls` on import (exported back as a zero row).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from vljax.convert.common import (
    IDENTITY,
    LINEAR,
    ConversionError,
    Entry,
    Rule,
    conv_patch,
    entries_from_rules,
    export_rules,
    heads_bias,
    heads_in,
    heads_out,
)
from vljax.models.two_tower import TwoTower

ARCHITECTURES = ("CLIPModel",)
KIND = "two_tower"
IGNORE = (r"(vision|text)_model\.embeddings\.position_ids",)
# HF hidden_act -> vljax activation.
ACTIVATIONS = {"quick_gelu": "quick_gelu", "gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh"}
TEXT_DEFAULTS = dict(
    vocab_size=49408,
    hidden_size=512,
    intermediate_size=2048,
    num_hidden_layers=12,
    num_attention_heads=8,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    pad_token_id=1,
    bos_token_id=49406,
    eos_token_id=49407,
)
VISION_DEFAULTS = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    num_channels=3,
    image_size=224,
    patch_size=32,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
)


def activation(name: str) -> str:
    """HF hidden_act -> vljax activation name (ConversionError if unsupported)."""
    if name not in ACTIVATIONS:
        raise ConversionError(f"hidden_act={name!r} is not supported; supported: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def hf_activation(name: str) -> str:
    """vljax activation -> HF hidden_act."""
    inverse = {"quick_gelu": "quick_gelu", "gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh"}
    if name not in inverse:
        raise ConversionError(f"activation {name!r} has no Hugging Face equivalent; supported: {sorted(inverse)}")
    return inverse[name]


def tower_configs(hf: dict) -> tuple[dict, dict]:
    """HF config -> (vision config, text config) with HF defaults filled in."""
    return ({**VISION_DEFAULTS, **hf.get("vision_config", {})}, {**TEXT_DEFAULTS, **hf.get("text_config", {})})


def model_config(hf: dict) -> dict:
    """HF CLIPModel config.json dict -> TwoTower keyword arguments."""
    vis, txt = tower_configs(hf)
    if vis["num_channels"] != 3:
        raise ConversionError(f"vision_config.num_channels={vis['num_channels']} is not supported (RGB only)")
    eos = int(txt["eos_token_id"])
    image = dict(
        width=vis["hidden_size"],
        depth=vis["num_hidden_layers"],
        num_heads=vis["num_attention_heads"],
        mlp_dim=vis["intermediate_size"],
        patch_size=[vis["patch_size"]] * 2,
        image_size=vis["image_size"],
        pool="cls",
        posemb="learn",
        activation=activation(vis["hidden_act"]),
        norm_epsilon=vis["layer_norm_eps"],
        pre_norm=True,
        patch_bias=False,
    )
    # NOTE: eos_token_id == 2 marks pre-2023 configs where HF pools at argmax(ids); CLIP's causal mask
    # makes tokens after the pooled one irrelevant, so padding needs no key mask.
    text = dict(
        vocab_size=txt["vocab_size"],
        width=txt["hidden_size"],
        depth=txt["num_hidden_layers"],
        num_heads=txt["num_attention_heads"],
        mlp_dim=txt["intermediate_size"],
        max_len=txt["max_position_embeddings"],
        pool="argmax" if eos == 2 else "eos",
        causal=True,
        pad_id=int(txt["pad_token_id"] if txt["pad_token_id"] is not None else 0),
        eos_id=eos,
        activation=activation(txt["hidden_act"]),
        norm_epsilon=txt["layer_norm_eps"],
        pad_mask=False,
    )
    return dict(
        image=image,
        text=text,
        embed_dim=int(hf.get("projection_dim", 512)),
        temperature_init=float(hf.get("logit_scale_init_value", 2.6592)),
        bias_init=None,
        img_proj_kind="linear",
        txt_proj_kind="linear",
        max_logit_scale=None,
    )


def build(cfg: dict, dtype: Any = None, param_dtype: Any = None) -> TwoTower:
    """vljax model config -> TwoTower."""
    kw = {k: v for k, v in dict(dtype=dtype, param_dtype=param_dtype).items() if v is not None}
    return TwoTower(**cfg, **kw)


def init_fn(model: TwoTower):
    """-> rng -> boxed params from dummy [1, S, S, 3] images and [1, L] tokens."""
    size = model.image["image_size"]
    size = (size, size) if isinstance(size, int) else tuple(size)
    return lambda rng: model.init(rng, jnp.zeros((1, *size, 3)), jnp.zeros((1, model.text["max_len"]), jnp.int32))[
        "params"
    ]


def encoder_layer_rules(ours: str, theirs: str, heads: int, head_dim: int) -> list[Rule]:
    """Rules of one HF CLIP/SigLIP encoder layer `theirs` <-> vljax Block `ours`."""
    rules = []
    for norm, hf_norm in (("norm_attn", "layer_norm1"), ("norm_mlp", "layer_norm2")):
        rules += [
            (f"{ours}/{norm}/scale", f"{theirs}.{hf_norm}.weight", IDENTITY),
            (f"{ours}/{norm}/bias", f"{theirs}.{hf_norm}.bias", IDENTITY),
        ]
    for proj, hf_proj in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj")):
        rules += [
            (f"{ours}/attn/{proj}_kernel", f"{theirs}.self_attn.{hf_proj}.weight", heads_in(heads, head_dim)),
            (f"{ours}/attn/{proj}_bias", f"{theirs}.self_attn.{hf_proj}.bias", heads_bias(heads, head_dim)),
        ]
    rules += [
        (f"{ours}/attn/out_kernel", f"{theirs}.self_attn.out_proj.weight", heads_out(heads, head_dim)),
        (f"{ours}/attn/out_bias", f"{theirs}.self_attn.out_proj.bias", IDENTITY),
    ]
    for dense, fc in (("wi", "fc1"), ("wo", "fc2")):
        rules += [
            (f"{ours}/mlp/{dense}/kernel", f"{theirs}.mlp.{fc}.weight", LINEAR),
            (f"{ours}/mlp/{dense}/bias", f"{theirs}.mlp.{fc}.bias", IDENTITY),
        ]
    return rules


def norm_rules(ours: str, theirs: str) -> list[Rule]:
    """LayerNorm `theirs` (weight, bias) <-> vljax `ours` (scale, bias)."""
    return [(f"{ours}/scale", f"{theirs}.weight", IDENTITY), (f"{ours}/bias", f"{theirs}.bias", IDENTITY)]


def text_rules(cfg: dict) -> list[Rule]:
    """Text tower rules shared by CLIP and SigLIP (embeddings, layers, final norm)."""
    t = cfg["text"]
    rules = [
        ("txt_tower/token_embed/embedding", "text_model.embeddings.token_embedding.weight", IDENTITY),
        ("txt_tower/pos_embed/embedding", "text_model.embeddings.position_embedding.weight", IDENTITY),
    ]
    rules += norm_rules("txt_tower/encoder/norm_out", "text_model.final_layer_norm")
    for i in range(t["depth"]):
        rules += encoder_layer_rules(
            f"txt_tower/encoder/block_{i:02d}",
            f"text_model.encoder.layers.{i}",
            t["num_heads"],
            t["width"] // t["num_heads"],
        )
    return rules


def vision_layer_rules(cfg: dict) -> list[Rule]:
    """Vision encoder layer rules shared by CLIP and SigLIP."""
    v = cfg["image"]
    return [
        r
        for i in range(v["depth"])
        for r in encoder_layer_rules(
            f"img_tower/block_{i:02d}", f"vision_model.encoder.layers.{i}", v["num_heads"], v["width"] // v["num_heads"]
        )
    ]


def _rules(cfg: dict) -> list[Rule]:
    rules = [
        (
            "img_tower/embedding/proj/kernel",
            "vision_model.embeddings.patch_embedding.weight",
            conv_patch(cfg["image"]["patch_size"]),
        ),
        ("img_proj/kernel", "visual_projection.weight", LINEAR),
        ("txt_proj/kernel", "text_projection.weight", LINEAR),
        ("logit_scale", "logit_scale", IDENTITY),
    ]
    rules += norm_rules("img_tower/norm_pre", "vision_model.pre_layrnorm")
    rules += norm_rules("img_tower/norm_out", "vision_model.post_layernorm")
    return rules + vision_layer_rules(cfg) + text_rules(cfg)


CLS, POS = "vision_model.embeddings.class_embedding", "vision_model.embeddings.position_embedding.weight"


def entries(hf: dict, cfg: dict) -> tuple[dict[str, Entry], tuple[str, ...]]:
    """-> ({vljax path: Entry}, ignorable source-name regexes)."""
    out = entries_from_rules(_rules(cfg))
    out["img_tower/cls"] = Entry((CLS, POS), lambda c, p: (c + p[0])[None])
    out["img_tower/pos_embedding"] = Entry((POS,), lambda p: p[1:])
    return out, IGNORE


def _check_exportable(cfg: dict) -> None:
    img, txt = cfg["image"], cfg["text"]
    if img.get("arch", "vit") != "vit":
        # NOTE: transformers' CLIPModel has only the ViT image tower; CLIP ResNets stay in vljax format.
        raise ConversionError(f"model is not a CLIPModel layout: image.arch={img['arch']!r} (CLIPModel has a ViT only)")
    need = [
        ("image.pool", img.get("pool"), "cls"),
        ("image.posemb", img.get("posemb", "learn"), "learn"),
        ("image.pre_norm", img.get("pre_norm"), True),
        ("image.patch_bias", img.get("patch_bias"), False),
        ("text.causal", txt.get("causal"), True),
        ("img_proj_kind", cfg.get("img_proj_kind"), "linear"),
        ("txt_proj_kind", cfg.get("txt_proj_kind"), "linear"),
    ]
    bad = [f"{k}={v!r} (CLIP needs {w!r})" for k, v, w in need if v != w]
    if txt.get("pool") not in ("eos", "argmax"):
        bad.append(f"text.pool={txt.get('pool')!r} (CLIP needs 'eos' or 'argmax')")
    if bad:
        raise ConversionError("model is not a CLIPModel layout: " + "; ".join(bad))


def export(flat: dict, cfg: dict, arch: str = "CLIPModel") -> tuple[dict, dict]:
    """Flat vljax params + config -> (HF config.json dict, {HF name: tensor})."""
    _check_exportable(cfg)
    img, txt = cfg["image"], cfg["text"]
    tensors = export_rules(_rules(cfg), flat)
    cls, pos = np.asarray(flat["img_tower/cls"]), np.asarray(flat["img_tower/pos_embedding"])
    tensors[CLS] = cls[0]
    tensors[POS] = np.concatenate([np.zeros_like(pos[:1]), pos], axis=0)
    size = img["image_size"] if isinstance(img["image_size"], int) else img["image_size"][0]
    eos = txt["eos_id"] if txt["pool"] == "eos" else 2
    vision_config = dict(
        hidden_size=img["width"],
        intermediate_size=img["mlp_dim"],
        num_hidden_layers=img["depth"],
        num_attention_heads=img["num_heads"],
        num_channels=3,
        image_size=size,
        patch_size=int(img["patch_size"][0]),
        hidden_act=hf_activation(img["activation"]),
        layer_norm_eps=img["norm_epsilon"],
        projection_dim=cfg["embed_dim"],
    )
    text_config = dict(
        vocab_size=txt["vocab_size"],
        hidden_size=txt["width"],
        intermediate_size=txt["mlp_dim"],
        num_hidden_layers=txt["depth"],
        num_attention_heads=txt["num_heads"],
        max_position_embeddings=txt["max_len"],
        hidden_act=hf_activation(txt["activation"]),
        layer_norm_eps=txt["norm_epsilon"],
        pad_token_id=txt.get("pad_id", 1),
        bos_token_id=txt.get("bos_id", 0),
        eos_token_id=eos,
        projection_dim=cfg["embed_dim"],
    )
    hf = dict(
        architectures=["CLIPModel"],
        model_type="clip",
        projection_dim=cfg["embed_dim"],
        logit_scale_init_value=cfg.get("temperature_init", 2.6592),
        text_config=text_config,
        vision_config=vision_config,
        dtype="float32",
    )
    return hf, tensors
