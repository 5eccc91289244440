"""Token pooling: cls / first, gap (masked mean), map (attention probe), last non-pad, eos / argmax."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from vljax.nn.attention import MultiHeadAttention
from vljax.nn.mlp import Mlp
from vljax.nn.norms import LayerNorm

Dtype = Any


def first_token_pool(x):
    """[B, N, D] -> [B, D] the first token (class token)."""
    return x[:, 0]


def gap_pool(x, mask=None):
    """[B, N, D] (+ bool mask [B, N], True = real token) -> [B, D] mean over real tokens."""
    if mask is None:
        return jnp.mean(x, axis=1)
    w = mask.astype(jnp.float32)[..., None]
    total = jnp.sum(x.astype(jnp.float32) * w, axis=1)
    return (total / jnp.maximum(jnp.sum(w, axis=1), 1.0)).astype(x.dtype)


def final_token_pool(x):
    """[B, N, D] -> [B, D] the token at the last position, padding or not (SigLIP's text pooling)."""
    return x[:, -1]


def gather_tokens(x, index):
    """[B, N, D] x int [B] -> [B, D] the token at `index` in each row."""
    return jnp.take_along_axis(x, index[:, None, None].astype(jnp.int32), axis=1)[:, 0]


def last_token_index(tokens, pad_id: int = 0):
    """int [B, L] -> int [B] position of the last token != pad_id (0 for an all-pad row)."""
    pos = jnp.arange(tokens.shape[1])[None, :]
    return jnp.max(jnp.where(tokens != pad_id, pos, 0), axis=1)


def eos_index(tokens, eos_id: int | None = None):
    """int [B, L] -> int [B] first position of eos_id, or of the largest token id if eos_id is None."""
    if eos_id is None:
        # NOTE: CLIP's BPE gives end-of-text the highest id, so argmax over ids finds it.
        return jnp.argmax(tokens, axis=1)
    return jnp.argmax(tokens == eos_id, axis=1)


class MAPHead(nn.Module):
    """[B, N, D] -> [B, D] multihead attention pooling with a learned probe (+ MLP residual)."""

    num_heads: int
    mlp_dim: int | None = None
    activation: str = "gelu"
    norm_epsilon: float = 1e-6
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, mask=None):
        """[B, N, D] (+ bool mask [B, N]) -> [B, D]."""
        b, _, d = x.shape
        probe = self.param(
            "probe",
            nn.with_logical_partitioning(nn.initializers.xavier_uniform(), (None, "embed")),
            (1, d),
            self.param_dtype,
        )
        q = jnp.broadcast_to(probe.astype(self.dtype)[None], (b, 1, d))
        y = MultiHeadAttention(num_heads=self.num_heads, dtype=self.dtype, param_dtype=self.param_dtype, name="attn")(
            q, x, kv_mask=mask
        )
        z = LayerNorm(epsilon=self.norm_epsilon, dtype=self.dtype, param_dtype=self.param_dtype, name="norm")(y)
        y = y + Mlp(
            self.mlp_dim or 4 * d,
            activation=self.activation,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="mlp",
        )(z)
        return y[:, 0]


POOLS = ("cls", "first", "final", "gap", "map", "last", "eos", "argmax", "none")


class Pool(nn.Module):
    """[B, N, D] -> [B, D] pooling by name (see POOLS); 'last'/'eos'/'argmax' need the tokens."""

    kind: str
    num_heads: int = 1
    mlp_dim: int | None = None
    pad_id: int = 0
    eos_id: int | None = None
    activation: str = "gelu"  # of the 'map' head's MLP
    norm_epsilon: float = 1e-6  # of the 'map' head's LayerNorm
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, mask=None, tokens=None):
        """[B, N, D] (+ bool mask [B, N], int tokens [B, N]) -> [B, D] ([B, N, D] for 'none')."""
        if self.kind not in POOLS:
            raise ValueError(f"pool={self.kind!r} is not one of {POOLS}")
        if self.kind in ("cls", "first"):
            return first_token_pool(x)
        if self.kind == "final":
            return final_token_pool(x)
        if self.kind == "gap":
            return gap_pool(x, mask)
        if self.kind == "map":
            return MAPHead(
                self.num_heads,
                self.mlp_dim,
                activation=self.activation,
                norm_epsilon=self.norm_epsilon,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name="map",
            )(x, mask)
        if self.kind == "none":
            return x
        if tokens is None:
            raise ValueError(f"pool={self.kind!r} needs tokens")
        if self.kind == "last":
            return gather_tokens(x, last_token_index(tokens, self.pad_id))
        eos = self.eos_id if self.kind == "eos" else None
        return gather_tokens(x, eos_index(tokens, eos))
