"""Transformer MLP: gelu, gelu_tanh, quick_gelu or swiglu."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vljax.nn.dense import flat_dot_general

Dtype = Any


def quick_gelu(x):
    """[...] -> [...] x * sigmoid(1.702 x) (OpenAI CLIP's GELU approximation)."""
    return x * jax.nn.sigmoid(1.702 * x)


ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
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
        return nn.Dense(
            features,
            use_bias=self.use_bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=nn.with_logical_partitioning(nn.initializers.xavier_uniform(), names),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros, names[-1:]),
            dot_general=flat_dot_general,
            name=label,
        )

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        """[B, N, D] -> [B, N, out_features or D]."""
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation={self.activation!r} is not one of {sorted(ACTIVATIONS)}")
        d = x.shape[-1]
        act = ACTIVATIONS[self.activation]
        h = self._dense(self.mlp_dim, ("embed", "mlp"), "wi")(x)
        if self.activation == "swiglu":
            h = act(h) * self._dense(self.mlp_dim, ("embed", "mlp"), "wi_gate")(x)
        else:
            h = act(h)
        h = nn.with_logical_constraint(h, ("batch", "length", "act_mlp"))
        h = nn.Dropout(self.dropout_rate)(h, deterministic=deterministic)
        out = self._dense(self.out_features or d, ("mlp", "embed"), "wo")(h)
        return nn.with_logical_constraint(out, ("batch", "length", "act_embed"))
