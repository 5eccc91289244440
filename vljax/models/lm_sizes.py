"""Named causal-LM sizes, tiny (CPU / synthetic world) to 7-8B (Llama-2-7B, Llama-3-8B layouts).

A config may name a size instead of spelling out the CausalLM fields:

    config.model.lm = "llama-7b"                               # the named architecture
    config.model.lm = dict(size="llama-7b", remat="full")      # the named architecture + overrides

`resolve_lm` turns either form (or a plain dict of CausalLM fields) into CausalLM keyword arguments; the
builders (vljax.methods.text_lm.build, vljax.methods.lvlm_ntp.build) call it, and the vocabulary always
comes from the tokenizer. `REFERENCE_VOCAB` is the vocabulary each size was published with, used only for
the parameter counts below (`lm_param_count`; tests/test_lm_sizes.py checks them against the real
modules and the published counts).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_LLAMA3_ROPE = dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                    original_max_position_embeddings=8192)

LM_SIZES: dict[str, dict[str, Any]] = {
    # NOTE: tiny / small match configs/prior.py's reference and `small` LMs (CPU-sized, world vocab).
    "tiny": dict(width=128, depth=2, num_heads=4, num_kv_heads=2, mlp_dim=256, tie_embeddings=True),
    "small": dict(width=384, depth=6, num_heads=6, num_kv_heads=2, mlp_dim=1024, tie_embeddings=True),
    "base": dict(width=768, depth=12, num_heads=12, num_kv_heads=4, mlp_dim=2048, tie_embeddings=True),
    # NOTE: Llama-3.2-1B layout (GQA 32/8, tied embeddings, llama3 RoPE scaling).
    "llama-1b": dict(width=2048, depth=16, num_heads=32, num_kv_heads=8, mlp_dim=8192, tie_embeddings=True,
                     norm_epsilon=1e-5, rope_theta=500_000.0, rope_scaling=_LLAMA3_ROPE, max_len=131_072),
    # NOTE: Llama-2-7B layout (MHA, untied lm_head).
    "llama-7b": dict(width=4096, depth=32, num_heads=32, mlp_dim=11008, tie_embeddings=False, norm_epsilon=1e-5,
                     max_len=4096),
    # NOTE: Llama-3-8B layout (GQA 32/8, untied lm_head, 128k vocab).
    "llama3-8b": dict(width=4096, depth=32, num_heads=32, num_kv_heads=8, mlp_dim=14336, tie_embeddings=False,
                      norm_epsilon=1e-5, rope_theta=500_000.0, max_len=8192),
}

# NOTE: 264 = the world tokenizer's vocabulary under configs/prior.py (what tiny / small train with here).
REFERENCE_VOCAB = {"tiny": 264, "small": 264, "base": 32000, "llama-1b": 128256, "llama-7b": 32000,
                   "llama3-8b": 128256}


def resolve_lm(spec: Any) -> dict[str, Any]:
    """config.model.lm (size name | dict(size=name, **overrides) | dict of CausalLM fields) -> CausalLM kwargs."""
    if isinstance(spec, str):
        spec = {"size": spec}
    if not isinstance(spec, Mapping) and not hasattr(spec, "to_dict"):
        raise ValueError(f"config.model.lm must be a size name or a dict, got {type(spec).__name__}")
    spec = dict(spec.to_dict() if hasattr(spec, "to_dict") else spec)
    name = spec.pop("size", None)
    if name is None:
        return spec
    if name not in LM_SIZES:
        raise ValueError(f"config.model.lm size {name!r} is not one of {sorted(LM_SIZES)}")
    return {**LM_SIZES[name], **spec}


def lm_param_count(arch: Mapping[str, Any], vocab_size: int) -> int:
    """Closed-form CausalLM parameter count for CausalLM kwargs + vocabulary (no bias terms).

        embed V*D (+ lm_head D*V if untied) + final norm D
        + depth * [ D*H*hd (q) + 2*D*K*hd (k, v) + H*hd*D (o) + 3*D*M (SwiGLU) + 2*D (norms) ]
    """
    d, depth, h, m = (int(arch[k]) for k in ("width", "depth", "num_heads", "mlp_dim"))
    kv = int(arch.get("num_kv_heads") or h)
    hd = int(arch.get("head_dim") or d // h)
    if any(arch.get(k) for k in ("qkv_bias", "out_bias", "mlp_bias")):
        raise ValueError("lm_param_count: biases are not counted; use a bias-free architecture")
    per_layer = d * h * hd + 2 * d * kv * hd + h * hd * d + 3 * d * m + 2 * d
    embeds = vocab_size * d * (1 if arch.get("tie_embeddings", False) else 2)
    return embeds + d + depth * per_layer
