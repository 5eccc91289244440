"""Two-tower (CLIP / SigLIP) model: ViT or ResNet image tower + text tower, projected to a shared space."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from vljax.models.resnet import ResNet
from vljax.models.text_encoder import TextEncoder
from vljax.models.vit import ViT

Dtype = Any

MAX_LOGIT_SCALE = 100.0
PROJ_KINDS = ("linear", "linear_bias", "none")
IMAGE_ARCHS = {"vit": ViT, "resnet": ResNet}
# NOTE: OpenAI CLIP's per-channel RGB mean / std over [0, 1] pixels, which its released towers were trained on.
CLIP_PIXEL_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_PIXEL_STD = (0.26862954, 0.26130258, 0.27577711)
PIXEL_NORMS = ("none", "clip")


def normalize_pixels(images, kind: str):
    """[B, H, W, 3] images in [-1, 1] (what the methods feed) -> the tower's input: as given ('none'), or CLIP's
    mean / std normalization of the [0, 1] pixels ('clip', for released OpenAI / open_clip towers)."""
    if kind == "none":
        return images
    if kind == "clip":
        mean, std = jnp.asarray(CLIP_PIXEL_MEAN, images.dtype), jnp.asarray(CLIP_PIXEL_STD, images.dtype)
        return ((images + 1) / 2 - mean) / std
    raise ValueError(f"pixel_norm={kind!r} is not one of {PIXEL_NORMS}")


def image_tower(image: dict, **kwargs) -> nn.Module:
    """config.model.image mapping -> ViT (arch 'vit', the default) or ResNet (arch 'resnet'); kwargs added."""
    fields = dict(image)
    arch = fields.pop("arch", "vit")
    if arch not in IMAGE_ARCHS:
        raise ValueError(f"config.model.image.arch={arch!r} is not one of {sorted(IMAGE_ARCHS)}")
    return IMAGE_ARCHS[arch](**{**kwargs, **fields})


def l2_normalize(x, axis: int = -1, eps: float = 1e-12):
    """[..., E] -> [..., E] unit L2 norm along `axis` (computed in float32)."""
    xf = x.astype(jnp.float32)
    return (xf * jnp.reciprocal(jnp.maximum(jnp.linalg.norm(xf, axis=axis, keepdims=True), eps))).astype(x.dtype)


class TwoTower(nn.Module):
    """images [B, H, W, 3] + tokens int [B, L] -> dict(img [B, E], txt [B, E], logit_scale, logit_bias)."""

    image: dict
    text: dict
    embed_dim: int
    temperature_init: float = float(np.log(1 / 0.07))
    bias_init: float | None = None
    normalize: bool = True
    # NOTE: SigLIP has no image projection (the MAP head output is the embedding) and a biased text
    # head; 'none' / 'linear_bias' express those layouts exactly.
    img_proj_kind: str = "linear"
    # NOTE: 'clip' re-normalizes the [-1, 1] inputs as OpenAI CLIP's towers expect (normalize_pixels).
    pixel_norm: str = "none"
    txt_proj_kind: str = "linear"
    # NOTE: pretrained SigLIP learned scales above 100; None leaves exp(logit_scale) unclipped.
    max_logit_scale: float | None = MAX_LOGIT_SCALE
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        self.img_tower = image_tower(self.image, dtype=self.dtype, param_dtype=self.param_dtype)
        self.txt_tower = TextEncoder(**{"dtype": self.dtype, "param_dtype": self.param_dtype, **self.text})
        for field in ("img_proj_kind", "txt_proj_kind"):
            if getattr(self, field) not in PROJ_KINDS:
                raise ValueError(f"{field}={getattr(self, field)!r} is not one of {PROJ_KINDS}")
        proj = lambda kind: (
            (lambda x: x)
            if kind == "none"
            else nn.Dense(
                self.embed_dim,
                use_bias=kind == "linear_bias",
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("proj_in", "proj_out")),
                bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("proj_out",)),
            )
        )
        self.img_proj = proj(self.img_proj_kind)
        self.txt_proj = proj(self.txt_proj_kind)
        # NOTE: stored as log(scale) so the learned temperature stays positive.
        self.log_scale = self.param(
            "logit_scale",
            nn.with_logical_partitioning(nn.initializers.constant(self.temperature_init), ()),
            (),
            jnp.float32,
        )
        if self.bias_init is not None:
            self.bias = self.param(
                "logit_bias",
                nn.with_logical_partitioning(nn.initializers.constant(self.bias_init), ()),
                (),
                jnp.float32,
            )

    def _finish(self, x):
        return l2_normalize(x) if self.normalize else x

    def encode_image(self, images, train: bool = False, return_tokens: bool = False):
        """[B, H, W, 3] -> [B, E] (or ([B, E], [B, N, E]) with return_tokens=True)."""
        images = normalize_pixels(images, self.pixel_norm)
        if return_tokens:
            pooled, tokens = self.img_tower(images, train=train, return_tokens=True)
            return self._finish(self.img_proj(pooled)), self._finish(self.img_proj(tokens))
        return self._finish(self.img_proj(self.img_tower(images, train=train)))

    def encode_text(self, tokens, train: bool = False, return_tokens: bool = False):
        """int [B, L] -> [B, E] (or ([B, E], [B, L, E]) with return_tokens=True)."""
        if return_tokens:
            pooled, feats = self.txt_tower(tokens, train=train, return_tokens=True)
            return self._finish(self.txt_proj(pooled)), self._finish(self.txt_proj(feats))
        return self._finish(self.txt_proj(self.txt_tower(tokens, train=train)))

    def logit_params(self):
        """-> (logit_scale scalar = exp(param) clipped at max_logit_scale, logit_bias scalar or None)."""
        scale = jnp.exp(self.log_scale)
        if self.max_logit_scale is not None:
            scale = jnp.minimum(scale, self.max_logit_scale)
        return scale, (self.bias if self.bias_init is not None else None)

    def __call__(self, images, tokens, train: bool = False, return_tokens: bool = False):
        """[B, H, W, 3], int [B, L] -> dict(img, txt [B, E], logit_scale, logit_bias[, img_tokens, txt_tokens]).

        Either input may be None (its outputs are then None).
        """
        out = {}
        for key, x, fn in (("img", images, self.encode_image), ("txt", tokens, self.encode_text)):
            if x is None:
                out[key] = None
                if return_tokens:
                    out[f"{key}_tokens"] = None
            elif return_tokens:
                out[key], out[f"{key}_tokens"] = fn(x, train=train, return_tokens=True)
            else:
                out[key] = fn(x, train=train)
        out["logit_scale"], out["logit_bias"] = self.logit_params()
        return out
