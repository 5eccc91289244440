"""Hugging Face SiglipModel <-> vljax TwoTower (ViT with MAP head + bidirectional text transformer).

    vision_model.embeddings.patch_embedding.{weight,bias}     -> img_tower/embedding/proj/{kernel,bias}
    vision_model.embeddings.position_embedding.weight [N, D]  -> img_tower/pos_embedding
    vision_model.encoder.layers.i.* / post_layernorm          -> img_tower/block_ii/* / norm_out
    vision_model.head.probe [1, 1, D]                         -> img_tower/pool/map/probe [1, D]
    vision_model.head.attention.in_proj_{weight,bias} [3D..]  -> img_tower/pool/map/attn/{query,key,value}_*
    vision_model.head.attention.out_proj / layernorm / mlp    -> img_tower/pool/map/attn/out_* / norm / mlp
    text_model.* (as CLIP, no causal mask, last-position pooling)
    text_model.head.{weight,bias}                             -> txt_proj/{kernel,bias}
    logit_scale [1], logit_bias [1]                           -> logit_scale, logit_bias (scalars)

The image embedding is the MAP head output itself (img_proj_kind='none').
"""

from __future__ import annotations

import numpy as np

from vljax.convert import hf_clip
from vljax.convert.common import (
    IDENTITY,
    LINEAR,
    ConversionError,
    Entry,
    Layout,
    Rule,
    conv_patch,
    entries_from_rules,
    export_rules,
    heads_out,
    pack_qkv,
    packed_qkv_entries,
)
from vljax.convert.hf_clip import build, init_fn, norm_rules  # noqa: F401 - same TwoTower build

ARCHITECTURES = ("SiglipModel",)
KIND = "two_tower"
IGNORE = hf_clip.IGNORE
TEXT_DEFAULTS = dict(
    vocab_size=32000,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=64,
    hidden_act="gelu_pytorch_tanh",
    layer_norm_eps=1e-6,
    pad_token_id=1,
    projection_size=None,
)
VISION_DEFAULTS = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    num_channels=3,
    image_size=224,
    patch_size=16,
    hidden_act="gelu_pytorch_tanh",
    layer_norm_eps=1e-6,
    vision_use_head=True,
)
SCALAR = Layout(lambda x: x.reshape(()), lambda x: np.asarray(x).reshape(1))
PROBE = Layout(lambda x: x.reshape(1, -1), lambda x: x.reshape(1, 1, -1))
IN_PROJ = "vision_model.head.attention.in_proj"


def model_config(hf: dict) -> dict:
    """HF SiglipModel config.json dict -> TwoTower keyword arguments."""
    vis = {**VISION_DEFAULTS, **hf.get("vision_config", {})}
    txt = {**TEXT_DEFAULTS, **hf.get("text_config", {})}
    if not vis["vision_use_head"]:
        raise ConversionError("vision_config.vision_use_head=False: SiglipModel needs the MAP head")
    if vis["num_channels"] != 3:
        raise ConversionError(f"vision_config.num_channels={vis['num_channels']} is not supported (RGB only)")
    embed = int(txt["projection_size"] or txt["hidden_size"])
    if embed != vis["hidden_size"]:
        raise ConversionError(f"text projection_size={embed} must equal vision hidden_size={vis['hidden_size']}")
    image = dict(
        width=vis["hidden_size"],
        depth=vis["num_hidden_layers"],
        num_heads=vis["num_attention_heads"],
        mlp_dim=vis["intermediate_size"],
        patch_size=[vis["patch_size"]] * 2,
        image_size=vis["image_size"],
        pool="map",
        posemb="learn",
        activation=hf_clip.activation(vis["hidden_act"]),
        norm_epsilon=vis["layer_norm_eps"],
        pool_activation=hf_clip.activation(vis["hidden_act"]),
    )
    text = dict(
        vocab_size=txt["vocab_size"],
        width=txt["hidden_size"],
        depth=txt["num_hidden_layers"],
        num_heads=txt["num_attention_heads"],
        mlp_dim=txt["intermediate_size"],
        max_len=txt["max_position_embeddings"],
        pool="final",
        causal=False,
        pad_id=int(txt["pad_token_id"] if txt["pad_token_id"] is not None else 0),
        activation=hf_clip.activation(txt["hidden_act"]),
        norm_epsilon=txt["layer_norm_eps"],
        pad_mask=False,
    )
    return siglip_two_tower(image, text, embed)


def siglip_two_tower(image: dict, text: dict, embed: int) -> dict:
    """Tower kwargs -> TwoTower kwargs with SigLIP's head: no image projection (the MAP head's output is the
    embedding), a biased text projection, learned t = log 10 and b = -10, and no cap on the logit scale."""
    return dict(image=image, text=text, embed_dim=embed, temperature_init=float(np.log(10.0)), bias_init=-10.0,
                img_proj_kind="none", txt_proj_kind="linear_bias", max_logit_scale=None)


def _rules(cfg: dict) -> list[Rule]:
    v = cfg["image"]
    heads, head_dim = v["num_heads"], v["width"] // v["num_heads"]
    head = "img_tower/pool/map"
    rules = [
        (
            "img_tower/embedding/proj/kernel",
            "vision_model.embeddings.patch_embedding.weight",
            conv_patch(v["patch_size"]),
        ),
        ("img_tower/embedding/proj/bias", "vision_model.embeddings.patch_embedding.bias", IDENTITY),
        ("img_tower/pos_embedding", "vision_model.embeddings.position_embedding.weight", IDENTITY),
        (f"{head}/probe", "vision_model.head.probe", PROBE),
        (f"{head}/attn/out_kernel", "vision_model.head.attention.out_proj.weight", heads_out(heads, head_dim)),
        (f"{head}/attn/out_bias", "vision_model.head.attention.out_proj.bias", IDENTITY),
        (f"{head}/mlp/wi/kernel", "vision_model.head.mlp.fc1.weight", LINEAR),
        (f"{head}/mlp/wi/bias", "vision_model.head.mlp.fc1.bias", IDENTITY),
        (f"{head}/mlp/wo/kernel", "vision_model.head.mlp.fc2.weight", LINEAR),
        (f"{head}/mlp/wo/bias", "vision_model.head.mlp.fc2.bias", IDENTITY),
        ("txt_proj/kernel", "text_model.head.weight", LINEAR),
        ("txt_proj/bias", "text_model.head.bias", IDENTITY),
        ("logit_scale", "logit_scale", SCALAR),
        ("logit_bias", "logit_bias", SCALAR),
    ]
    rules += norm_rules(f"{head}/norm", "vision_model.head.layernorm")
    rules += norm_rules("img_tower/norm_out", "vision_model.post_layernorm")
    return rules + hf_clip.vision_layer_rules(cfg) + hf_clip.text_rules(cfg)


def entries(hf: dict, cfg: dict) -> tuple[dict[str, Entry], tuple[str, ...]]:
    """-> ({vljax path: Entry}, ignorable source-name regexes)."""
    v = cfg["image"]
    out = entries_from_rules(_rules(cfg))
    out.update(
        packed_qkv_entries(
            "img_tower/pool/map/attn", f"{IN_PROJ}_weight", f"{IN_PROJ}_bias", v["width"], v["num_heads"]
        )
    )
    return out, IGNORE


def export(flat: dict, cfg: dict, arch: str = "SiglipModel") -> tuple[dict, dict]:
    """Flat vljax params + config -> (HF config.json dict, {HF name: tensor})."""
    img, txt = cfg["image"], cfg["text"]
    need = [
        ("image.pool", img.get("pool"), "map"),
        ("text.pool", txt.get("pool"), "final"),
        ("text.causal", txt.get("causal", False), False),
        ("img_proj_kind", cfg.get("img_proj_kind"), "none"),
        ("txt_proj_kind", cfg.get("txt_proj_kind"), "linear_bias"),
        ("image.pool_activation", img.get("pool_activation", "gelu"), img.get("activation", "gelu")),
    ]
    bad = [f"{k}={v!r} (SigLIP needs {w!r})" for k, v, w in need if v != w]
    if bad or cfg.get("bias_init") is None:
        raise ConversionError("model is not a SiglipModel layout: " + "; ".join(bad or ["no logit_bias"]))
    tensors = export_rules(_rules(cfg), flat)
    d = img["width"]
    tensors[f"{IN_PROJ}_weight"], tensors[f"{IN_PROJ}_bias"] = pack_qkv(flat, "img_tower/pool/map/attn", d)
    size = img["image_size"] if isinstance(img["image_size"], int) else img["image_size"][0]
    vision_config = dict(
        hidden_size=d,
        intermediate_size=img["mlp_dim"],
        num_hidden_layers=img["depth"],
        num_attention_heads=img["num_heads"],
        num_channels=3,
        image_size=size,
        patch_size=int(img["patch_size"][0]),
        hidden_act=hf_clip.hf_activation(img["activation"]),
        layer_norm_eps=img["norm_epsilon"],
    )
    text_config = dict(
        vocab_size=txt["vocab_size"],
        hidden_size=txt["width"],
        intermediate_size=txt["mlp_dim"],
        num_hidden_layers=txt["depth"],
        num_attention_heads=txt["num_heads"],
        max_position_embeddings=txt["max_len"],
        hidden_act=hf_clip.hf_activation(txt["activation"]),
        layer_norm_eps=txt["norm_epsilon"],
        pad_token_id=txt.get("pad_id", 1),
        projection_size=cfg["embed_dim"],
    )
    hf = dict(
        architectures=["SiglipModel"],
        model_type="siglip",
        text_config=text_config,
        vision_config=vision_config,
        dtype="float32",
    )
    return hf, tensors
