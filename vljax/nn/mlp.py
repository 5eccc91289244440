"""Transformer MLP: gelu, gelu_tanh, quick_gelu or swiglu."""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vljax.kernels import tiling
from vljax.nn.dense import partitioned_dense

Dtype = Any


def gelu(x):
    """[...] -> [...] exact GELU, x * Phi(x), written 0.5 x (1 + erf(x / sqrt(2))) as PyTorch's `gelu` is.

    NOTE: not jax.nn.gelu(approximate=False), which takes Phi from erfc(-x / sqrt(2)) to keep its relative
    accuracy for x << 0 (where GELU is below 1e-7 in magnitude and the erf form rounds to 0). XLA's CPU backend
    evaluates erfc and its derivative in three elementwise passes where erf takes one; with the MLP on rows (Mlp)
    the tiny preset's MLP fwd + bwd is then 1.75x faster (`python benchmarks/mlp_layout.py`).
    """
    return 0.5 * x * (1.0 + jax.lax.erf(x * (1.0 / math.sqrt(2.0))))


def quick_gelu(x):
    """[...] -> [...] x * sigmoid(1.702 x) (OpenAI CLIP's GELU approximation)."""
    return x * jax.nn.sigmoid(1.702 * x)


ACTIVATIONS = {
    "gelu": gelu,
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "quick_gelu": quick_gelu,
    "swiglu": jax.nn.silu,  # NOTE: gate nonlinearity; the gating product is in Mlp.
}


class Mlp(nn.Module):
    """[B, N, D] -> [B, N, D] two-layer MLP (three kernels for swiglu) with hidden size mlp_dim."""

    mlp_dim: int
    activation: str = "gelu"
    dropout_rate: float = 0.0
    use_bias: bool = True
    out_features: int | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def _dense(self, features, names, label):
        return partitioned_dense(features, names, label, use_bias=self.use_bias, dtype=self.dtype,
                                 param_dtype=self.param_dtype)

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        """[B, N, D] -> [B, N, out_features or D]."""
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation={self.activation!r} is not one of {sorted(ACTIVATIONS)}")
        lead, d = x.shape[:-1], x.shape[-1]
        act = ACTIVATIONS[self.activation]
        # NOTE: on CPU the whole MLP runs on [B*N, D] rows, reshaped once in and once out (so its dense layers
        # need no vljax.nn.dense layout of their own); flattening each dense layer alone (session 10's
        # flat_dot_general) left the [B, N, F] bias + GELU passes between them, and the MLP fwd + bwd is
        # 1.75x faster with this and the erf GELU together, <= 1.13x with either alone (benchmarks/mlp_layout.py).
        # B stays the major factor of the merged axis, so its batch sharding carries over unchanged.
        flat = x.ndim > 2 and tiling.backend() == "cpu"
        if flat:
            x = x.reshape(-1, d)
        names = ("batch",) if flat else ("batch", "length")
        h = self._dense(self.mlp_dim, ("embed", "mlp"), "wi")(x)
        if self.activation == "swiglu":
            h = act(h) * self._dense(self.mlp_dim, ("embed", "mlp"), "wi_gate")(x)
        else:
            h = act(h)
        h = nn.with_logical_constraint(h, names + ("act_mlp",))
        h = nn.Dropout(self.dropout_rate)(h, deterministic=deterministic)
        out = self._dense(self.out_features or d, ("mlp", "embed"), "wo")(h)
        if flat:
            out = out.reshape(*lead, out.shape[-1])
        return nn.with_logical_constraint(out, ("batch", "length", "act_embed"))
