"""Pre-LN transformer block with separable attention / MLP branches, and an N-block Encoder."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vljax.nn.attention import MultiHeadAttention
from vljax.nn.mlp import Mlp
from vljax.nn.norms import make_norm

Dtype = Any

REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


class Block(nn.Module):
    """[B, N, D] -> [B, N, D] pre-LN block: x + Attn(Norm(x)), then x + Mlp(Norm(x)).

    The two residual branches are separate methods so a caller can act between them (e.g. token
    merging); `deterministic` is an attribute (not a call argument) so the block can be rematted.
    """

    num_heads: int
    mlp_dim: int
    num_kv_heads: int | None = None
    head_dim: int | None = None
    activation: str = "gelu"
    norm: str = "layernorm"
    norm_epsilon: float = 1e-6
    causal: bool = False
    use_rope: bool = False
    use_bias: bool = True
    dropout_rate: float = 0.0
    attn_dropout_rate: float = 0.0
    attention_impl: str = "auto"
    deterministic: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        norm_kw = dict(epsilon=self.norm_epsilon, dtype=self.dtype, param_dtype=self.param_dtype)
        self.norm_attn = make_norm(self.norm, **norm_kw)
        self.attn = MultiHeadAttention(
            num_heads=self.num_heads,
            num_kv_heads=self.num_kv_heads,
            head_dim=self.head_dim,
            causal=self.causal,
            use_rope=self.use_rope,
            use_bias=self.use_bias,
            dropout_rate=self.attn_dropout_rate,
            attention_impl=self.attention_impl,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        self.norm_mlp = make_norm(self.norm, **norm_kw)
        self.mlp = Mlp(
            mlp_dim=self.mlp_dim,
            activation=self.activation,
            use_bias=self.use_bias,
            dropout_rate=self.dropout_rate,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        self.dropout = nn.Dropout(self.dropout_rate)

    def attention_branch(self, x, kv_mask=None, positions=None, bias=None):
        """[B, N, D] (+ bool kv_mask [B, N], int positions [B, N], logit bias) -> [B, N, D] after the attention residual."""
        return self.attention_branch_with_keys(x, kv_mask, positions, bias)[0]

    def attention_branch_with_keys(self, x, kv_mask=None, positions=None, bias=None):
        """[B, N, D] -> ([B, N, D] after the attention residual, keys [B, N, Hkv, K]) for token merging.

        NOTE: a separate method (not a bool flag) so that the rematted block class needs no static args.
        """
        y, keys = self.attn(
            self.norm_attn(x),
            kv_mask=kv_mask,
            bias=bias,
            positions_q=positions,
            positions_kv=positions,
            deterministic=self.deterministic,
            return_keys=True,
        )
        x = x + self.dropout(y, deterministic=self.deterministic)
        return nn.with_logical_constraint(x, ("batch", "length", "act_embed")), keys

    def mlp_branch(self, x):
        """[B, N, D] -> [B, N, D] after the MLP residual."""
        y = self.mlp(self.norm_mlp(x), deterministic=self.deterministic)
        x = x + self.dropout(y, deterministic=self.deterministic)
        return nn.with_logical_constraint(x, ("batch", "length", "act_embed"))

    def __call__(self, x, kv_mask=None, positions=None):
        """[B, N, D] -> [B, N, D] full block."""
        return self.mlp_branch(self.attention_branch(x, kv_mask, positions))


def block_class(remat: str = "none") -> type[nn.Module]:
    """Block, or Block with both branches rematerialized under policy 'full' | 'dots_saveable' | ..."""
    if remat == "none":
        return Block
    if remat not in REMAT_POLICIES:
        raise ValueError(f"remat={remat!r} is not one of {['none', *sorted(REMAT_POLICIES)]}")
    return nn.remat(
        Block,
        policy=REMAT_POLICIES[remat],
        prevent_cse=True,
        methods=["attention_branch", "attention_branch_with_keys", "mlp_branch"],
    )


class Encoder(nn.Module):
    """[B, N, D] -> [B, N, D] stack of `depth` pre-LN blocks plus a final norm."""

    depth: int
    num_heads: int
    mlp_dim: int
    block_kwargs: dict | None = None
    remat: str = "none"
    final_norm: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, kv_mask=None, positions=None, *, train: bool = False):
        """[B, N, D] (+ bool kv_mask [B, N], int positions [B, N]) -> [B, N, D]."""
        kwargs = dict(self.block_kwargs or {})
        cls = block_class(self.remat)
        for i in range(self.depth):
            x = cls(
                num_heads=self.num_heads,
                mlp_dim=self.mlp_dim,
                deterministic=not train,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=f"block_{i:02d}",
                **kwargs,
            )(x, kv_mask, positions)
        if self.final_norm:
            norm = kwargs.get("norm", "layernorm")
            eps = kwargs.get("norm_epsilon", 1e-6)
            x = make_norm(norm, epsilon=eps, dtype=self.dtype, param_dtype=self.param_dtype, name="norm_out")(x)
        return x
