"""LVLM assembly: vision encoder (or raw patches) -> projector -> image tokens spliced into a causal LM.

    images [B, H, W, 3] --ViT--> [B, N, Dv] --projector--> [B, N', D]      (encoder-free: patches --dense--> D)
    tokens [B, T] with N' `<image>` placeholders --embed--> [B, T, D], placeholder k <- image token k
    --> CausalLM --> logits [B, T, V]

Sequences have fixed shapes: the example builder writes exactly `num_image_tokens` placeholders
(`image_token_id`) per row; the k-th placeholder of a row receives the k-th image token.
"""

from __future__ import annotations

from typing import Any

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp

from vljax.models.causal_lm import CausalLM
from vljax.models.decoding import NEG_INF, prompt_positions
from vljax.models.vit import ViT
from vljax.nn.embeddings import PatchEmbed
from vljax.nn.dense import partitioned_dense
from vljax.nn.mlp import gelu

Dtype = Any
PROJECTORS = ("linear", "mlp", "pool_mlp")


def splice_image_tokens(token_embeds: jax.Array, image_embeds: jax.Array, is_image: jax.Array) -> jax.Array:
    """[B, T, D] x [B, N, D] x bool [B, T] -> [B, T, D]: the k-th True slot of a row gets image token k."""
    if token_embeds.shape[0] != image_embeds.shape[0] or token_embeds.shape[2] != image_embeds.shape[2]:
        raise ValueError(f"token embeds {token_embeds.shape} and image embeds {image_embeds.shape} disagree on B or D")
    slot = jnp.clip(jnp.cumsum(is_image.astype(jnp.int32), axis=1) - 1, 0, image_embeds.shape[1] - 1)
    gathered = jnp.take_along_axis(image_embeds, slot[..., None], axis=1)
    return jnp.where(is_image[..., None], gathered.astype(token_embeds.dtype), token_embeds)


class Projector(nn.Module):
    """[B, gh*gw, Dv] vision tokens -> [B, N', D] LM tokens: linear | mlp (2-layer GELU) | pool_mlp.

    pool_mlp is the connector: `pool x pool` average pooling over the patch grid (N' = N / pool^2)
    before the MLP, trading image tokens for LM sequence length.
    """

    kind: str
    out_dim: int
    grid: tuple[int, int]
    pool: int = 2
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def _dense(self, features, names, name):
        return partitioned_dense(features, names, name, dtype=self.dtype, param_dtype=self.param_dtype)

    @nn.compact
    def __call__(self, x):
        """[B, gh*gw, Dv] -> [B, N', D]."""
        if self.kind not in PROJECTORS:
            raise ValueError(f"projector={self.kind!r} is not one of {PROJECTORS}")
        if self.kind == "pool_mlp":
            gh, gw = self.grid
            if gh % self.pool or gw % self.pool:
                raise ValueError(f"patch grid {self.grid} is not divisible by projector pool={self.pool}")
            x = einops.reduce(
                x, "b (h p w q) d -> b (h w) d", "mean", h=gh // self.pool, p=self.pool, w=gw // self.pool, q=self.pool
            )
        if self.kind == "linear":
            return self._dense(self.out_dim, ("proj_in", "embed"), "fc")(x)
        h = gelu(self._dense(self.out_dim, ("proj_in", "mlp"), "fc1")(x))
        return self._dense(self.out_dim, ("mlp", "embed"), "fc2")(h)


class LVLM(nn.Module):
    """(uint8 or float images [B, H, W, 3], int tokens [B, T]) -> logits [B, T, V].

    vision: ViT kwargs (an encoder + `projector`), or None for the encoder-free variant in which
    `patch_size` patches are embedded straight into the LM width by one dense layer.
    """

    lm: dict
    vision: dict | None
    image_size: int
    projector: str = "mlp"
    projector_pool: int = 2
    patch_size: int = 8
    image_token_id: int = 4
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        self.language_model = CausalLM(**self.lm, dtype=self.dtype, param_dtype=self.param_dtype)
        if self.vision is not None:
            self.vision_encoder = ViT(
                **dict(self.vision, image_size=self.image_size), dtype=self.dtype, param_dtype=self.param_dtype
            )
            ps = self.vision_encoder.dims()["patch_size"]
            grid = (self.image_size // ps[0], self.image_size // ps[1])
            self.image_projector = Projector(
                self.projector,
                self.lm["width"],
                grid,
                self.projector_pool,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
            )
        else:
            self.patch_embed = PatchEmbed(
                self.lm["width"], (self.patch_size, self.patch_size), dtype=self.dtype, param_dtype=self.param_dtype
            )

    def num_image_tokens(self) -> int:
        """-> N', the number of `<image>` placeholders a sequence must hold."""
        return num_image_tokens(self.vision, self.image_size, self.projector, self.projector_pool, self.patch_size)

    def encode_images(self, images, train: bool = False):
        """[B, H, W, 3] (uint8 -> [-1, 1]) -> [B, N', D] image tokens in the LM embedding space."""
        if images.dtype == jnp.uint8:
            images = images.astype(jnp.float32) / 127.5 - 1.0
        if self.vision is None:
            x = self.patch_embed(images.astype(self.dtype))
            return x.reshape(x.shape[0], -1, x.shape[-1])
        _, tokens = self.vision_encoder(images, train=train, return_tokens=True)
        return self.image_projector(tokens)

    def embed(self, images, tokens, train: bool = False):
        """[B, H, W, 3] x int [B, T] -> [B, T, D] token embeddings with image tokens spliced in."""
        return splice_image_tokens(
            self.language_model.embed(tokens), self.encode_images(images, train), tokens == self.image_token_id
        )

    def __call__(self, images, tokens, positions=None, kv_mask=None, segment_ids=None, train: bool = False,
                 return_hidden: bool = False):
        """[B, H, W, 3] x int [B, T] (+ positions, bool kv_mask, segment ids [B, T]) -> logits [B, T, V].

        return_hidden: the LM's final normed hidden states [B, T, D] instead (logits = them @ unembedding()).
        """
        x = self.embed(images, tokens, train)
        return self.language_model(None, positions, kv_mask, embeds=x, segment_ids=segment_ids,
                                   return_hidden=return_hidden)

    def unembedding(self):
        """-> the LM's [D, V] output projection (tied or untied; see CausalLM.unembedding)."""
        return self.language_model.unembedding()

    def init_cache(self, batch: int, max_len: int) -> dict:
        """-> the LM's empty KV cache for `batch` rows and `max_len` positions."""
        return self.language_model.init_cache(batch, max_len)

    def prefill(self, images, tokens, mask, cache):
        """Left-padded prompt [B, P] (+ images, bool mask) -> (last logits [B, V], cache, next positions [B])."""
        x = self.embed(images, tokens)
        positions = prompt_positions(mask)
        logits, cache = self.language_model.decode_step(cache, None, positions, mask, embeds=x)
        return self._no_image_token(logits[:, -1].astype(jnp.float32)), cache, positions[:, -1] + 1

    def decode_step(self, cache, tokens, positions, mask=None):
        """Cached LM step on int [B, T] tokens -> (logits [B, T, V], cache); `<image>` is never proposed."""
        logits, cache = self.language_model.decode_step(cache, tokens, positions, mask)
        return self._no_image_token(logits), cache

    def _no_image_token(self, logits):
        # NOTE: a generated `<image>` id would be a placeholder with no image behind it (and the full
        # forward would splice an image token there), so decoding never emits it.
        return logits.at[..., self.image_token_id].set(NEG_INF)


def num_image_tokens(vision: dict | None, image_size: int, projector: str, pool: int, patch_size: int) -> int:
    """Config -> number of image tokens the LVLM emits per image."""
    if vision is None:
        return (image_size // patch_size) ** 2
    # NOTE: parent=None keeps this shape-only ViT from binding to a module being set up.
    ps = ViT(**dict(vision, image_size=image_size), parent=None).dims()["patch_size"]
    n = (image_size // ps[0]) * (image_size // ps[1])
    return n // (pool * pool) if projector == "pool_mlp" else n
