"""FILIP (Yao et al., ICLR 2022): two towers trained with a token-wise late-interaction contrastive loss.

    X_I = normalize(W_i ViT_tokens(image)) [B, n1, d],  X_T = normalize(W_t Text_tokens(text)) [B, n2, d]
    s^I[i, j] = mean_k max_r <x_ik, x_jr>   (image -> text; valid text tokens only)
    s^T[i, j] = mean_r max_k <x_ik, x_jr>   (text -> image; mean over valid text tokens)
    loss = (CE(exp(t) s^I, diag) + CE(exp(t) s^T.T, diag)) / 2,  t learned (init log 1/0.07, clip 100)

Config (config.model.filip): drop_special_tokens (BOS/EOS out of the text mask), mask_padding (default
True; False puts padding tokens into the text mask: the card's ablation), token_keep_ratio (< 1: each
device keeps, per sample, the tokens with the highest max similarity to its local partners before the
all-gather, as in the paper), image_cls (the ViT's CLS token takes part in the late interaction next to the
patches, as the card's default; needs model.image.pool='cls'; None = whenever the pool is 'cls'), impl
(late-interaction kernel path).
On a mesh whose batch axes hold > 1 shard the loss is `filip_loss`'s shard_map version.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from vljax.data.tokenizer import BOS, EOS, PAD
from vljax.kernels.late_interaction import IMPLS, MASK_VALUE, late_interaction
from vljax.losses.late_interaction import filip_loss
from vljax.methods import clip
from vljax.models.two_tower import TwoTower
from vljax.sharding import BATCH_AXES


build = clip.build
init_params = clip.init_params
data_spec = clip.data_spec
encoders = clip.encoders
preprocess_images = clip.preprocess_images


def _options(config) -> dict:
    """config.model.filip -> validated dict(image_cls, drop_special_tokens, mask_padding, token_keep_ratio, impl)."""
    f = dict(config.model.get("filip", {}))
    unknown = sorted(set(f) - {"drop_special_tokens", "mask_padding", "token_keep_ratio", "image_cls", "impl"})
    if unknown:
        raise ValueError(f"config.model.filip: unknown keys {unknown}")
    impl = str(f.get("impl", "auto"))
    if impl not in IMPLS:
        raise ValueError(f"config.model.filip.impl={impl!r} is not one of {', '.join(IMPLS)}")
    ratio = float(f.get("token_keep_ratio", 1.0))
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"config.model.filip.token_keep_ratio must be in (0, 1], got {ratio}")
    pool = config.model.image.get("pool", "gap")
    # NOTE: None (the default) = the card's choice where the tower has a CLS (pool='cls'): it takes part.
    image_cls = pool == "cls" if f.get("image_cls") is None else bool(f["image_cls"])
    if image_cls and pool != "cls":
        raise ValueError(f"config.model.filip.image_cls=True needs config.model.image.pool='cls', got {pool!r}")
    return dict(
        image_cls=image_cls,
        drop_special_tokens=bool(f.get("drop_special_tokens", False)),
        mask_padding=bool(f.get("mask_padding", True)),
        token_keep_ratio=ratio,
        impl=impl,
    )


def check_config(config) -> None:
    """Config loading hook: config.model.filip's keys and values (ValueError naming the key)."""
    _options(config)


def forward_flops_per_example(config) -> float:
    """Analytic forward FLOPs per example: the towers and pooled projections (CLIP's count, without its [B, B]
    logits) plus what FILIP adds: projecting every token (Nv image, L text) and the token-wise similarity of
    each example against the global (micro-)batch, 2 B Nv' Nt' E (Nv', Nt' = tokens kept by
    token_keep_ratio; the max and mean reductions are not counted, nor is the local scoring that picks the
    kept tokens)."""
    from vljax.experiments import flops

    opts = _options(config)
    parts = flops.two_tower_flops(config)
    m = config.model
    dims = flops.vit_dims(dict(m.image))
    ph, pw = (dims["patch_size"],) * 2 if isinstance(dims["patch_size"], int) else tuple(dims["patch_size"])
    res = int(config.data.world.resolution)  # NOTE: the input size (image_size is a position-table grid)
    n_patches, length, embed = (res // ph) * (res // pw), int(config.data.max_len), int(m.embed_dim)
    token_proj = 2.0 * embed * (int(dims["width"]) * n_patches + int(m.text.width) * length)
    n_img = n_patches + int(opts["image_cls"])
    keep = lambda n: max(1, math.ceil(opts["token_keep_ratio"] * n)) if opts["token_keep_ratio"] < 1.0 else n
    # NOTE: with gradient accumulation each micro-batch is its own contrastive batch.
    batch = int(config.train.batch_size) // max(1, int(config.train.get("grad_accum_steps", 1)))
    similarity = 2.0 * batch * keep(n_img) * keep(length) * embed
    return parts.image + parts.text + parts.projections + token_proj + similarity


def train_flops_per_example(config) -> float:
    """Training FLOPs per example for MFU: forward_flops_per_example x TRAIN_FACTOR (forward + backward)."""
    from vljax.experiments import flops

    return flops.TRAIN_FACTOR * forward_flops_per_example(config)


def text_mask(tokens: jax.Array, drop_special_tokens: bool, mask_padding: bool = True) -> jax.Array:
    """int [B, L] -> bool [B, L] tokens taking part in late interaction (padding only if not mask_padding)."""
    mask = tokens != PAD if mask_padding else jnp.ones(tokens.shape, bool)
    if drop_special_tokens:
        mask = mask & (tokens != BOS) & (tokens != EOS)
    return mask


def with_cls(pooled, patches, image_cls: bool):
    """[B, d] projected CLS, [B, n, d] projected patches -> [B, n (+1), d] image tokens of the late interaction."""
    return jnp.concatenate([pooled[:, None, :], patches], axis=1) if image_cls else patches


def token_terms(model: TwoTower, params, images, tokens, drop_special_tokens: bool, train: bool = True,
                mask_padding: bool = True, image_cls: bool = False):
    """-> (img_tok [B, n1, d], img_mask [B, n1], txt_tok [B, n2, d], txt_mask [B, n2], logit_scale).

    With image_cls the pooled image embedding (the projected CLS token, pool='cls') is image token 0.
    """
    out = model.apply({"params": params}, preprocess_images(images), tokens, train=train, return_tokens=True)
    v, t = with_cls(out["img"], out["img_tokens"], image_cls), out["txt_tokens"]
    return v, jnp.ones(v.shape[:2], bool), t, text_mask(tokens, drop_special_tokens, mask_padding), out["logit_scale"]


def keep_top_tokens(v, mv, t, mt, ratio: float):
    """[b, n1, d], [b, n1], [b, n2, d], [b, n2] -> the same with ceil(ratio * n) tokens per sample kept.

    A token's rank is its best similarity to any valid token of any local partner (FILIP's selection
    before the all-gather). Masked tokens rank last and stay masked.
    """

    def select(x, mx, other, m_other):
        b, n, d = x.shape
        keep = max(1, math.ceil(ratio * n))
        # NOTE: [b, n, b * n_other] scores of the local batch only; the selection has no gradient.
        s = jnp.einsum("ind,md->inm", x, other.reshape(-1, d), preferred_element_type=jnp.float32)
        s = jnp.where(m_other.reshape(1, 1, -1), s, MASK_VALUE)
        best = jnp.where(mx, jnp.max(s, axis=-1), 2 * MASK_VALUE)
        _, idx = jax.lax.top_k(jax.lax.stop_gradient(best), keep)
        return jnp.take_along_axis(x, idx[..., None], axis=1), jnp.take_along_axis(mx, idx, axis=1)

    v2, mv2 = select(v, mv, t, mt)
    t2, mt2 = select(t, mt, v, mv)
    return v2, mv2, t2, mt2


def _batch_sharded(mesh) -> bool:
    """Mesh | None -> whether the batch axes hold more than one shard."""
    return mesh is not None and math.prod(mesh.shape[a] for a in BATCH_AXES if a in mesh.axis_names) > 1


def make_loss(model: TwoTower, config, mesh):
    """-> loss_fn(params, batch, rng) -> (loss, metrics) with the symmetric late-interaction InfoNCE."""
    opts = _options(config)
    sharded = _batch_sharded(mesh)

    def prune(v, mv, t, mt):
        if opts["token_keep_ratio"] >= 1.0:
            return v, mv, t, mt
        fn = lambda *a: keep_top_tokens(*a, opts["token_keep_ratio"])
        if not sharded:
            return fn(v, mv, t, mt)
        axes = tuple(a for a in BATCH_AXES if a in mesh.axis_names)
        spec = P(axes)
        return jax.shard_map(fn, mesh=mesh, in_specs=(spec,) * 4, out_specs=(spec,) * 4)(v, mv, t, mt)

    def loss_fn(params, batch, rng):
        del rng
        v, mv, t, mt, scale = token_terms(model, params, batch["image"], batch["text"], opts["drop_special_tokens"],
                                          mask_padding=opts["mask_padding"], image_cls=opts["image_cls"])
        v, mv, t, mt = prune(v, mv, t, mt)
        loss = filip_loss(v, t, mv, mt, scale, mesh=mesh if sharded else None, axes=BATCH_AXES, impl=opts["impl"])
        return loss, dict(loss=loss, logit_scale=scale, text_tokens=jnp.mean(jnp.sum(mt, axis=1)))

    return loss_fn


def score_pairs(model: TwoTower, config, params, images, tokens, direction: str = "i2t") -> jax.Array:
    """uint8 [Ni, H, W, 3] x int [Nt, L] -> [Ni, Nt] late-interaction scores (s^I for 'i2t', s^T for 't2i')."""
    if direction not in ("i2t", "t2i"):
        raise ValueError(f"direction must be 'i2t' or 't2i', got {direction!r}")
    opts = _options(config)
    pooled, v = model.apply({"params": params}, preprocess_images(images), return_tokens=True,
                            method=TwoTower.encode_image)
    v = with_cls(pooled, v, opts["image_cls"])
    _, t = model.apply({"params": params}, tokens, return_tokens=True, method=TwoTower.encode_text)
    i2t, t2i = late_interaction(v, t, None, text_mask(tokens, opts["drop_special_tokens"], opts["mask_padding"]),
                                impl=opts["impl"])
    return i2t if direction == "i2t" else t2i
