"""RoPE inverse frequencies with context-extension scaling: default, linear, dynamic (NTK), llama3."""

from __future__ import annotations

import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp

ROPE_TYPES = ("default", "linear", "dynamic", "llama3")


def _base_inv_freq(head_dim: int, theta) -> jax.Array:
    """-> [K/2] theta^(-2i/K) in float32."""
    return 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))


def rope_inv_freq(
    head_dim: int, theta: float, scaling: Mapping[str, Any] | None = None, seq_len: jax.Array | int | None = None
) -> jax.Array:
    """-> [K/2] inverse frequencies; `seq_len` (max position + 1, may be traced) drives 'dynamic'."""
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head_dim, got {head_dim}")
    kind = "default" if not scaling else scaling.get("rope_type", scaling.get("type", "default"))
    if kind not in ROPE_TYPES:
        raise ValueError(f"rope_scaling.rope_type={kind!r} is not one of {ROPE_TYPES}")
    if kind == "default":
        return _base_inv_freq(head_dim, theta)
    factor = float(scaling["factor"])
    if kind == "linear":
        return _base_inv_freq(head_dim, theta) / factor
    if kind == "dynamic":
        max_pos = int(scaling["max_position_embeddings"])
        if seq_len is None:
            raise ValueError("rope_scaling 'dynamic' needs seq_len (max position + 1)")
        # NOTE: NTK-aware base growth only once the sequence exceeds the trained context; the base is
        # recomputed from this call's positions (stateless, unlike a growing cache of frequencies).
        length = jnp.maximum(jnp.asarray(seq_len, jnp.float32), float(max_pos))
        base = theta * ((factor * length / max_pos) - (factor - 1.0)) ** (head_dim / (head_dim - 2))
        return _base_inv_freq(head_dim, base)
    inv = _base_inv_freq(head_dim, theta)
    low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
    old_len = float(scaling["original_max_position_embeddings"])
    wavelen = 2 * math.pi / inv
    # NOTE: llama3: keep high frequencies, divide low ones by `factor`, interpolate in between.
    scaled = jnp.where(wavelen > old_len / low, inv / factor, inv)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return jnp.where(medium, smoothed, scaled)
