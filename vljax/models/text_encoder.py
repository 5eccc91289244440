"""Text transformer: int32 tokens [B, L] -> [B, D] pooled (+ [B, L, D] tokens)."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from vljax.nn.embeddings import LearnedPosEmb, TokenEmbed
from vljax.nn.pooling import Pool
from vljax.nn.transformer import Encoder

Dtype = Any

TEXT_POOLS = ("last", "eos", "argmax", "first", "final", "map", "gap")


class TextEncoder(nn.Module):
    """int [B, L] -> [B, D]; padding is tokens == pad_id, masked out of attention and pooling."""

    vocab_size: int
    width: int
    depth: int
    num_heads: int
    mlp_dim: int
    max_len: int
    pool: str = "last"
    causal: bool = False
    pad_id: int = 0
    eos_id: int | None = None
    activation: str = "gelu"
    norm: str = "layernorm"
    norm_epsilon: float = 1e-6
    # NOTE: SigLIP was trained attending to its pad tokens; pad_mask=False reproduces that.
    pad_mask: bool = True
    dropout_rate: float = 0.0
    remat: str = "none"
    attention_impl: str = "auto"  # 'auto' | 'xla' | 'cudnn' | 'pallas' (vljax.nn.attention.resolve_attention_impl)
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, tokens, *, train: bool = False, return_tokens: bool = False):
        """int [B, L] -> [B, D], or ([B, D], [B, L, D]) with return_tokens=True."""
        if self.pool not in TEXT_POOLS:
            raise ValueError(f"pool={self.pool!r} is not one of {TEXT_POOLS}")
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be [B, L], got shape {tokens.shape}")
        if tokens.shape[1] > self.max_len:
            raise ValueError(f"tokens length {tokens.shape[1]} exceeds max_len={self.max_len}")
        mask = (tokens != self.pad_id) if self.pad_mask else None
        x = TokenEmbed(self.vocab_size, self.width, dtype=self.dtype, param_dtype=self.param_dtype, name="token_embed")(
            tokens
        )
        x = LearnedPosEmb(self.max_len, stddev=0.01, param_dtype=self.param_dtype, name="pos_embed")(x)
        x = nn.with_logical_constraint(x, ("batch", "length", "act_embed"))
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        # NOTE: pads are masked as keys only; their own outputs are excluded by the pooling.
        x = Encoder(
            self.depth,
            self.num_heads,
            self.mlp_dim,
            block_kwargs=dict(
                activation=self.activation,
                norm=self.norm,
                norm_epsilon=self.norm_epsilon,
                causal=self.causal,
                dropout_rate=self.dropout_rate,
                attention_impl=self.attention_impl,
            ),
            remat=self.remat,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="encoder",
        )(x, mask, train=train)
        pooled = Pool(
            self.pool,
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            pad_id=self.pad_id,
            eos_id=self.eos_id,
            norm_epsilon=self.norm_epsilon,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="pool",
        )(x, mask=mask, tokens=tokens)
        return (pooled, x) if return_tokens else pooled
