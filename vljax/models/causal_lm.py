"""Llama-family causal LM: int tokens [B, L] -> logits [B, L, V].

RMSNorm pre-norm blocks, RoPE (default / linear / dynamic-NTK / llama3 scaling), grouped-query
attention, SwiGLU MLP, tied or untied output embedding, optional sliding-window attention. Covers
Llama 1-3, Mistral and Qwen2 (q/k/v biases) layouts; see vljax/convert/hf_llama.py for the mapping.

Generation: `init_cache` + `decode_step(cache, tokens, positions, mask)` run the same parameters
with a KV cache (layout and decoders in vljax/models/decoding.py); `embeds=` feeds input
embeddings instead of token ids (LVLMs splice image tokens there).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vljax.models import decoding
from vljax.nn.attention import MultiHeadAttention
from vljax.nn.embeddings import TokenEmbed
from vljax.nn.mlp import Mlp
from vljax.nn.norms import RMSNorm
from vljax.nn.transformer import REMAT_POLICIES

Dtype = Any


class DecoderLayer(nn.Module):
    """[B, L, D] -> [B, L, D]: x + Attn(RMSNorm(x)), then x + SwiGLU(RMSNorm(x))."""

    num_heads: int
    num_kv_heads: int
    head_dim: int
    mlp_dim: int
    norm_epsilon: float = 1e-6
    rope_theta: float = 10_000.0
    rope_scaling: dict | None = None
    qkv_bias: bool = False
    out_bias: bool = False
    mlp_bias: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, positions, kv_mask=None, mask=None, cache=None, cache_index=None):
        """[B, L, D], int positions [B, L] (+ bool kv_mask [B, L], bool mask [B, L, L]) -> [B, L, D].

        With a layer KV cache ({'k', 'v'}, written at cache_index; `mask` is then [B, L, S]) the result
        is ([B, L, D], new layer cache).
        """
        norm = lambda name: RMSNorm(self.norm_epsilon, dtype=self.dtype, param_dtype=self.param_dtype, name=name)
        if cache is not None:
            # NOTE: the attention params are read back from this scope and run by the cached path of
            # decoding.cached_attention (same layout as MultiHeadAttention), so training and decoding
            # share one set of weights and the full forward stays untouched.
            y, cache = decoding.cached_attention(
                nn.meta.unbox(self.variables["params"]["attn"]),
                norm("norm_attn")(x),
                positions,
                cache,
                cache_index,
                mask,
                num_heads=self.num_heads,
                rope_theta=self.rope_theta,
                rope_scaling=self.rope_scaling,
                dtype=self.dtype,
            )
            x = nn.with_logical_constraint(x + y, ("batch", "length", "act_embed"))
            y = Mlp(
                self.mlp_dim,
                activation="swiglu",
                use_bias=self.mlp_bias,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name="mlp",
            )(norm("norm_mlp")(x))
            return nn.with_logical_constraint(x + y, ("batch", "length", "act_embed")), cache
        y = MultiHeadAttention(
            num_heads=self.num_heads,
            num_kv_heads=self.num_kv_heads,
            head_dim=self.head_dim,
            causal=True,
            use_rope=True,
            rope_max_wavelength=self.rope_theta,
            rope_scaling=self.rope_scaling,
            use_bias=self.qkv_bias,
            out_bias=self.out_bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="attn",
        )(norm("norm_attn")(x), kv_mask=kv_mask, mask=mask, positions_q=positions, positions_kv=positions)
        x = nn.with_logical_constraint(x + y, ("batch", "length", "act_embed"))
        y = Mlp(
            self.mlp_dim,
            activation="swiglu",
            use_bias=self.mlp_bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="mlp",
        )(norm("norm_mlp")(x))
        return nn.with_logical_constraint(x + y, ("batch", "length", "act_embed"))


class CausalLM(nn.Module):
    """int tokens [B, L] -> logits [B, L, V] (or final hidden states [B, L, D] with return_hidden)."""

    vocab_size: int
    width: int
    depth: int
    num_heads: int
    mlp_dim: int
    num_kv_heads: int | None = None
    head_dim: int | None = None
    norm_epsilon: float = 1e-6
    rope_theta: float = 10_000.0
    rope_scaling: dict | None = None
    qkv_bias: bool = False
    out_bias: bool = False
    mlp_bias: bool = False
    tie_embeddings: bool = False
    sliding_window: int | None = None
    max_len: int = 4096  # trained context (checkpoint metadata for decoding and export; not enforced)
    remat: str = "none"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def resolved_head_dim(self) -> int:
        """-> head_dim, defaulting to width // num_heads."""
        if self.head_dim is None and self.width % self.num_heads:
            raise ValueError(f"width={self.width} is not divisible by num_heads={self.num_heads}; set head_dim")
        return self.head_dim or self.width // self.num_heads

    def init_cache(self, batch: int, max_len: int) -> dict:
        """-> empty KV cache for `batch` rows and `max_len` positions (see vljax/models/decoding.py)."""
        return decoding.init_cache(
            batch, max_len, self.depth, self.num_kv_heads or self.num_heads, self.resolved_head_dim(), self.dtype
        )

    def decode_step(self, cache, tokens, positions, mask=None, *, embeds=None):
        """Appends int [B, T] tokens (or [B, T, D] embeds) at int [B, T] positions -> (logits [B, T, V], cache).

        mask: bool [B, T], False for (left) padding, which no later token attends to.
        """
        return self(tokens, positions, embeds=embeds, cache=cache, step_mask=mask)

    def embed(self, tokens):
        """int [B, L] -> [B, L, D] input embeddings (the tied / input table)."""
        return self(tokens, embed_only=True)

    def unembedding(self):
        """-> [D, V] output projection in the compute dtype: hidden [B, L, D] @ it == logits [B, L, V].

        Tied: the token table transposed; untied: the lm_head kernel. Pairs with
        `__call__(..., return_hidden=True)` for losses that never build the full logits
        (vljax.losses.lm.chunked_next_token_loss). Needs bound params (apply, not init).
        """
        params = self.variables["params"]
        if self.tie_embeddings:
            return nn.meta.unbox(params["token_embed"]["embedding"]).astype(self.dtype).T
        return nn.meta.unbox(params["lm_head"]["kernel"]).astype(self.dtype)

    @nn.compact
    def __call__(
        self,
        tokens,
        positions=None,
        kv_mask=None,
        *,
        return_hidden: bool = False,
        embeds=None,
        segment_ids=None,
        cache=None,
        step_mask=None,
        embed_only: bool = False,
    ):
        """int [B, L] (+ int positions [B, L], bool kv_mask [B, L]) -> [B, L, V] logits.

        embeds [B, L, D] replaces the token lookup (tokens=None); segment_ids [B, L] (packing) keep
        attention inside each segment; with a KV cache the result is (logits, new cache); embed_only
        returns the input embeddings [B, L, D] (LVLMs splice image tokens into them).
        """
        embed = TokenEmbed(
            self.vocab_size, self.width, dtype=self.dtype, param_dtype=self.param_dtype, name="token_embed"
        )
        if embed_only:
            return embed(tokens)
        if (tokens is None) == (embeds is None):
            raise ValueError("give exactly one of tokens [B, L] or embeds [B, L, D]")
        if embeds is None and tokens.ndim != 2:
            raise ValueError(f"tokens must be [B, L], got shape {tokens.shape}")
        b, length = tokens.shape if embeds is None else embeds.shape[:2]
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (b, length))
        x = embed(tokens) if embeds is None else embeds.astype(self.dtype)
        x = nn.with_logical_constraint(x, ("batch", "length", "act_embed"))
        if cache is not None:
            index, filled, step_attn = decoding.cache_step_mask(cache, step_mask, length, self.sliding_window)
            layers = []
            for i, layer_cache in enumerate(cache["layers"]):
                x, layer_cache = self._block(DecoderLayer, i)(
                    x, positions, None, step_attn, cache=layer_cache, cache_index=index
                )
                layers.append(layer_cache)
            new_cache = {"index": cache["index"] + length, "mask": filled, "layers": layers}
            return self._head(embed, x, return_hidden), new_cache
        mask = None
        if segment_ids is not None:
            mask = segment_ids[:, :, None] == segment_ids[:, None, :]
        if self.sliding_window is not None:
            # NOTE: key j is visible from query i when i - window < j <= i (the causal part is in attention).
            q, k = jnp.arange(length)[:, None], jnp.arange(length)[None, :]
            window = jnp.broadcast_to(q - k < self.sliding_window, (b, length, length))
            mask = window if mask is None else mask & window
        layer = DecoderLayer
        if self.remat != "none":
            if self.remat not in REMAT_POLICIES:
                raise ValueError(f"remat={self.remat!r} is not one of {['none', *sorted(REMAT_POLICIES)]}")
            layer = nn.remat(DecoderLayer, policy=REMAT_POLICIES[self.remat], prevent_cse=True)
        for i in range(self.depth):
            x = self._block(layer, i)(x, positions, kv_mask, mask)
        return self._head(embed, x, return_hidden)

    def _block(self, layer_cls, i: int):
        """Decoder block i (a DecoderLayer class, possibly remat-wrapped), named block_{i:02d}."""
        return layer_cls(
            self.num_heads,
            self.num_kv_heads or self.num_heads,
            self.resolved_head_dim(),
            self.mlp_dim,
            self.norm_epsilon,
            self.rope_theta,
            self.rope_scaling,
            self.qkv_bias,
            self.out_bias,
            self.mlp_bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name=f"block_{i:02d}",
        )

    def _head(self, embed, x, return_hidden):
        """[B, L, D] -> final norm -> [B, L, V] logits (or the normed hidden states)."""
        x = RMSNorm(self.norm_epsilon, dtype=self.dtype, param_dtype=self.param_dtype, name="norm_out")(x)
        if return_hidden:
            return x
        if self.tie_embeddings:
            logits = embed.attend(x)
        else:
            logits = nn.Dense(
                self.vocab_size,
                use_bias=False,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                kernel_init=nn.with_logical_partitioning(nn.initializers.normal(0.02), ("embed", "vocab")),
                name="lm_head",
            )(x)
        return nn.with_logical_constraint(logits, ("batch", "length", "act_vocab"))


def init_causal_lm(model: CausalLM, rng: jax.Array, length: int = 8):
    """-> boxed params of `model` (logical axis names attached) from dummy [1, length] tokens."""
    return model.init(rng, jnp.zeros((1, length), jnp.int32))["params"]
