"""Analytic forward FLOPs per example of the ViT, the ResNet, the text encoder and the two-tower model.

Counts matrix multiplies only, 2 FLOPs per multiply-add (the convention of XLA's cost
analysis and of Kaplan et al.); norms, activations, softmax and the embedding gather are
left out (a few % of the total at the widths where compute matters; see tests/test_flops.py
for the measured gap to `compiled().cost_analysis()['flops']`). Training costs ~3x the
forward pass (backward = 2x forward for matmuls), which `TRAIN_FACTOR` encodes.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import jax

TRAIN_FACTOR = 3.0


def _pos_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def mlp_flops(tokens: int, width: int, mlp_dim: int, activation: str = "gelu") -> float:
    """[N, D] -> [N, D] MLP forward FLOPs (three kernels for swiglu, two otherwise)."""
    kernels = 3 if activation == "swiglu" else 2
    return 2.0 * kernels * tokens * width * mlp_dim


def attention_flops(q_tokens: int, kv_tokens: int, width: int, num_heads: int,
                    num_kv_heads: int | None = None, kv_width: int | None = None) -> float:
    """[Nq, D] x [Nk, Dkv] -> [Nq, D] multi-head attention forward FLOPs (projections + scores + mix)."""
    head_dim = width // num_heads
    kv_width = width if kv_width is None else kv_width
    kv_heads = num_heads if num_kv_heads is None else num_kv_heads
    q_proj = 2.0 * q_tokens * width * num_heads * head_dim
    kv_proj = 2.0 * 2 * kv_tokens * kv_width * kv_heads * head_dim
    scores = 2.0 * q_tokens * kv_tokens * num_heads * head_dim
    mix = 2.0 * q_tokens * kv_tokens * num_heads * head_dim
    out = 2.0 * q_tokens * num_heads * head_dim * width
    return q_proj + kv_proj + scores + mix + out


def block_flops(tokens: int, width: int, num_heads: int, mlp_dim: int, activation: str = "gelu") -> float:
    """[N, D] -> [N, D] pre-LN transformer block forward FLOPs (self-attention + MLP)."""
    return attention_flops(tokens, tokens, width, num_heads) + mlp_flops(tokens, width, mlp_dim, activation)


def pool_flops(kind: str, tokens: int, width: int, num_heads: int, mlp_dim: int | None) -> float:
    """[N, D] -> [D] pooling FLOPs: zero except the MAP head (1-query attention probe + MLP)."""
    if kind != "map":
        return 0.0
    return attention_flops(1, tokens, width, num_heads) + mlp_flops(1, width, mlp_dim or 4 * width)


def conv_stem_flops(image_size: tuple[int, int], patch_size: tuple[int, int], width: int,
                    stem_channels=(), channels: int = 3) -> float:
    """One [H, W, C] image -> forward FLOPs of ViT's ConvStem (3x3 stride-2 convs, then a 1x1 projection)."""
    from vljax.models.vit import conv_stem_channels

    h, w = image_size
    flops, c_in = 0.0, channels
    for i, c_out in enumerate(conv_stem_channels(width, patch_size, stem_channels)):
        # NOTE: 'SAME' padding with stride 2 gives ceil(h / 2) outputs per axis.
        h, w = -(-h // 2), -(-w // 2)
        flops += 2.0 * h * w * 9 * c_in * c_out
        c_in = c_out
    return flops + 2.0 * h * w * c_in * width


def _hw(size: int | Sequence[int]) -> tuple[int, int]:
    """An int or an (h, w) pair -> (h, w)."""
    return (size, size) if isinstance(size, int) else tuple(size)


def vit_tokens(image_size: int | Sequence[int], patch_size: int | Sequence[int], pool: str = "gap") -> int:
    """Image and patch size (ints or (h, w)) -> tokens entering the ViT's blocks: the patches, plus the CLS token."""
    (h, w), (ph, pw) = _hw(image_size), _hw(patch_size)
    return (h // ph) * (w // pw) + (pool == "cls")


def vit_merges(token_merging, image_size, patch_size, depth: int, pool: str = "gap") -> tuple[int, ...]:
    """A ViT's `token_merging` setting (None = off) -> ToMe's per-block merge counts for that tower (`vit_flops`)."""
    from vljax.models.tomeformer import merge_schedule, parse_token_merging

    tokens = vit_tokens(image_size, patch_size, pool)
    return tuple(merge_schedule(parse_token_merging(token_merging), int(depth), tokens, pool == "cls"))


def vit_flops(image_size: int | tuple[int, int], patch_size: int | tuple[int, int], width: int, depth: int,
              num_heads: int, mlp_dim: int, pool: str = "gap", activation: str = "gelu",
              channels: int = 3, stem: str = "patch", stem_channels=(), merges=()) -> float:
    """One [H, W, C] image -> forward FLOPs of the ViT (patch or conv stem, `depth` blocks, pooling).

    `merges`: ToMe's per-block merge counts (`vljax.models.tomeformer.merge_schedule`; empty = no merging). A block
    that merges r tokens runs its attention on N tokens, matches A-half against B-half keys ([N/2, N/2] dots over
    the head dim) and runs its MLP on N - r.
    """
    (h, w), (ph, pw) = _hw(image_size), _hw(patch_size)
    for name, v in (("image height", h), ("image width", w), ("patch height", ph), ("patch width", pw),
                    ("width", width), ("num_heads", num_heads), ("mlp_dim", mlp_dim)):
        _pos_int(name, v)
    # NOTE: depth 0 is a valid tower: the stem (conv or patch) and the pooling, no transformer blocks.
    if isinstance(depth, bool) or int(depth) != depth or int(depth) < 0:
        raise ValueError(f"depth must be a non-negative int, got {depth!r}")
    if h % ph or w % pw:
        raise ValueError(f"image_size {(h, w)} is not divisible by patch_size {(ph, pw)}")
    tokens = vit_tokens((h, w), (ph, pw), pool)
    patches = tokens - (pool == "cls")
    if stem == "conv":
        embed = conv_stem_flops((h, w), (ph, pw), width, stem_channels, channels)
    elif stem == "patch":
        embed = 2.0 * patches * ph * pw * channels * width
    else:
        raise ValueError(f"stem={stem!r} is not 'patch' or 'conv'")
    merges = tuple(merges) or (0,) * int(depth)
    if len(merges) != depth or any(r < 0 for r in merges) or sum(merges) >= tokens:
        raise ValueError(f"merges must give one count >= 0 per block ({depth}) and leave tokens, got {merges}")
    blocks = 0.0
    for r in merges:
        blocks += attention_flops(tokens, tokens, width, num_heads)
        if r:
            # NOTE: the metric is the keys averaged over heads (head_dim wide); alternate tokens form the two sides.
            blocks += 2.0 * (tokens // 2) * (tokens - tokens // 2) * (width // num_heads)
            tokens -= r
        blocks += mlp_flops(tokens, width, mlp_dim, activation)
    return embed + blocks + pool_flops(pool, tokens, width, num_heads, mlp_dim)


def resnet_flops(image_size: int, layers, width: int, num_heads: int, output_dim: int | None = None,
                 pool: str = "attn", channels: int = 3) -> float:
    """One [S, S, C] image -> forward FLOPs of CLIP's modified ResNet (vljax/models/resnet.py): convs + pool."""
    from vljax.models.resnet import EXPANSION, feature_channels, feature_grid

    layers = tuple(_pos_int("ResNet layers entry", n) for n in layers)
    s = _pos_int("image_size", image_size)
    grid = feature_grid(s, len(layers))  # validates divisibility
    conv = lambda side, k, c_in, c_out: 2.0 * side * side * k * k * c_in * c_out
    h, w = s // 2, _pos_int("width", width)
    flops = conv(h, 3, channels, w // 2) + conv(h, 3, w // 2, w // 2) + conv(h, 3, w // 2, w)
    h, c_in = h // 2, w
    for i, n in enumerate(layers):
        planes = w * 2**i
        for j in range(n):
            stride = 2 if (i > 0 and j == 0) else 1
            # NOTE: the 3x3 conv runs before the block's average pool, at the input resolution.
            flops += conv(h, 1, c_in, planes) + conv(h, 3, planes, planes)
            if stride > 1 or c_in != EXPANSION * planes:
                flops += conv(h // stride, 1, c_in, EXPANSION * planes)
            h //= stride
            flops += conv(h, 1, planes, EXPANSION * planes)
            c_in = EXPANSION * planes
    assert h == grid and c_in == feature_channels(w, len(layers))
    if pool == "gap":
        return flops
    if pool != "attn":
        raise ValueError(f"ResNet pool={pool!r} is not 'attn' or 'gap'")
    # NOTE: one query (the mean token) over grid^2 + 1 keys; attention_flops counts a c_in -> c_in output
    # projection, which here maps to output_dim instead.
    pool_fl = attention_flops(1, grid * grid + 1, c_in, _pos_int("num_heads", num_heads))
    return flops + pool_fl + 2.0 * c_in * ((output_dim or c_in) - c_in)


def image_tower_flops(image: Mapping[str, Any], resolution: int) -> tuple[float, int]:
    """config.model.image mapping, image side -> (forward FLOPs per image, pooled feature width)."""
    if image.get("arch", "vit") == "resnet":
        from vljax.models.resnet import feature_channels, resnet_dims

        d = resnet_dims(image.get("variant"), layers=image.get("layers"), width=image.get("width"),
                        num_heads=image.get("num_heads"), output_dim=image.get("output_dim"))
        res, pool = int(resolution or image["image_size"]), image.get("pool", "attn")
        fl = resnet_flops(res, d["layers"], int(d["width"]), int(d["num_heads"]), d["output_dim"], pool=pool)
        # NOTE: the attention pool projects to output_dim when given; 'gap' pools the final channels as they are.
        width = (pool == "attn" and d["output_dim"]) or feature_channels(int(d["width"]), len(d["layers"]))
        return fl, int(width)
    dims = vit_dims(image)
    # NOTE: the tower runs on the images it gets; image_size is only the grid of a (pretrained) position table.
    res = int(resolution or image["image_size"])
    patch = dims["patch_size"] if isinstance(dims["patch_size"], int) else tuple(dims["patch_size"])
    pool, depth = image.get("pool", "gap"), int(dims["depth"])
    merges = vit_merges(image.get("token_merging"), res, patch, depth, pool)
    fl = vit_flops(res, patch, int(dims["width"]), depth, int(dims["num_heads"]), int(dims["mlp_dim"]),
                   pool=pool, activation=image.get("activation", "gelu"),
                   stem=image.get("stem", "patch"), stem_channels=tuple(image.get("stem_channels", ()) or ()),
                   merges=merges)
    return fl, int(dims["width"])


def text_flops(length: int, width: int, depth: int, num_heads: int, mlp_dim: int, pool: str = "last",
               activation: str = "gelu") -> float:
    """One [L] token sequence -> forward FLOPs of the text encoder (pads are computed, then masked)."""
    for name, v in (("length", length), ("width", width), ("depth", depth), ("num_heads", num_heads),
                    ("mlp_dim", mlp_dim)):
        _pos_int(name, v)
    blocks = depth * block_flops(length, width, num_heads, mlp_dim, activation)
    return blocks + pool_flops(pool, length, width, num_heads, mlp_dim)


@dataclasses.dataclass(frozen=True)
class TwoTowerFlops:
    """Forward FLOPs per example of each part of a two-tower model, and totals."""
    image: float
    text: float
    projections: float
    loss: float

    @property
    def forward(self) -> float:
        """Total forward FLOPs per example."""
        return self.image + self.text + self.projections + self.loss

    @property
    def train(self) -> float:
        """Training FLOPs per example (forward + backward = TRAIN_FACTOR x forward)."""
        return TRAIN_FACTOR * self.forward


def vit_dims(image: Mapping[str, Any]) -> dict:
    """config.model.image mapping -> dict(width, depth, num_heads, mlp_dim, patch_size) with the variant resolved."""
    from vljax.models.vit import vit_config

    if image.get("arch", "vit") != "vit":
        raise ValueError(f"config.model.image.arch={image['arch']!r}: this count needs the ViT image tower "
                         "(arch 'vit')")
    dims = vit_config(image["variant"]) if image.get("variant") else {}
    for key in ("width", "depth", "num_heads", "mlp_dim", "patch_size"):
        if image.get(key) is not None:
            dims[key] = image[key]
    missing = [k for k in ("width", "depth", "num_heads", "mlp_dim", "patch_size") if k not in dims]
    if missing:
        raise ValueError(f"config.model.image lacks {missing} (give variant='B/16' or the fields)")
    patch = (dims["patch_size"],) if isinstance(dims["patch_size"], int) else tuple(dims["patch_size"])
    dims["patch_size"] = patch * 2 if len(patch) == 1 else patch  # NOTE: one number = square, as the ViT reads it
    return dims


def two_tower_flops(config, *, batch_size: int = 0) -> TwoTowerFlops:
    """Config (model, data.world.resolution, data.max_len) -> per-example forward FLOPs of the two towers.

    batch_size > 0 adds the contrastive logits ([B, E] x [E, B] = 2 B E per example); 0 leaves them out,
    as scaling-law papers do (they do not grow with the model).
    """
    m = config.model
    img, img_width = image_tower_flops(dict(m.image), int(config.data.world.resolution))
    t = m.text
    txt = text_flops(int(config.data.max_len), int(t.width), int(t.depth), int(t.num_heads), int(t.mlp_dim),
                     pool=t.get("pool", "last"), activation=t.get("activation", "gelu"))
    embed = _pos_int("config.model.embed_dim", m.embed_dim)
    # NOTE: img_proj_kind 'none' (CLIP's ResNets, whose attention pool projects) has no image projection; the
    # SigLIP configs keep the linear one.
    img_proj = 0 if m.get("img_proj_kind", "linear") == "none" else img_width
    proj = 2.0 * embed * (img_proj + int(t.width))
    loss = 2.0 * int(batch_size) * embed if batch_size else 0.0
    return TwoTowerFlops(image=img, text=txt, projections=proj, loss=loss)


def compiled_flops_per_call(fn, *args) -> float:
    """jit(fn)(*args) -> FLOPs of one call from XLA's cost analysis of the compiled executable."""
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    if not cost or "flops" not in cost:
        raise RuntimeError("this backend's cost analysis reports no 'flops'")
    return float(cost["flops"])
