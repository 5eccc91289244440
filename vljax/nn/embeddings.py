"""Patch, token and position embeddings (learned, sincos2d, RoPE) and posemb resampling."""

from typing import Any, Sequence

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vljax.nn.dense import flat_dot_general

Dtype = Any


def check_patch_grid(images, patch_size) -> tuple[int, int]:
    """[B, H, W, C] images + (ph, pw) -> (ph, pw); ValueError unless the images are 4-D and tile by the patch."""
    if images.ndim != 4:
        raise ValueError(f"images must be [B, H, W, C], got shape {images.shape}")
    ph, pw = patch_size
    _, h, w, _ = images.shape
    if h % ph or w % pw:
        raise ValueError(f"image size {(h, w)} is not divisible by patch_size {(ph, pw)}")
    return ph, pw


def patch_projection(width: int, use_bias: bool, dtype: Dtype, param_dtype: Dtype, name: str = "proj") -> nn.Dense:
    """The dense that maps patch features to the token width (`[..., F] -> [..., D]`, ('patch', 'embed') kernel).

    Shared by PatchEmbed (F = p*p*C pixels) and the ViT ConvStem (F = last conv channels); call it inside a
    compact __call__ so the param lands under `name` in the caller.
    """
    return nn.Dense(
        width,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("patch", "embed")),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
        dot_general=flat_dot_general,
        name=name,
    )


class PatchEmbed(nn.Module):
    """[B, H, W, C] -> [B, H/p, W/p, D] patch embedding (a conv with stride = kernel, done as a dense)."""

    width: int
    patch_size: Sequence[int] = (16, 16)
    use_bias: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, images):
        """[B, H, W, C] -> [B, gh, gw, D]."""
        ph, pw = check_patch_grid(images, self.patch_size)
        patches = einops.rearrange(images, "b (gh ph) (gw pw) c -> b gh gw (ph pw c)", ph=ph, pw=pw)
        return patch_projection(self.width, self.use_bias, self.dtype, self.param_dtype)(patches)


def posemb_sincos_2d(gh: int, gw: int, width: int, temperature: float = 10_000.0, dtype=jnp.float32) -> jax.Array:
    """-> [gh * gw, D] fixed 2D sin-cos position embedding (row-major grid order)."""
    if width % 4:
        raise ValueError(f"width must be divisible by 4 for sincos2d, got {width}")
    y, x = np.mgrid[:gh, :gw]
    omega = 1.0 / temperature ** (np.arange(width // 4) / (width // 4 - 1 if width > 4 else 1))
    y = y.reshape(-1)[:, None] * omega[None, :]
    x = x.reshape(-1)[:, None] * omega[None, :]
    pe = np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)
    return jnp.asarray(pe, dtype)


class LearnedPosEmb(nn.Module):
    """[B, N, D] -> [B, N, D] plus a learned [N, D] table named ('pos', 'embed')."""

    length: int
    stddev: float | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        """[B, N, D] -> [B, N, D] with N <= length (uses the first N rows)."""
        n, d = x.shape[-2:]
        if n > self.length:
            raise ValueError(f"sequence length {n} exceeds position table length {self.length}")
        # NOTE: default std 1/sqrt(D) keeps the posemb on the same scale as the patch embeddings.
        std = self.stddev if self.stddev is not None else 1.0 / np.sqrt(d)
        table = self.param(
            "embedding",
            nn.with_logical_partitioning(nn.initializers.normal(stddev=std), ("pos", "embed")),
            (self.length, d),
            self.param_dtype,
        )
        return x + table[:n].astype(x.dtype)


def resample_posemb(posemb: jax.Array, new_grid: Sequence[int]) -> jax.Array:
    """[1, N, D] (square grid) or [gh, gw, D] -> same layout on new_grid, bilinear resize."""
    nh, nw = new_grid
    if posemb.ndim == 3 and posemb.shape[0] == 1:
        n, d = posemb.shape[1:]
        side = int(round(np.sqrt(n)))
        if side * side != n:
            raise ValueError(f"posemb [1, N, D] needs a square N (no class token), got N={n}")
        grid = posemb.reshape(side, side, d)
        out = jax.image.resize(grid.astype(jnp.float32), (nh, nw, d), method="bilinear")
        return out.reshape(1, nh * nw, d).astype(posemb.dtype)
    if posemb.ndim == 3:
        d = posemb.shape[-1]
        out = jax.image.resize(posemb.astype(jnp.float32), (nh, nw, d), method="bilinear")
        return out.astype(posemb.dtype)
    raise ValueError(f"posemb must be [1, N, D] or [gh, gw, D], got shape {posemb.shape}")


class TokenEmbed(nn.Module):
    """int [B, L] -> [B, L, D] token embedding with a ('vocab', 'embed') table; `attend` gives logits."""

    vocab_size: int
    width: int
    stddev: float = 0.02
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        self.embedding = self.param(
            "embedding",
            nn.with_logical_partitioning(nn.initializers.normal(stddev=self.stddev), ("vocab", "embed")),
            (self.vocab_size, self.width),
            self.param_dtype,
        )

    def __call__(self, tokens):
        """int [B, L] -> [B, L, D]."""
        if not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(f"tokens must be integer, got {tokens.dtype}")
        # NOTE: the table gathered over fsdp first (its 'embed' dim is split there, ZeRO-3 style, while the batch
        # is split over data x fsdp): without it XLA's partitioner replicated a whole [B, L, D] tensor of the
        # step to reshard it ("involuntary full rematerialization" on data x fsdp meshes;
        # tests/test_sharded_training.py).
        table = nn.with_logical_constraint(self.embedding, ("vocab", "act_embed"))
        out = jnp.take(table, tokens, axis=0).astype(self.dtype)
        return nn.with_logical_constraint(out, ("batch", "length", "act_embed"))

    def attend(self, x):
        """[B, L, D] -> [B, L, V] logits against the (tied) embedding table."""
        return jnp.einsum("bld,vd->blv", x.astype(self.dtype), self.embedding.astype(self.dtype))


def apply_rope(
    x: jax.Array, positions: jax.Array, max_wavelength: float = 10_000.0, inv_freq: jax.Array | None = None
) -> jax.Array:
    """[B, N, H, K] x int [B, N] (+ [K/2] inv_freq) -> [B, N, H, K] rotary embedding (rotate-half, K even)."""
    k = x.shape[-1]
    if k % 2:
        raise ValueError(f"RoPE needs an even head dim, got {k}")
    half = k // 2
    if inv_freq is None:
        inv_freq = 1.0 / (max_wavelength ** (jnp.arange(half, dtype=jnp.float32) / half))
    elif inv_freq.shape != (half,):
        raise ValueError(f"inv_freq must be [K/2] = ({half},), got {inv_freq.shape}")
    angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, N, K/2]
    sin = jnp.sin(angles)[:, :, None, :]
    cos = jnp.cos(angles)[:, :, None, :]
    xf = x.astype(jnp.float32)
    x1, x2 = xf[..., :half], xf[..., half:]
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)
