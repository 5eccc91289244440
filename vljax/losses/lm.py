"""Next-token prediction: label masks, optional per-token weights, packing-aware per-segment normalisation.

    nll_t = -log softmax(logits_t)[target_t]                                  [B, T]
    token:    loss = sum(m * w * nll) / sum(m)                                 (one mean over the batch)
    segment:  loss = mean over segments s of sum_s(m * w * nll) / sum_s(m)     (each packed sequence counts once)

`m` is the label mask (1 = supervised target), `w` the per-token weights (default 1). With w = 1
both reductions are the plain NTP mean, exactly. The targets are already shifted: logits at t
predict target t (see `shift_targets`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

NORMALIZATIONS = ("token", "segment")


def shift_targets(tokens: jax.Array, label_mask: jax.Array, segment_ids: jax.Array | None = None
                  ) -> tuple[jax.Array, jax.Array]:
    """int [B, T], mask [B, T] (over the tokens themselves) -> targets [B, T], target mask [B, T] (t -> t+1)."""
    targets = jnp.concatenate([tokens[:, 1:], jnp.zeros_like(tokens[:, :1])], axis=1)
    mask = jnp.concatenate([label_mask[:, 1:], jnp.zeros_like(label_mask[:, :1])], axis=1).astype(bool)
    if segment_ids is not None:
        # NOTE: with packing the last token of one segment must not predict the first of the next.
        same = jnp.concatenate([segment_ids[:, 1:] == segment_ids[:, :-1],
                                jnp.zeros_like(segment_ids[:, :1], bool)], axis=1)
        mask = mask & same
    return targets, mask


def token_nll(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """[B, T, V] x int [B, T] -> float32 [B, T] negative log-likelihood (softmax in float32)."""
    if logits.shape[:2] != targets.shape:
        raise ValueError(f"logits {logits.shape} and targets {targets.shape} disagree on [B, T]")
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.take_along_axis(logp, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]


def check_label_mask(label_mask, segment_ids=None) -> None:
    """Concrete mask [B, T] (+ segment ids) -> raises ValueError if a row (segment) has no supervised token."""
    m = np.asarray(label_mask).astype(bool)
    if m.ndim != 2:
        raise ValueError(f"label_mask must be [B, T], got shape {m.shape}")
    if segment_ids is None:
        empty = np.flatnonzero(~m.any(axis=1))
        if empty.size:
            raise ValueError(f"label_mask: rows {empty.tolist()} have no supervised token")
        return
    seg = np.asarray(segment_ids)
    for b in range(m.shape[0]):
        for s in np.unique(seg[b][seg[b] > 0]):
            if not m[b][seg[b] == s].any():
                raise ValueError(f"label_mask: segment {int(s)} of row {b} has no supervised token")


def normalize_weights_per_segment(weights: jax.Array, mask: jax.Array, segment_ids: jax.Array | None = None
                                  ) -> jax.Array:
    """[B, T] weights, mask -> weights rescaled to mean 1 over each row's (segment's) supervised tokens."""
    m = mask.astype(jnp.float32)
    w = weights.astype(jnp.float32) * m
    seg = _segments(mask, segment_ids)
    gather = jax.vmap(lambda s, i: s[i])
    w_sum = gather(_segment_sums(w, seg), seg)
    n_sum = gather(_segment_sums(m, seg), seg)
    return jnp.where(m > 0, w * n_sum / jnp.maximum(w_sum, 1e-12), 0.0)


def _segment_sums(x, seg):
    """[B, T] values, int [B, T] segment ids -> [B, T + 1] per-segment sums (index = segment id)."""
    n = x.shape[1] + 1
    return jax.vmap(lambda v, s: jax.ops.segment_sum(v, s, num_segments=n))(x, seg)


def _segments(mask, segment_ids):
    """Segment ids [B, T] (> 0 = a sequence); without packing every row is segment 1."""
    if segment_ids is None:
        return jnp.ones(mask.shape, jnp.int32)
    if segment_ids.shape != mask.shape:
        raise ValueError(f"segment_ids {segment_ids.shape} must match the mask {mask.shape}")
    return segment_ids.astype(jnp.int32)


def next_token_loss(logits: jax.Array, targets: jax.Array, mask: jax.Array, weights: jax.Array | None = None,
                    segment_ids: jax.Array | None = None, normalize: str = "token"
                    ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """[B, T, V] logits, int [B, T] targets, [B, T] mask (+ weights, segment ids) -> (scalar loss, metrics)."""
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize={normalize!r} is not one of {NORMALIZATIONS}")
    if mask.shape != targets.shape:
        raise ValueError(f"mask {mask.shape} must match targets {targets.shape}")
    if weights is not None and weights.shape != targets.shape:
        raise ValueError(f"weights {weights.shape} must match targets {targets.shape}")
    nll = token_nll(logits, targets)
    m = mask.astype(jnp.float32)
    w = m if weights is None else m * weights.astype(jnp.float32)
    n_tok = m.sum()
    correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32) * m
    if normalize == "token":
        # NOTE: max(n, 1) so an all-masked batch gives loss 0 rather than NaN inside jit; the
        # data path rejects such examples up front (check_label_mask).
        loss = jnp.sum(w * nll) / jnp.maximum(n_tok, 1.0)
    else:
        seg = _segments(mask, segment_ids)
        per_seg_loss = _segment_sums(w * nll, seg)                                  # [B, T + 1]
        per_seg_n = _segment_sums(m, seg)
        present = (per_seg_n > 0) & (jnp.arange(seg.shape[1] + 1) > 0)[None, :]
        seg_mean = jnp.where(present, per_seg_loss / jnp.maximum(per_seg_n, 1.0), 0.0)
        loss = seg_mean.sum() / jnp.maximum(present.sum(), 1)
    metrics = dict(nll=jnp.sum(m * nll) / jnp.maximum(n_tok, 1.0),
                   token_accuracy=correct.sum() / jnp.maximum(n_tok, 1.0),
                   supervised_tokens=n_tok)
    return loss, metrics
