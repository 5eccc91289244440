"""Next-token prediction: label masks, optional per-token weights, packing-aware per-segment normalisation.

    nll_t = -log softmax(logits_t)[target_t]                                  [B, T]
    token:    loss = sum(m * w * nll) / sum(m)                                 (one mean over the batch)
    segment:  loss = mean over segments s of sum_s(m * w * nll) / sum_s(m)     (each packed sequence counts once)

`m` is the label mask (1 = supervised target), `w` the per-token weights (default 1). With w = 1
both reductions are the plain NTP mean, exactly. The targets are already shifted: logits at t
predict target t (see `shift_targets`).

`chunked_next_token_loss` is the same loss from the final hidden states [B, T, D] and the unembedding
[D, V]: an online logsumexp over vocabulary chunks, so the [B, T, V] float32 logits never exist (the
backward pass recomputes each chunk's logits; see `chunked_token_nll`).
"""
from __future__ import annotations

import functools

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


def normalize_weights_per_segment(weights: jax.Array, mask: jax.Array, segment_ids: jax.Array | None = None,
                                  eps: float = 1e-12) -> jax.Array:
    """[B, T] weights, mask -> weights rescaled to mean 1 over each row's (segment's) supervised tokens.

    m_i = k * w_i / sum_j w_j over the k supervised tokens of the segment; a segment whose weights
    sum below `eps` gets m = 1 (nothing to prefer, so plain NTP rather than a zero or 0/0 loss).
    """
    m = mask.astype(jnp.float32)
    w = weights.astype(jnp.float32) * m
    seg = _segments(mask, segment_ids)
    gather = jax.vmap(lambda s, i: s[i])
    w_sum = gather(_segment_sums(w, seg), seg)
    n_sum = gather(_segment_sums(m, seg), seg)
    scaled = jnp.where(w_sum < eps, 1.0, w * n_sum / jnp.maximum(w_sum, eps))
    return jnp.where(m > 0, scaled, 0.0)


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


def _check_inputs(targets, mask, weights, normalize) -> None:
    """Raises ValueError for an unknown normalisation or a mask / weights shape that is not targets' [B, T]."""
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize={normalize!r} is not one of {NORMALIZATIONS}")
    if mask.shape != targets.shape:
        raise ValueError(f"mask {mask.shape} must match targets {targets.shape}")
    if weights is not None and weights.shape != targets.shape:
        raise ValueError(f"weights {weights.shape} must match targets {targets.shape}")


def next_token_loss(logits: jax.Array, targets: jax.Array, mask: jax.Array, weights: jax.Array | None = None,
                    segment_ids: jax.Array | None = None, normalize: str = "token"
                    ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """[B, T, V] logits, int [B, T] targets, [B, T] mask (+ weights, segment ids) -> (scalar loss, metrics)."""
    _check_inputs(targets, mask, weights, normalize)
    nll = token_nll(logits, targets)
    return _reduce(nll, jnp.argmax(logits, axis=-1) == targets, mask, weights, segment_ids, normalize)


def _reduce(nll, correct, mask, weights, segment_ids, normalize):
    """float32 nll [B, T], bool correct [B, T], mask [B, T] (+ weights, segment ids) -> (scalar loss, metrics)."""
    m = mask.astype(jnp.float32)
    w = m if weights is None else m * weights.astype(jnp.float32)
    n_tok = m.sum()
    correct = correct.astype(jnp.float32) * m
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


def chunked_token_nll(hidden: jax.Array, unembed: jax.Array, targets: jax.Array, chunk_size: int = 4096
                      ) -> tuple[jax.Array, jax.Array]:
    """[N, D] x [D, V] x int [N] -> (float32 nll [N], int32 argmax [N]) without materializing [N, V] logits.

    Forward: lax.scan over ceil(V / chunk_size) vocabulary chunks carrying a running max, a running
    sum of exps, the target logit and the running argmax (all float32 / int32, [N] each). Backward
    (custom VJP): a second scan recomputes each chunk's logits z_c and forms
    (softmax(z)_c - onehot_c) * g, so peak extra memory is one [N, chunk_size] block, not [N, V].
    Logits are float32 (`preferred_element_type`) whatever the input dtype; V need not divide
    chunk_size (the last chunk overlaps the previous one; its re-seen columns are masked to -inf).
    Gradients come back in hidden's / unembed's dtypes.
    """
    if int(chunk_size) <= 0:
        raise ValueError(f"chunk_size={chunk_size} must be a positive number of vocabulary entries")
    if hidden.ndim != 2 or unembed.ndim != 2 or hidden.shape[1] != unembed.shape[0]:
        raise ValueError(f"hidden {hidden.shape} must be [N, D] and unembed {unembed.shape} [D, V]")
    if targets.shape != hidden.shape[:1]:
        raise ValueError(f"targets {targets.shape} must be [N] = {hidden.shape[:1]}")
    return _chunked_nll(hidden, unembed, targets.astype(jnp.int32), min(int(chunk_size), unembed.shape[1]))


def _chunk_logits(hidden, unembed, c, chunk):
    """[N, D] x [D, V], chunk index c -> (float32 logits [N, C] with -inf on columns an earlier chunk
    covered, column ids [C], valid [C], [D, C] columns, their start).

    NOTE: the last chunk starts at V - C (overlapping its predecessor) instead of padding the
    vocabulary, so no padded copy of the [D, V] unembedding is ever made.
    """
    v = unembed.shape[1]
    start = jnp.minimum(c * chunk, v - chunk)
    w_c = jax.lax.dynamic_slice_in_dim(unembed, start, chunk, axis=1)
    cols = start + jnp.arange(chunk)
    valid = cols >= c * chunk
    z = jnp.dot(hidden, w_c, preferred_element_type=jnp.float32)
    return jnp.where(valid[None, :], z, -jnp.inf), cols, valid, w_c, start


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _chunked_nll(hidden, unembed, targets, chunk):
    return _chunked_nll_fwd(hidden, unembed, targets, chunk)[0]


def _chunked_nll_fwd(hidden, unembed, targets, chunk):
    n_tok, n = hidden.shape[0], -(-unembed.shape[1] // chunk)

    def body(carry, c):
        run_max, run_sum, tgt, best_val, best_idx = carry
        z, cols, valid, _, start = _chunk_logits(hidden, unembed, c, chunk)
        c_max = z.max(axis=-1)
        new_max = jnp.maximum(run_max, c_max)
        # NOTE: run_max starts at -inf; exp(-inf - finite) = 0, and chunk 0 always has a real column.
        run_sum = run_sum * jnp.exp(run_max - new_max) + jnp.exp(z - new_max[:, None]).sum(axis=-1)
        hit = valid[None, :] & (cols[None, :] == targets[:, None])
        tgt = tgt + jnp.sum(jnp.where(hit, z, 0.0), axis=-1)
        # NOTE: strict '>' keeps the earlier chunk on ties, matching jnp.argmax's first-occurrence rule.
        better = c_max > best_val
        best_idx = jnp.where(better, start + jnp.argmax(z, axis=-1).astype(jnp.int32), best_idx)
        best_val = jnp.where(better, c_max, best_val)
        return (new_max, run_sum, tgt, best_val, best_idx), None

    neg = jnp.full((n_tok,), -jnp.inf, jnp.float32)
    zeros = jnp.zeros((n_tok,), jnp.float32)
    init = (neg, zeros, zeros, neg, jnp.zeros((n_tok,), jnp.int32))
    (run_max, run_sum, tgt, _, best_idx), _ = jax.lax.scan(body, init, jnp.arange(n))
    lse = run_max + jnp.log(run_sum)
    return (lse - tgt, best_idx), (hidden, unembed, targets, lse)


def _chunked_nll_bwd(chunk, res, cotangents):
    hidden, unembed, targets, lse = res
    g = cotangents[0].astype(jnp.float32)  # NOTE: the argmax output is integer: no cotangent flows through it.
    n = -(-unembed.shape[1] // chunk)

    def body(carry, c):
        d_hidden, d_unembed = carry
        z, cols, valid, w_c, start = _chunk_logits(hidden, unembed, c, chunk)
        hit = valid[None, :] & (cols[None, :] == targets[:, None])
        dz = (jnp.exp(z - lse[:, None]) - hit) * g[:, None]                             # [N, C] float32
        d_hidden = d_hidden + jnp.dot(dz, w_c.T, preferred_element_type=jnp.float32)
        d_w = jnp.dot(hidden.astype(jnp.float32).T, dz)                                       # [D, C]
        # NOTE: columns an earlier chunk owns get d_w = 0 here, so adding keeps their gradient exact.
        old = jax.lax.dynamic_slice_in_dim(d_unembed, start, chunk, axis=1)
        d_unembed = jax.lax.dynamic_update_slice_in_dim(d_unembed, old + d_w.astype(unembed.dtype), start, axis=1)
        return (d_hidden, d_unembed), None

    init = (jnp.zeros(hidden.shape, jnp.float32), jnp.zeros_like(unembed))
    (d_hidden, d_unembed), _ = jax.lax.scan(body, init, jnp.arange(n))
    return d_hidden.astype(hidden.dtype), d_unembed, None


_chunked_nll.defvjp(_chunked_nll_fwd, _chunked_nll_bwd)


def chunked_next_token_loss(hidden: jax.Array, unembed: jax.Array, targets: jax.Array, mask: jax.Array,
                            weights: jax.Array | None = None, segment_ids: jax.Array | None = None,
                            normalize: str = "token", chunk_size: int = 4096
                            ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """[B, T, D] hidden, [D, V] unembed, int [B, T] targets, [B, T] mask -> (scalar loss, metrics).

    Same loss and metrics as `next_token_loss(hidden @ unembed, ...)` (nll, token_accuracy,
    supervised_tokens), computed chunk by chunk over the vocabulary (`chunked_token_nll`).
    """
    _check_inputs(targets, mask, weights, normalize)
    if hidden.ndim != 3 or hidden.shape[:2] != targets.shape:
        raise ValueError(f"hidden {hidden.shape} must be [B, T, D] with [B, T] = targets {targets.shape}")
    b, t, d = hidden.shape
    nll, pred = chunked_token_nll(hidden.reshape(b * t, d), unembed, targets.reshape(b * t), chunk_size)
    return _reduce(nll.reshape(b, t), pred.reshape(b, t) == targets, mask, weights, segment_ids, normalize)
