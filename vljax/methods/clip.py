"""CLIP (Radford et al., 2021): two towers trained with the symmetric softmax InfoNCE loss.

    img = normalize(W_i ViT(image)),  txt = normalize(W_t Text(tokens))      [B, E] each
    logits = exp(t) * img @ txt.T                                              [B, B]
    loss = (CE(logits, diag) + CE(logits.T, diag)) / 2,  t learned (init log 1/0.07, clip 100)

On a mesh with a batch axis > 1 the loss is the shard_map version that all-gathers the
embeddings (with gradient), so every device sees all B negatives.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from vljax.nn.dtypes import dtype
from vljax.losses import contrastive
from vljax.models.two_tower import TwoTower
from vljax.sharding import BATCH_AXES


def build(config, vocab_size: int) -> TwoTower:
    """config.model -> TwoTower (ViT or ResNet image tower, config.model.image.arch, + text transformer)."""
    m = config.model
    image = dict(m.image)
    image.setdefault("image_size", int(config.data.world.resolution))
    impl = m.get("attention_impl", "auto")
    image.update(remat=m.remat, attention_impl=impl)
    text = dict(m.text, vocab_size=vocab_size, max_len=int(config.data.max_len), remat=m.remat, attention_impl=impl)
    return TwoTower(image=image, text=text, embed_dim=int(m.embed_dim),
                    temperature_init=float(m.temperature_init),
                    bias_init=None if m.get("bias_init") is None else float(m.bias_init),
                    img_proj_kind=m.get("img_proj_kind", "linear"), pixel_norm=m.get("pixel_norm", "none"),
                    dtype=dtype(m.dtype))


def preprocess_images(images: jax.Array) -> jax.Array:
    """uint8 [B, H, W, 3] -> float32 in [-1, 1] (done on device: 4x less host->device traffic)."""
    return images.astype(jnp.float32) / 127.5 - 1.0


def init_params(model: TwoTower, config, rng: jax.Array):
    """-> boxed params (logical axis names attached) from dummy inputs."""
    res = int(config.data.world.resolution)
    images = jnp.zeros((1, res, res, 3), jnp.float32)
    tokens = jnp.zeros((1, int(config.data.max_len)), jnp.int32)
    return model.init(rng, images, tokens)["params"]


def data_spec(config) -> dict:
    """What the pipeline must deliver: world fields, text fields to tokenize, arrays to keep."""
    return dict(fields=("image", "caption"), text_fields={"caption": "text"}, keep=("image",))


def contrastive_terms(model: TwoTower, params, batch, train: bool = True):
    """batch -> (img [B, E], txt [B, E], logit_scale, logit_bias)."""
    out = model.apply({"params": params}, preprocess_images(batch["image"]), batch["text"], train=train)
    return out["img"], out["txt"], out["logit_scale"], out["logit_bias"]


def make_loss(model: TwoTower, config, mesh):
    """-> loss_fn(params, batch, rng) -> (loss, metrics) with the softmax InfoNCE loss."""
    def loss_fn(params, batch, rng):
        del rng
        img, txt, scale, _ = contrastive_terms(model, params, batch)
        loss, metrics = contrastive.contrastive_loss("softmax", img, txt, scale, mesh=mesh, axes=BATCH_AXES)
        return loss, dict(metrics, logit_scale=scale)
    return loss_fn


def train_flops_per_example(config) -> float:
    """Analytic training FLOPs per example for MFU: towers, projections and logits, forward x 3."""
    from vljax.experiments import flops

    return flops.two_tower_flops(config, batch_size=int(config.train.batch_size)).train


def encoders(model: TwoTower, config):
    """-> (embed_images(params, uint8 [B,H,W,3]) -> [B, E], embed_texts(params, int [B, L]) -> [B, E])."""
    def embed_images(params, images):
        return model.apply({"params": params}, preprocess_images(images), method=TwoTower.encode_image)

    def embed_texts(params, tokens):
        return model.apply({"params": params}, tokens, method=TwoTower.encode_text)
    return embed_images, embed_texts
