"""SigLIP (Zhai et al., 2023): two towers trained with a pairwise sigmoid loss.

    z_ij = +1 if i == j else -1,   l_ij = t * <img_i, txt_j> + b
    loss = -(1/B) sum_ij log sigmoid(z_ij * l_ij),  t init 10 (log-param), b init -10

Sharded over the batch with a ring (ppermute): each device keeps its images and sees one
peer text chunk at a time, so per-device memory does not grow with the device count.
"""
from __future__ import annotations

from vljax.losses import contrastive
from vljax.methods.clip import (  # noqa: F401 - SigLIP reuses CLIP's towers, data and encoders
    build, contrastive_terms, data_spec, encoders, init_params, train_flops_per_example)
from vljax.sharding import BATCH_AXES


def make_loss(model, config, mesh):
    """-> loss_fn(params, batch, rng) -> (loss, metrics) with the sigmoid loss (ring-sharded)."""
    impl = config.get("loss_impl", "ring")

    def loss_fn(params, batch, rng):
        del rng
        img, txt, scale, bias = contrastive_terms(model, params, batch)
        loss, metrics = contrastive.contrastive_loss("sigmoid", img, txt, scale, bias, mesh=mesh, axes=BATCH_AXES,
                                                     sigmoid_impl=impl)
        return loss, dict(metrics, logit_scale=scale, logit_bias=bias)
    return loss_fn
