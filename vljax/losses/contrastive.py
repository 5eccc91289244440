"""Contrastive image-text losses: softmax InfoNCE and sigmoid (SigLIP), local and batch-sharded.

Sharded versions take global [B, E] arrays (B split over the mesh batch axes) and run the cross-device
part in `jax.shard_map`; value, gradient and metrics equal the local versions.
"""

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P

from vljax.sharding import BATCH_AXES

# NOTE: logits are scale (up to 100) times a dot product; TF32/bf16 matmul passes would put
# percent-level error on them, and these [B, E] x [E, B] matmuls are cheap next to the towers.
_PRECISION = jax.lax.Precision.HIGHEST


def dots(a, b):
    """[n, E] x [m, E] -> [n, m] float32 inner products (full-precision matmul passes)."""
    return jnp.einsum("ne,me->nm", a, b, precision=_PRECISION, preferred_element_type=jnp.float32)


def ce_rows(logits, positive):
    """[b, B] logits x int [b] positive columns -> [b] softmax cross-entropy of each row."""
    lse = jax.nn.logsumexp(logits, axis=1)
    return lse - jnp.take_along_axis(logits, positive[:, None], axis=1)[:, 0]


def softmax_rows(row_dots, scale, positive):
    """InfoNCE's row loss for row_contrastive: [b, B] inner products x scalar x int [b] -> [b] CE of scale * dots."""
    return ce_rows(scale * row_dots, positive)


def _check_pair(img, txt):
    if img.ndim != 2 or img.shape != txt.shape:
        raise ValueError(f"img and txt must both be [B, E]; got img {img.shape}, txt {txt.shape}")


def softmax_infonce(img, txt, scale):
    """[B, E] x [B, E] x scalar -> (loss scalar, metrics): symmetric CE over scale * img @ txt.T."""
    _check_pair(img, txt)
    logits = scale * dots(img, txt)
    pos = jnp.diagonal(logits)
    loss_i2t = jnp.mean(jax.nn.logsumexp(logits, axis=1) - pos)
    loss_t2i = jnp.mean(jax.nn.logsumexp(logits, axis=0) - pos)
    labels = jnp.arange(img.shape[0])
    sg = jax.lax.stop_gradient(logits)
    metrics = dict(
        loss_i2t=loss_i2t,
        loss_t2i=loss_t2i,
        i2t_acc=jnp.mean(jnp.argmax(sg, axis=1) == labels),
        t2i_acc=jnp.mean(jnp.argmax(sg, axis=0) == labels),
    )
    return 0.5 * (loss_i2t + loss_t2i), metrics


def _sigmoid_terms(logits, positive_diag: bool):
    """[b, b] logits -> scalar sum of -log sigmoid(z * logits) (z = +1 on the diagonal if positive)."""
    if positive_diag:
        z = 2.0 * jnp.eye(logits.shape[0], dtype=logits.dtype) - 1.0
        return -jnp.sum(jax.nn.log_sigmoid(z * logits))
    return -jnp.sum(jax.nn.log_sigmoid(-logits))


def sigmoid_loss(img, txt, scale, bias):
    """[B, E] x [B, E] x scalar x scalar -> (loss, metrics): SigLIP -sum log sigmoid(z * logits) / B."""
    _check_pair(img, txt)
    logits = scale * dots(img, txt) + bias
    loss = _sigmoid_terms(logits, True) / img.shape[0]
    labels = jnp.arange(img.shape[0])
    sg = jax.lax.stop_gradient(logits)
    metrics = dict(
        i2t_acc=jnp.mean(jnp.argmax(sg, axis=1) == labels), t2i_acc=jnp.mean(jnp.argmax(sg, axis=0) == labels)
    )
    return loss, metrics


# ----------------------------------------------------------------------------- sharded helpers


def batch_axes_in_mesh(mesh: Mesh, axes: Sequence[str]) -> tuple[str, ...]:
    """Mesh + requested batch axes -> those present in the mesh (e.g. ('data',) for a data-only mesh)."""
    present = tuple(a for a in axes if a in mesh.shape)
    if not present:
        raise ValueError(f"none of axes={tuple(axes)} is in the mesh axes {tuple(mesh.shape)}")
    return present


def num_batch_shards(mesh: Mesh | None, axes: Sequence[str] = BATCH_AXES) -> int:
    """-> number of devices the batch is split over (1 without a mesh)."""
    if mesh is None:
        return 1
    return math.prod(mesh.shape[a] for a in batch_axes_in_mesh(mesh, axes))


def batch_shards(batch_size: int, mesh: Mesh, axes: Sequence[str]) -> tuple[tuple[str, ...], int]:
    """-> (the batch axes present in the mesh, the number of shards they make); ValueError if the batch does not
    divide into them."""
    axes = batch_axes_in_mesh(mesh, axes)
    n = math.prod(mesh.shape[a] for a in axes)
    if batch_size % n:
        raise ValueError(f"batch size {batch_size} is not divisible by the {n} batch shards {axes}")
    return axes, n


def check_sharded_pair(img, txt, mesh, axes) -> tuple[tuple[str, ...], int]:
    """Global [B, E] x [B, E] -> batch_shards(B, mesh, axes) after checking the two are a pair."""
    _check_pair(img, txt)
    return batch_shards(img.shape[0], mesh, axes)


def _best_update(best_val, best_idx, val, idx):
    """Running argmax: keep the larger value; on ties keep the smaller global index (= jnp.argmax)."""
    take = (val > best_val) | ((val == best_val) & (idx < best_idx))
    return jnp.where(take, val, best_val), jnp.where(take, idx, best_idx)


def _col_argmax_allreduce(logits, row_offset, axes):
    """Local [b, B] logits -> int [B] global row argmax per column, reduced across the batch axes."""
    local_val = jnp.max(logits, axis=0)
    local_idx = jnp.argmax(logits, axis=0) + row_offset
    best_val = jax.lax.pmax(local_val, axes)
    big = jnp.iinfo(jnp.int32).max
    return jax.lax.pmin(jnp.where(local_val == best_val, local_idx, big), axes)


def f32_scalar(x):
    """A scalar (Python number or array) -> float32 array of shape ()."""
    return jnp.asarray(x, jnp.float32).reshape(())


# ----------------------------------------------------------------------------- sharded softmax


def row_contrastive(img, txt, scale, row_loss, *, mesh: Mesh | None = None, axes: Sequence[str] = BATCH_AXES):
    """Symmetric contrastive loss from a per-row loss: [B, E] x [B, E] x scalar -> (loss, metrics).

    row_loss(row_dots [b, B] float32, scale, positive int [b]) -> [b]: the loss of each query row (an image against
    every text, or a text against every image) given its inner products and the column of its pair. loss =
    (mean over images + mean over texts) / 2; metrics: loss_i2t, loss_t2i and the argmax accuracies i2t_acc,
    t2i_acc. With a mesh whose batch axes split the batch, each device scores its own rows against the other side
    all-gathered in shard_map (all_gather's transpose is a reduce-scatter, so gradients reach the owning shard);
    value and gradient equal the one-device loss. softmax_rows gives InfoNCE; a method with another row loss
    (re-weighted negatives, label smoothing, ...) passes its own and gets the sharded path with it.
    """
    _check_pair(img, txt)
    batch = img.shape[0]
    scale = f32_scalar(scale)

    def terms(img_q, txt_q, img_all, txt_all, positive, scale):
        d_i2t, d_t2i = dots(img_q, txt_all), dots(txt_q, img_all)
        sums = [jnp.sum(row_loss(d, scale, positive)) for d in (d_i2t, d_t2i)]
        correct = [jnp.sum(jnp.argmax(jax.lax.stop_gradient(d), axis=1) == positive).astype(jnp.float32)
                   for d in (d_i2t, d_t2i)]
        return jnp.stack(sums + correct)

    def metrics(tot):
        return 0.5 * (tot[0] + tot[1]), dict(loss_i2t=tot[0], loss_t2i=tot[1], i2t_acc=tot[2], t2i_acc=tot[3])

    if num_batch_shards(mesh, axes) == 1:
        return metrics(terms(img, txt, img, txt, jnp.arange(batch), scale) / batch)
    axes, _ = batch_shards(batch, mesh, axes)

    def body(img_l, txt_l, scale):
        scale = jax.lax.pcast(scale, axes, to="varying")
        b = img_l.shape[0]
        img_all = jax.lax.all_gather(img_l, axes, tiled=True)
        txt_all = jax.lax.all_gather(txt_l, axes, tiled=True)
        positive = jax.lax.axis_index(axes) * b + jnp.arange(b)
        return metrics(jax.lax.psum(terms(img_l, txt_l, img_all, txt_all, positive, scale), axes) / batch)

    return jax.shard_map(body, mesh=mesh, in_specs=(P(axes), P(axes), P()), out_specs=(P(), P()))(img, txt, scale)


def sharded_softmax_infonce(img, txt, scale, mesh: Mesh, axes: Sequence[str] = BATCH_AXES):
    """Global [B, E] x [B, E] x scalar -> (loss, metrics) == softmax_infonce, via all_gather in shard_map."""
    return row_contrastive(img, txt, scale, softmax_rows, mesh=mesh, axes=axes)


# ----------------------------------------------------------------------------- sharded sigmoid


def sharded_sigmoid_gather(img, txt, scale, bias, mesh: Mesh, axes: Sequence[str] = BATCH_AXES):
    """Global [B, E] x [B, E] x scalar x scalar -> (loss, metrics) == sigmoid_loss, all_gather of texts."""
    axes, _ = check_sharded_pair(img, txt, mesh, axes)
    batch = img.shape[0]

    def body(img_l, txt_l, scale, bias):
        b = img_l.shape[0]
        scale = jax.lax.pcast(scale, axes, to="varying")
        bias = jax.lax.pcast(bias, axes, to="varying")
        txt_all = jax.lax.all_gather(txt_l, axes, tiled=True)
        offset = jax.lax.axis_index(axes) * b
        labels = offset + jnp.arange(b)
        logits = scale * dots(img_l, txt_all) + bias  # [b, B]
        z = jnp.where(jnp.arange(batch)[None, :] == labels[:, None], 1.0, -1.0)
        loss = -jnp.sum(jax.nn.log_sigmoid(z * logits))
        sg = jax.lax.stop_gradient(logits)
        correct_i2t = jnp.sum(jnp.argmax(sg, axis=1) == labels)
        col_best = _col_argmax_allreduce(sg, offset, axes)  # [B], identical on every shard
        correct_t2i = jnp.sum(col_best == jnp.arange(batch))
        loss = jax.lax.psum(loss, axes) / batch
        correct_i2t = jax.lax.psum(correct_i2t, axes)
        metrics = dict(i2t_acc=correct_i2t / batch, t2i_acc=correct_t2i / batch)
        return loss, metrics

    return jax.shard_map(body, mesh=mesh, in_specs=(P(axes), P(axes), P(), P()), out_specs=(P(), P()))(
        img, txt, f32_scalar(scale), f32_scalar(bias)
    )


def _ring_forward(img, txt, scale, bias, axes, n):
    """Per shard: [b, E] x [b, E] -> (local loss sum, #correct i2t, #correct t2i) over n ring steps."""
    b = img.shape[0]
    me = jax.lax.axis_index(axes)
    perm = [(j, (j + 1) % n) for j in range(n)]
    rows = me * b + jnp.arange(b)

    def block(txt_k, src, pos_diag):
        logits = scale * dots(img, txt_k) + bias
        sg = jax.lax.stop_gradient(logits)
        return (
            _sigmoid_terms(logits, pos_diag),
            (jnp.max(sg, 1), jnp.argmax(sg, 1) + src * b),
            (jnp.max(sg, 0), jnp.argmax(sg, 0) + me * b),
        )

    loss, row_best, col_best = block(txt, me, True)

    def step(k, carry):
        txt_k, loss, row_best, col_best = carry
        # NOTE: the text chunk travels with its running t->i argmax; only one peer chunk is resident.
        txt_k, col_val, col_idx = jax.lax.ppermute((txt_k, *col_best), axes, perm)
        src = (me - k) % n
        l, (rv, ri), (cv, ci) = block(txt_k, src, False)
        row_best = _best_update(*row_best, rv, ri)
        col_best = _best_update(col_val, col_idx, cv, ci)
        return txt_k, loss + l, row_best, col_best

    _, loss, row_best, col_best = jax.lax.fori_loop(1, n, step, (txt, loss, row_best, col_best))
    held_src = (me + 1) % n  # after n - 1 hops a shard holds its successor's texts
    correct_i2t = jnp.sum(row_best[1] == rows).astype(jnp.float32)
    correct_t2i = jnp.sum(col_best[1] == held_src * b + jnp.arange(b)).astype(jnp.float32)
    return loss, correct_i2t, correct_t2i


def _ring_backward(img, txt, scale, bias, g, axes, n):
    """Per shard cotangents of the local loss sum: a second ring where dtxt travels with its chunk."""
    b = img.shape[0]
    perm = [(j, (j + 1) % n) for j in range(n)]
    imgf = img.astype(jnp.float32)

    def block(txt_k, pos_diag):
        d = dots(img, txt_k)
        logits = scale * d + bias
        z = 2.0 * jnp.eye(b, dtype=jnp.float32) - 1.0 if pos_diag else -1.0
        dl = -z * jax.nn.sigmoid(-z * logits) * g  # d(-log sigmoid(z l)) / dl
        d_img = scale * jnp.einsum("nm,me->ne", dl, txt_k.astype(jnp.float32), precision=_PRECISION)
        d_txt = scale * jnp.einsum("nm,ne->me", dl, imgf, precision=_PRECISION)
        return d_img, d_txt, jnp.sum(dl * d), jnp.sum(dl)

    d_img, d_txt, d_scale, d_bias = block(txt, True)

    def step(_, carry):
        txt_k, dtxt_k, d_img, d_scale, d_bias = carry
        txt_k, dtxt_k = jax.lax.ppermute((txt_k, dtxt_k), axes, perm)
        di, dt, ds, db = block(txt_k, False)
        return txt_k, dtxt_k + dt, d_img + di, d_scale + ds, d_bias + db

    _, d_txt, d_img, d_scale, d_bias = jax.lax.fori_loop(1, n, step, (txt, d_txt, d_img, d_scale, d_bias))
    d_txt = jax.lax.ppermute(d_txt, axes, perm)  # one more hop returns each dtxt to its owner
    return d_img.astype(img.dtype), d_txt.astype(txt.dtype), d_scale, d_bias


def _make_ring(axes, n):
    @jax.custom_vjp
    def ring(img, txt, scale, bias):
        return _ring_forward(img, txt, scale, bias, axes, n)

    def fwd(img, txt, scale, bias):
        return _ring_forward(img, txt, scale, bias, axes, n), (img, txt, scale, bias)

    def bwd(res, cts):
        g = cts[0]  # NOTE: the two accuracy counts carry no gradient.
        return _ring_backward(*res, g, axes, n)

    ring.defvjp(fwd, bwd)
    return ring


def sharded_sigmoid_ring(img, txt, scale, bias, mesh: Mesh, axes: Sequence[str] = BATCH_AXES, custom_grad: bool = True):
    """Global [B, E] x [B, E] x scalar x scalar -> (loss, metrics) == sigmoid_loss, ppermute ring.

    Each shard keeps its images and passes text chunks around the ring (n - 1 hops). With
    custom_grad (default) the backward is a second ring, so memory stays O(b * E) per shard; with
    custom_grad=False autodiff through ppermute is used, which is exact but saves every visited chunk.
    """
    axes, n = check_sharded_pair(img, txt, mesh, axes)
    batch = img.shape[0]
    ring = _make_ring(axes, n) if custom_grad else (lambda *a: _ring_forward(*a, axes=axes, n=n))

    def body(img_l, txt_l, scale, bias):
        scale = jax.lax.pcast(scale, axes, to="varying")
        bias = jax.lax.pcast(bias, axes, to="varying")
        loss, c_i2t, c_t2i = ring(img_l, txt_l, scale, bias)
        tot = jax.lax.psum(jnp.stack([loss, jax.lax.stop_gradient(c_i2t), jax.lax.stop_gradient(c_t2i)]), axes) / batch
        return tot[0], dict(i2t_acc=tot[1], t2i_acc=tot[2])

    return jax.shard_map(body, mesh=mesh, in_specs=(P(axes), P(axes), P(), P()), out_specs=(P(), P()))(
        img, txt, f32_scalar(scale), f32_scalar(bias)
    )


# ----------------------------------------------------------------------------- dispatcher

KINDS = ("softmax", "sigmoid")
SIGMOID_IMPLS = ("ring", "gather")


def contrastive_loss(
    kind: str,
    img,
    txt,
    scale,
    bias=None,
    *,
    mesh: Mesh | None = None,
    axes: Sequence[str] = BATCH_AXES,
    sigmoid_impl: str = "ring",
):
    """kind 'softmax' | 'sigmoid', [B, E] x [B, E] -> (loss, metrics); sharded iff the batch axes > 1."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of {KINDS}")
    if sigmoid_impl not in SIGMOID_IMPLS:
        raise ValueError(f"sigmoid_impl={sigmoid_impl!r} is not one of {SIGMOID_IMPLS}")
    if kind == "sigmoid" and bias is None:
        bias = jnp.zeros((), jnp.float32)
    if num_batch_shards(mesh, axes) == 1:
        return softmax_infonce(img, txt, scale) if kind == "softmax" else sigmoid_loss(img, txt, scale, bias)
    if kind == "softmax":
        return sharded_softmax_infonce(img, txt, scale, mesh, axes)
    fn = sharded_sigmoid_ring if sigmoid_impl == "ring" else sharded_sigmoid_gather
    return fn(img, txt, scale, bias, mesh, axes)
