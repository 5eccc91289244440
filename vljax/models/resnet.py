"""CLIP's modified ResNet image tower: [B, H, W, 3] images -> [B, D] pooled features (+ [B, N, D] tokens).

Radford et al. 2021, section 2.4: the ResNet-D stem (three 3x3 convs, then a 2x2 average pool), bottleneck
blocks that downsample with an average pool before the last 1x1 conv (anti-aliased, Zhang 2019), and an
attention pool in place of the global average pool: the mean of the final feature map is the query of one
multi-head attention over [mean, feature map] + position embeddings.

Differences from the paper, on purpose:
- GroupNorm (`norm_groups` groups, the largest <= 32 dividing the channels) instead of BatchNorm. The trainer
  is purely functional and shards the batch across devices; BatchNorm's running statistics and cross-device
  means would be mutable state in every method. GroupNorm is what BiT (Kolesnikov et al. 2020) trains large
  ResNets with. Released CLIP ResNet checkpoints (BatchNorm) load with `norm='frozen_batch'`: each BatchNorm
  becomes a per-channel affine with its running statistics folded in (vljax.nn.norms.FrozenBatchNorm;
  `vljax convert --from open_clip`, docs/pretrained.md), for inference and fine-tuning, not for training from
  scratch.
- `pool='gap'` (a plain mean, the torchvision ResNet head) is available for ablations.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from vljax.nn.attention import MultiHeadAttention
from vljax.nn.dense import dense_dot
from vljax.nn.embeddings import resample_posemb
from vljax.nn.norms import FrozenBatchNorm, GroupNorm
from vljax.nn.transformer import REMAT_POLICIES

Dtype = Any

# NOTE: (blocks per stage, stem width, attention-pool heads) of CLIP's released ResNets; the pool's
# output is the embedding (output_dim = CLIP's embed_dim), so those configs use img_proj_kind='none'.
RESNET_VARIANTS = {
    "RN50": dict(layers=(3, 4, 6, 3), width=64, num_heads=32, output_dim=1024),
    "RN101": dict(layers=(3, 4, 23, 3), width=64, num_heads=32, output_dim=512),
    "RN50x4": dict(layers=(4, 6, 10, 6), width=80, num_heads=40, output_dim=640),
    "RN50x16": dict(layers=(6, 8, 18, 8), width=96, num_heads=48, output_dim=768),
    "RN50x64": dict(layers=(3, 15, 36, 10), width=128, num_heads=64, output_dim=1024),
}
EXPANSION = 4  # bottleneck output channels = EXPANSION x planes
POOLS = ("attn", "gap")
NORMS = ("group", "frozen_batch")


def _norm(kind: str, groups: int | None, name: str, **kw) -> nn.Module:
    """The tower's norm layer: GroupNorm (training) or FrozenBatchNorm (loaded BatchNorm checkpoints)."""
    if kind == "group":
        return GroupNorm(groups=groups, name=name, **kw)
    if kind == "frozen_batch":
        return FrozenBatchNorm(name=name, **kw)
    raise ValueError(f"ResNet norm={kind!r} is not one of {NORMS}")


def resnet_dims(variant: str | None = None, **fields) -> dict:
    """-> dict(layers, width, num_heads, output_dim) from a variant name, explicit fields overriding it."""
    if variant is not None and variant not in RESNET_VARIANTS:
        raise ValueError(f"unknown ResNet variant {variant!r}; known: {sorted(RESNET_VARIANTS)}")
    dims = dict(RESNET_VARIANTS[variant]) if variant else {}
    dims.update({k: v for k, v in fields.items() if v is not None})
    missing = [k for k in ("layers", "width", "num_heads") if k not in dims]
    if missing:
        raise ValueError(f"ResNet needs {missing} (give variant='RN50' or the fields explicitly)")
    dims["layers"] = tuple(int(n) for n in dims["layers"])
    if not dims["layers"] or min(dims["layers"]) < 1:
        raise ValueError(f"ResNet layers must be >= 1 blocks per stage, got {dims['layers']}")
    if int(dims["width"]) < 2 or int(dims["width"]) % 2:
        raise ValueError(f"ResNet width must be even (the stem's first convs have width / 2), got {dims['width']}")
    dims.setdefault("output_dim", None)
    return dims


def feature_channels(width: int, num_stages: int) -> int:
    """Channels of the final feature map: EXPANSION x width x 2^(stages - 1) (2048 for RN50)."""
    return EXPANSION * width * 2 ** (num_stages - 1)


def total_stride(num_stages: int) -> int:
    """Pixels per final feature-map cell: 4 (stem) x 2 per later stage (32 for RN50)."""
    return 4 * 2 ** (num_stages - 1)


def feature_grid(image_size: int, num_stages: int) -> int:
    """Side of the final feature map: image_size / total_stride(stages) (7 for RN50 at 224 px)."""
    stride = total_stride(num_stages)
    if image_size % stride:
        raise ValueError(f"ResNet with {num_stages} stages needs image_size divisible by {stride}, got {image_size}")
    return image_size // stride


class PointwiseConv(nn.Module):
    """[B, H, W, Cin] -> [B, H, W, features]: a 1x1 convolution written as a channel contraction.

    Same parameter ("kernel" [1, 1, Cin, features]) and result as nn.Conv with a 1x1 kernel; XLA's CPU
    backend runs the contraction as a plain matrix multiply, faster than its convolution path (with the
    GroupNorm change, the demo preset's train step went 387.5 -> 259.8 ms, docs/performance.md), and as a
    2-D one faster again (vljax.nn.dense).
    """

    features: int
    kernel_init: Any
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        """[B, H, W, Cin] -> [B, H, W, features]."""
        kernel = self.param("kernel", self.kernel_init, (1, 1, x.shape[-1], self.features), self.param_dtype)
        return dense_dot(x.astype(self.dtype), kernel[0, 0].astype(self.dtype))


def _conv(features, kernel, name, dtype, param_dtype, strides=1, axes=(None, None, "embed", "mlp")):
    # NOTE: He-normal like torchvision; output channels on the 'mlp' (tensor) axis, input channels on
    # 'embed' (fsdp), the same roles the two dims of a dense kernel have in the transformer blocks.
    init = nn.with_logical_partitioning(nn.initializers.variance_scaling(2.0, "fan_out", "normal"), axes)
    if kernel == 1 and strides == 1:
        return PointwiseConv(features, init, dtype=dtype, param_dtype=param_dtype, name=name)
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(strides, strides),
        # NOTE: symmetric k // 2 padding as in torch's ResNets; 'SAME' pads a stride-2 conv only at the end.
        padding=((kernel // 2, kernel // 2),) * 2,
        use_bias=False,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=init,
        name=name,
    )


def _avg_pool(x, stride: int):
    return nn.avg_pool(x, (stride, stride), strides=(stride, stride)) if stride > 1 else x


class Bottleneck(nn.Module):
    """[B, H, W, Cin] -> [B, H/s, W/s, 4 planes]: 1x1, 3x3, avg-pool(s), 1x1 convs + a residual.

    The shortcut is avg-pool(s) + 1x1 conv + norm when the shape changes. The last norm's scale starts
    at zero (as CLIP initializes bn3), so every block starts as the identity.
    """

    planes: int
    stride: int = 1
    norm: str = "group"
    norm_groups: int | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        """[B, H, W, Cin] -> [B, H/stride, W/stride, EXPANSION * planes]."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        norm = lambda name, **extra: _norm(self.norm, self.norm_groups, name, **kw, **extra)
        y = nn.relu(norm("norm_1")(_conv(self.planes, 1, "conv_1", **kw)(x)))
        y = nn.relu(norm("norm_2")(_conv(self.planes, 3, "conv_2", **kw)(y)))
        y = _avg_pool(y, self.stride)
        y = norm("norm_3", scale_init=nn.initializers.zeros)(_conv(EXPANSION * self.planes, 1, "conv_3", **kw)(y))
        if self.stride > 1 or x.shape[-1] != EXPANSION * self.planes:
            x = norm("norm_down")(_conv(EXPANSION * self.planes, 1, "conv_down", **kw)(_avg_pool(x, self.stride)))
        return nn.relu(y + x)


class AttentionPool2d(nn.Module):
    """[B, N, C] feature map (N = grid^2) -> [B, out] (and [B, N, out] per-location values).

    Query = mean token; keys / values = [mean, feature map] + learned position embeddings. The per-location
    output projects each location's value (out_proj(v_proj(x))), the dense features MaskCLIP reads out.
    """

    num_heads: int
    grid: int
    output_dim: int | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, return_tokens: bool = False):
        """[B, N, C] -> [B, out] (or ([B, out], [B, N, out]))."""
        b, n, c = x.shape
        table = self.param(
            "pos_embedding",
            nn.with_logical_partitioning(nn.initializers.normal(stddev=c**-0.5), ("pos", "embed")),
            (self.grid * self.grid + 1, c),
            self.param_dtype,
        )
        pe = table.astype(self.dtype)
        side = round(n**0.5)
        if side * side != n:
            raise ValueError(f"AttentionPool2d needs a square feature map, got {n} locations")
        if side != self.grid:
            # NOTE: other resolutions reuse the table by bilinear resampling of its spatial part.
            pe = jnp.concatenate([pe[:1], resample_posemb(pe[1:][None], (side, side))[0]], axis=0)
        x = jnp.concatenate([jnp.mean(x, axis=1, keepdims=True), x], axis=1) + pe[None]
        attn = MultiHeadAttention(
            num_heads=self.num_heads,
            out_features=self.output_dim or c,
            kernel_init=nn.initializers.normal(stddev=c**-0.5),
            attention_impl="xla",
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="attn",
        )
        if not return_tokens:
            return attn(x[:, :1], x)[:, 0]
        # NOTE: one call for both outputs: the mean token (row 0) attends to everything, each location only to
        # itself, which yields its value, projected. Keys and values are projected once.
        mask = jnp.eye(n + 1, dtype=bool).at[0].set(True)
        out = attn(x, x, mask=jnp.broadcast_to(mask[None], (b, n + 1, n + 1)))
        return out[:, 0], out[:, 1:]


class ResNet(nn.Module):
    """[B, H, W, 3] -> [B, D] pooled (and [B, N, D] per-location features with return_tokens=True).

    Give `variant` ('RN50', ...) or layers / width / num_heads explicitly (explicit fields win). D =
    output_dim, or the final channel count 4 x width x 2^(stages-1) when output_dim is None (always for
    pool='gap'). `norm` is 'group' (GroupNorm, `norm_groups` groups; for training) or 'frozen_batch' (a
    released BatchNorm checkpoint, statistics folded; module docstring). `remat`
    rematerializes each bottleneck ('none' | a vljax.nn.transformer.REMAT_POLICIES name). `attention_impl`,
    `token_merging` are accepted for a common image-tower interface: the pool is a single query, so it
    always runs the XLA path, and token merging (a transformer-block operation) must stay None.
    """

    variant: str | None = None
    layers: Sequence[int] | None = None
    width: int | None = None
    num_heads: int | None = None
    output_dim: int | None = None
    image_size: int = 224
    pool: str = "attn"
    norm: str = "group"
    norm_groups: int | None = None
    remat: str = "none"
    attention_impl: str = "auto"
    token_merging: dict | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def dims(self) -> dict:
        """-> dict(layers, width, num_heads, output_dim) after resolving the variant."""
        return resnet_dims(
            self.variant, layers=self.layers, width=self.width, num_heads=self.num_heads, output_dim=self.output_dim
        )

    @nn.compact
    def __call__(self, images, *, train: bool = False, return_tokens: bool = False):
        """[B, H, W, 3] -> [B, D], or ([B, D], [B, N, D]) with return_tokens=True."""
        del train  # no dropout in this tower
        if self.token_merging:
            raise ValueError("token_merging is a ViT option; the ResNet image tower has no transformer blocks")
        if self.pool not in POOLS:
            raise ValueError(f"ResNet pool={self.pool!r} is not one of {POOLS}")
        if self.norm not in NORMS:
            raise ValueError(f"ResNet norm={self.norm!r} is not one of {NORMS}")
        cfg = self.dims()
        if self.pool == "gap" and cfg["output_dim"]:
            raise ValueError(
                f"ResNet pool='gap' has no output projection, so output_dim={cfg['output_dim']} cannot "
                "apply; set output_dim=None (and config.model.img_proj_kind='linear' in a two-tower)"
            )
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        w = int(cfg["width"])
        x = images.astype(self.dtype)
        for i, (ch, stride) in enumerate(((w // 2, 2), (w // 2, 1), (w, 1))):
            # NOTE: 3 input channels do not split over a mesh axis; the first kernel stays replicated.
            axes = (None, None, None, None) if i == 0 else (None, None, "embed", "mlp")
            conv = _conv(ch, 3, f"stem_conv_{i}", strides=stride, axes=axes, **kw)
            x = nn.relu(_norm(self.norm, self.norm_groups, f"stem_norm_{i}", **kw)(conv(x)))
        x = _avg_pool(x, 2)
        block = Bottleneck if self.remat == "none" else nn.remat(Bottleneck, policy=REMAT_POLICIES[self.remat])
        for s, n in enumerate(cfg["layers"]):
            for j in range(n):
                x = block(
                    w * 2**s,
                    stride=2 if (s > 0 and j == 0) else 1,
                    norm=self.norm,
                    norm_groups=self.norm_groups,
                    name=f"stage_{s}_block_{j}",
                    **kw,
                )(x)
        b, gh, gw, c = x.shape
        tokens = x.reshape(b, gh * gw, c)
        if self.pool == "gap":
            pooled = jnp.mean(tokens, axis=1)
            return (pooled, tokens) if return_tokens else pooled
        size = self.image_size if isinstance(self.image_size, int) else int(self.image_size[0])
        pool = AttentionPool2d(
            int(cfg["num_heads"]),
            feature_grid(size, len(cfg["layers"])),
            output_dim=cfg["output_dim"],
            name="pool",
            **kw,
        )
        return pool(tokens, return_tokens=return_tokens)
