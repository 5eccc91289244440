"""Hugging Face Llama / Mistral / Qwen2 causal LMs <-> vljax CausalLM.

model.embed_tokens.weight [V, D]               -> token_embed/embedding [V, D]
model.layers.i.input_layernorm.weight          -> block_ii/norm_attn/scale
model.layers.i.self_attn.{q,k,v}_proj.weight   -> block_ii/attn/{query,key,value}_kernel [D, H, K]
model.layers.i.self_attn.o_proj.weight         -> block_ii/attn/out_kernel [H, K, D]
model.layers.i.post_attention_layernorm.weight -> block_ii/norm_mlp/scale
model.layers.i.mlp.{gate,up,down}_proj.weight  -> block_ii/mlp/{wi,wi_gate,wo}/kernel (transposed)
model.norm.weight                              -> norm_out/scale
lm_head.weight [V, D]                          -> lm_head/kernel [D, V] (absent when tied)
"""

from __future__ import annotations

from typing import Any

from vljax.convert.common import (
    IDENTITY,
    LINEAR,
    ConversionError,
    Entry,
    entries_from_rules,
    export_rules,
    heads_bias,
    heads_in,
    heads_out,
)
from vljax.models.causal_lm import CausalLM, init_causal_lm
from vljax.nn.rope_scaling import ROPE_TYPES

ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")
KIND = "causal_lm"
MODEL_TYPES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2"}
# NOTE: rotary inv_freq buffers (old checkpoints) and a tied lm_head copy carry no parameters.
IGNORE = (r"model\.rotary_emb\.inv_freq", r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq")


def _rope(hf: dict) -> tuple[float, dict | None]:
    """HF config -> (theta, vljax rope_scaling or None); accepts `rope_parameters` and `rope_scaling`."""
    params = dict(hf.get("rope_parameters") or {})
    legacy = dict(hf.get("rope_scaling") or {})
    theta = float(params.get("rope_theta", hf.get("rope_theta", 10_000.0)))
    scaling = {k: v for k, v in {**legacy, **params}.items() if k != "rope_theta"}
    kind = scaling.pop("type", None) or scaling.get("rope_type", "default")
    if kind not in ROPE_TYPES:
        raise ConversionError(f"rope type {kind!r} is not supported; supported: {ROPE_TYPES}")
    if kind == "default":
        return theta, None
    scaling["rope_type"] = kind
    if kind == "dynamic":
        scaling.setdefault("max_position_embeddings", int(hf["max_position_embeddings"]))
    if kind == "llama3":
        scaling.setdefault("original_max_position_embeddings", int(hf["max_position_embeddings"]))
    return theta, scaling


def _sliding_window(hf: dict, arch: str) -> int | None:
    if arch == "MistralForCausalLM":
        return hf.get("sliding_window")
    if arch == "Qwen2ForCausalLM" and hf.get("use_sliding_window"):
        kinds = set(hf.get("layer_types") or [])
        if kinds and kinds != {"sliding_attention"}:
            raise ConversionError(
                f"Qwen2 with mixed layer_types {sorted(kinds)} (max_window_layers) is not "
                "supported; only all-full or all-sliding attention"
            )
        return hf.get("sliding_window")
    return None


def model_config(hf: dict) -> dict:
    """HF config.json dict -> CausalLM keyword arguments."""
    arch = hf["architectures"][0]
    if hf.get("hidden_act", "silu") != "silu":
        raise ConversionError(f"hidden_act={hf['hidden_act']!r} is not supported (SwiGLU needs 'silu')")
    theta, scaling = _rope(hf)
    heads = int(hf["num_attention_heads"])
    qwen = arch == "Qwen2ForCausalLM"
    attention_bias = bool(hf.get("attention_bias", False))
    return dict(
        vocab_size=int(hf["vocab_size"]),
        width=int(hf["hidden_size"]),
        depth=int(hf["num_hidden_layers"]),
        num_heads=heads,
        mlp_dim=int(hf["intermediate_size"]),
        num_kv_heads=int(hf.get("num_key_value_heads") or heads),
        head_dim=int(hf.get("head_dim") or hf["hidden_size"] // heads),
        norm_epsilon=float(hf.get("rms_norm_eps", 1e-6)),
        rope_theta=theta,
        rope_scaling=scaling,
        qkv_bias=qwen or attention_bias,
        out_bias=attention_bias and not qwen,
        mlp_bias=bool(hf.get("mlp_bias", False)),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        sliding_window=_sliding_window(hf, arch),
        max_len=int(hf.get("max_position_embeddings", 4096)),
    )


def build(cfg: dict, dtype: Any = None, param_dtype: Any = None) -> CausalLM:
    """vljax model config -> CausalLM."""
    kw = {k: v for k, v in dict(dtype=dtype, param_dtype=param_dtype).items() if v is not None}
    return CausalLM(**cfg, **kw)


def init_fn(model: CausalLM):
    """-> rng -> boxed params."""
    return lambda rng: init_causal_lm(model, rng)


def _rules(cfg: dict) -> list:
    h, hkv, k = cfg["num_heads"], cfg["num_kv_heads"], cfg["head_dim"]
    rules = [
        ("token_embed/embedding", "model.embed_tokens.weight", IDENTITY),
        ("norm_out/scale", "model.norm.weight", IDENTITY),
    ]
    if not cfg["tie_embeddings"]:
        rules.append(("lm_head/kernel", "lm_head.weight", LINEAR))
    for i in range(cfg["depth"]):
        v, s = f"block_{i:02d}", f"model.layers.{i}"
        rules += [
            (f"{v}/norm_attn/scale", f"{s}.input_layernorm.weight", IDENTITY),
            (f"{v}/norm_mlp/scale", f"{s}.post_attention_layernorm.weight", IDENTITY),
            (f"{v}/attn/query_kernel", f"{s}.self_attn.q_proj.weight", heads_in(h, k)),
            (f"{v}/attn/key_kernel", f"{s}.self_attn.k_proj.weight", heads_in(hkv, k)),
            (f"{v}/attn/value_kernel", f"{s}.self_attn.v_proj.weight", heads_in(hkv, k)),
            (f"{v}/attn/out_kernel", f"{s}.self_attn.o_proj.weight", heads_out(h, k)),
        ]
        if cfg["qkv_bias"]:
            rules += [
                (f"{v}/attn/{n}_bias", f"{s}.self_attn.{p}_proj.bias", heads_bias(nh, k))
                for n, p, nh in (("query", "q", h), ("key", "k", hkv), ("value", "v", hkv))
            ]
        if cfg["out_bias"]:
            rules.append((f"{v}/attn/out_bias", f"{s}.self_attn.o_proj.bias", IDENTITY))
        for ours, theirs in (("wi", "gate_proj"), ("wi_gate", "up_proj"), ("wo", "down_proj")):
            rules.append((f"{v}/mlp/{ours}/kernel", f"{s}.mlp.{theirs}.weight", LINEAR))
            if cfg["mlp_bias"]:
                rules.append((f"{v}/mlp/{ours}/bias", f"{s}.mlp.{theirs}.bias", IDENTITY))
    return rules


def entries(hf: dict, cfg: dict) -> tuple[dict[str, Entry], tuple[str, ...]]:
    """-> ({vljax path: Entry}, ignorable source-name regexes)."""
    ignore = IGNORE + ((r"lm_head\.weight",) if cfg["tie_embeddings"] else ())
    return entries_from_rules(_rules(cfg)), ignore


def export(flat: dict, cfg: dict, arch: str = "LlamaForCausalLM") -> tuple[dict, dict]:
    """Flat vljax params + config -> (HF config.json dict, {HF name: tensor}) for `arch`."""
    if arch not in ARCHITECTURES:
        raise ConversionError(f"cannot export a causal LM as {arch!r}; supported: {ARCHITECTURES}")
    qwen = arch == "Qwen2ForCausalLM"
    if qwen and (not cfg["qkv_bias"] or cfg["out_bias"] or cfg["mlp_bias"]):
        raise ConversionError("Qwen2 needs qkv_bias=True, out_bias=False, mlp_bias=False")
    if not qwen and cfg["qkv_bias"] != cfg["out_bias"]:
        raise ConversionError(
            f"{arch} has one attention_bias flag; got qkv_bias={cfg['qkv_bias']} "
            f"out_bias={cfg['out_bias']} (export as Qwen2ForCausalLM?)"
        )
    if cfg.get("sliding_window") and arch == "LlamaForCausalLM":
        raise ConversionError("LlamaForCausalLM has no sliding window; export as MistralForCausalLM")
    rope = dict(cfg.get("rope_scaling") or {"rope_type": "default"})
    max_pos = int(rope.pop("max_position_embeddings", cfg.get("max_len", 4096)))
    hf = dict(
        architectures=[arch],
        model_type=MODEL_TYPES[arch],
        vocab_size=cfg["vocab_size"],
        hidden_size=cfg["width"],
        intermediate_size=cfg["mlp_dim"],
        num_hidden_layers=cfg["depth"],
        num_attention_heads=cfg["num_heads"],
        num_key_value_heads=cfg["num_kv_heads"],
        head_dim=cfg["head_dim"],
        hidden_act="silu",
        rms_norm_eps=cfg["norm_epsilon"],
        max_position_embeddings=max_pos,
        tie_word_embeddings=cfg["tie_embeddings"],
        rope_theta=cfg["rope_theta"],
        rope_parameters=dict(rope, rope_theta=cfg["rope_theta"]),
        dtype="float32",
    )
    if qwen:
        hf.update(
            use_sliding_window=bool(cfg.get("sliding_window")),
            sliding_window=cfg.get("sliding_window"),
            max_window_layers=0,
        )
    else:
        hf.update(attention_bias=cfg["qkv_bias"], mlp_bias=cfg["mlp_bias"])
        if arch == "MistralForCausalLM":
            hf["sliding_window"] = cfg.get("sliding_window")
    return hf, export_rules(_rules(cfg), flat)
