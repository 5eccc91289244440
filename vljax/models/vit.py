"""Vision Transformer: [B, H, W, 3] images -> [B, D] pooled features (+ [B, N, D] patch tokens)."""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from vljax.models.tomeformer import merge_schedule, parse_token_merging, run_blocks, weighted_mean
from vljax.nn.embeddings import PatchEmbed, check_patch_grid, patch_projection, posemb_sincos_2d, resample_posemb
from vljax.nn.norms import make_norm
from vljax.nn.pooling import Pool
from vljax.nn.transformer import block_class

Dtype = Any

# NOTE: (width, depth, mlp_dim, heads) as in big_vision; lookup is exact first, then lower-case,
# so "g" (giant, 1408) and "G" (gigantic, 1664) stay distinct.
VIT_VARIANTS = {
    "mu": dict(width=32, depth=1, mlp_dim=128, num_heads=2),
    "ti": dict(width=192, depth=12, mlp_dim=768, num_heads=3),
    "s": dict(width=384, depth=12, mlp_dim=1536, num_heads=6),
    "m": dict(width=512, depth=12, mlp_dim=2048, num_heads=8),
    "b": dict(width=768, depth=12, mlp_dim=3072, num_heads=12),
    "l": dict(width=1024, depth=24, mlp_dim=4096, num_heads=16),
    "h": dict(width=1280, depth=32, mlp_dim=5120, num_heads=16),
    "g": dict(width=1408, depth=40, mlp_dim=6144, num_heads=16),
    "G": dict(width=1664, depth=48, mlp_dim=8192, num_heads=16),
    "e": dict(width=1792, depth=56, mlp_dim=15360, num_heads=16),
    "So400m": dict(width=1152, depth=27, mlp_dim=4304, num_heads=16),
}


def _variant(name: str) -> dict:
    if name in VIT_VARIANTS:
        return dict(VIT_VARIANTS[name])
    lowered = {k.lower(): k for k in VIT_VARIANTS if k != "G"}
    if name.lower() in lowered:
        return dict(VIT_VARIANTS[lowered[name.lower()]])
    raise ValueError(f"unknown ViT variant {name!r}; known: {sorted(VIT_VARIANTS)}")


def vit_config(name: str) -> dict:
    """'B/16' -> dict(width, depth, mlp_dim, num_heads, patch_size=(16, 16)); 'B' -> dims only."""
    variant, _, patch = name.partition("/")
    cfg = _variant(variant)
    if patch:
        if not patch.isdigit() or int(patch) <= 0:
            raise ValueError(f"ViT name {name!r}: patch size after '/' must be a positive int")
        cfg["patch_size"] = (int(patch), int(patch))
    return cfg


STEMS = ("patch", "conv")


def conv_stem_channels(width: int, patch_size: Sequence[int], channels: Sequence[int] = ()) -> tuple[int, ...]:
    """-> output channels of each stride-2 conv of ConvStem (log2(p) of them); () = width / 2^(n-1-i), min 8."""
    ph, pw = tuple(patch_size)
    if ph != pw or ph < 2 or ph & (ph - 1):
        raise ValueError(f"stem='conv' needs a square power-of-two patch_size, got {(ph, pw)}")
    n = ph.bit_length() - 1
    out = tuple(int(c) for c in channels) or tuple(max(width // 2 ** (n - 1 - i), 8) for i in range(n))
    if len(out) != n:
        raise ValueError(f"stem_channels needs {n} entries (one per stride-2 conv for patch {ph}), got {out}")
    return out


class ConvStem(nn.Module):
    """[B, H, W, C] -> [B, H/p, W/p, D]: log2(p) 3x3 stride-2 convs (GELU) and a 1x1 projection.

    The convolutional stem of Xiao et al. 2021 ("Early convolutions help transformers see better"),
    without batch norm. It replaces the patchify dense when a small ViT must learn shape from few steps:
    shared 3x3 filters are translation-equivariant, while a patch dense sees an object cut at arbitrary
    patch borders. Same token grid as PatchEmbed with the same (square, power-of-two) patch size.
    `channels` (one per stride-2 conv; () = width / 2^(n-1-i), e.g. 24, 48, 96 for width 96, p 8).
    """

    width: int
    patch_size: Sequence[int] = (8, 8)
    channels: Sequence[int] = ()
    use_bias: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, images):
        """[B, H, W, C] -> [B, H/p, W/p, D]."""
        ph, pw = check_patch_grid(images, self.patch_size)
        channels = conv_stem_channels(self.width, (ph, pw), self.channels)
        x = images
        for i, ch in enumerate(channels):
            # NOTE: the stem's channels stay replicated (tiny kernels); only the projection is sharded.
            x = nn.Conv(
                ch,
                (3, 3),
                strides=(2, 2),
                padding="SAME",
                use_bias=self.use_bias,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), (None, None, None, None)),
                bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (None,)),
                name=f"conv_{i}",
            )(x)
            x = nn.gelu(x)
        return patch_projection(self.width, self.use_bias, self.dtype, self.param_dtype)(x)


class ViT(nn.Module):
    """[B, H, W, 3] -> [B, D] pooled (and [B, N, D] patch tokens with return_tokens=True).

    Give either `variant` ('B/16', 'So400m/14', 'mu') or width/depth/num_heads/mlp_dim explicitly;
    explicit fields override the variant's. `token_merging` (None = off) is ToMe between attention and
    MLP of every block: dict(r, schedule, mode, prop_attn), see vljax/models/tomeformer.py; the CLS
    token (pool='cls') is never merged, 'gap' pools with size weights, and return_tokens gives the
    merged tokens [B, N', D]. `stem` is 'patch' (a dense per patch, the default) or 'conv' (ConvStem:
    3x3 stride-2 convs to the same token grid, `stem_channels` per conv, () = automatic).
    """

    variant: str | None = None
    width: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    mlp_dim: int | None = None
    patch_size: Sequence[int] | None = None
    image_size: Sequence[int] | int = 224
    pool: str = "gap"
    stem: str = "patch"
    stem_channels: Sequence[int] = ()
    posemb: str = "learn"
    activation: str = "gelu"
    norm: str = "layernorm"
    norm_epsilon: float = 1e-6
    pre_norm: bool = False  # a norm after the embeddings, before the blocks (OpenAI CLIP's ln_pre)
    patch_bias: bool = True
    pool_activation: str = "gelu"  # MLP activation of the 'map' pooling head
    dropout_rate: float = 0.0
    remat: str = "none"
    attention_impl: str = "auto"  # 'auto' | 'xla' | 'cudnn' | 'pallas' (vljax.nn.attention.resolve_attention_impl)
    token_merging: dict | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def dims(self) -> dict:
        """-> dict(width, depth, num_heads, mlp_dim, patch_size) after resolving the variant."""
        cfg = vit_config(self.variant) if self.variant else {}
        for key in ("width", "depth", "num_heads", "mlp_dim", "patch_size"):
            if getattr(self, key) is not None:
                cfg[key] = getattr(self, key)
        missing = [k for k in ("width", "depth", "num_heads", "mlp_dim", "patch_size") if k not in cfg]
        if missing:
            raise ValueError(f"ViT needs {missing} (give variant='B/16' or the fields explicitly)")
        patch = (cfg["patch_size"],) if isinstance(cfg["patch_size"], int) else tuple(cfg["patch_size"])
        # NOTE: one number (16, or the (16,) that `--config.model.image.patch_size=16` parses to) = square patches.
        cfg["patch_size"] = patch * 2 if len(patch) == 1 else patch
        return cfg

    def _posemb(self, x, cfg):
        _, gh, gw, d = x.shape
        size = (self.image_size,) * 2 if isinstance(self.image_size, int) else tuple(self.image_size)
        base = (size[0] // cfg["patch_size"][0], size[1] // cfg["patch_size"][1])
        if self.posemb == "sincos2d":
            return posemb_sincos_2d(gh, gw, d, dtype=x.dtype)[None]
        if self.posemb != "learn":
            raise ValueError(f"posemb={self.posemb!r} is not one of ('learn', 'sincos2d')")
        table = self.param(
            "pos_embedding",
            nn.with_logical_partitioning(nn.initializers.normal(stddev=d**-0.5), ("pos", "embed")),
            (base[0] * base[1], d),
            self.param_dtype,
        )
        pe = table.reshape(base[0], base[1], d)
        if (gh, gw) != base:
            # NOTE: other resolutions (e.g. high-res fine-tuning) reuse the table by bilinear resampling.
            pe = resample_posemb(pe, (gh, gw))
        return pe.reshape(1, gh * gw, d).astype(x.dtype)

    @nn.compact
    def __call__(self, images, *, train: bool = False, return_tokens: bool = False):
        """[B, H, W, 3] -> [B, D], or ([B, D], [B, N, D]) with return_tokens=True."""
        cfg = self.dims()
        if self.stem not in STEMS:
            raise ValueError(f"ViT stem={self.stem!r} is not one of {STEMS}")
        if self.stem == "conv":
            embed = ConvStem(cfg["width"], cfg["patch_size"], tuple(self.stem_channels), use_bias=self.patch_bias,
                             dtype=self.dtype, param_dtype=self.param_dtype, name="embedding")
        else:
            embed = PatchEmbed(cfg["width"], cfg["patch_size"], use_bias=self.patch_bias, dtype=self.dtype,
                               param_dtype=self.param_dtype, name="embedding")
        x = embed(images.astype(self.dtype))
        b, gh, gw, d = x.shape
        x = x.reshape(b, gh * gw, d) + self._posemb(x, cfg)
        if self.pool == "cls":
            cls = self.param(
                "cls", nn.with_logical_partitioning(nn.initializers.zeros, (None, "embed")), (1, d), self.param_dtype
            )
            x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype)[None], (b, 1, d)), x], axis=1)
        if self.pre_norm:
            x = make_norm(
                self.norm, epsilon=self.norm_epsilon, dtype=self.dtype, param_dtype=self.param_dtype, name="norm_pre"
            )(x)
        x = nn.with_logical_constraint(x, ("batch", "length", "act_embed"))
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)

        block_cls = block_class(self.remat)
        blocks = [
            block_cls(
                num_heads=cfg["num_heads"],
                mlp_dim=cfg["mlp_dim"],
                activation=self.activation,
                norm=self.norm,
                norm_epsilon=self.norm_epsilon,
                dropout_rate=self.dropout_rate,
                attention_impl=self.attention_impl,
                deterministic=not train,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=f"block_{i:02d}",
            )
            for i in range(cfg["depth"])
        ]
        merging = parse_token_merging(self.token_merging)
        protect_cls = self.pool == "cls"
        schedule = merge_schedule(merging, cfg["depth"], x.shape[1], protect_cls)
        # NOTE: explicit branches so token merging (ToMe) can act between attention and MLP.
        x, sizes = run_blocks(blocks, x, schedule, merging, protect_cls)
        x = make_norm(
            self.norm, epsilon=self.norm_epsilon, dtype=self.dtype, param_dtype=self.param_dtype, name="norm_out"
        )(x)

        if self.pool == "gap" and sizes is not None:
            # NOTE: a merged token stands for `size` patches; weighting keeps the mean over original patches.
            pooled = weighted_mean(x, sizes)
        else:
            pooled = Pool(
                self.pool,
                num_heads=cfg["num_heads"],
                mlp_dim=cfg["mlp_dim"],
                activation=self.pool_activation,
                norm_epsilon=self.norm_epsilon,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name="pool",
            )(x)
        if return_tokens:
            return pooled, (x[:, 1:] if self.pool == "cls" else x)
        return pooled
