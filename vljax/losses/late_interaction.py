"""FILIP loss: symmetric InfoNCE over the two late-interaction score matrices, local or sharded.

i2t rows (image -> all texts) use the image-to-text scores, t2i columns (text -> all images) use the
text-to-image scores; both matrices are indexed [image, text] and the positives lie on the diagonal.
"""

import jax
import jax.numpy as jnp
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P

from vljax.kernels import tiling as tiles
from vljax.kernels.late_interaction import late_interaction
from vljax.losses.contrastive import batch_shards, ce_rows
from vljax.sharding import BATCH_AXES


def filip_loss_from_scores(i2t, t2i, scale):
    """[B, B] i2t x [B, B] t2i (both [image, text]) x scalar -> scalar (L_i2t + L_t2i) / 2."""
    b = i2t.shape[0]
    diag = jnp.arange(b)
    l_i2t = jnp.mean(ce_rows(scale * i2t, diag))
    l_t2i = jnp.mean(ce_rows(scale * t2i.T, diag))
    return 0.5 * (l_i2t + l_t2i)


def _sharded_loss(v, t, mv, mt, scale, axes, impl):
    """Per-device body: local images vs all-gathered texts; the t2i column softmax spans devices."""
    b = v.shape[0]
    t_all = jax.lax.all_gather(t, axes, axis=0, tiled=True)
    mt_all = jax.lax.all_gather(mt, axes, axis=0, tiled=True)
    big_b = t_all.shape[0]
    i2t, t2i = late_interaction(v, t_all, mv, mt_all, impl=impl)  # [b, B] each
    offset = jax.lax.axis_index(axes) * b
    rows = jnp.arange(b)
    positive = offset + rows
    loss_i2t = jnp.sum(ce_rows(scale * i2t, positive))
    # NOTE: the column logsumexp over images is split across devices: a global max (stop_gradient: the
    # LSE does not depend on it, and pmax has no derivative) then a psum of the shifted exponentials.
    logits = scale * t2i
    col_max = jax.lax.pmax(jax.lax.stop_gradient(jnp.max(logits, axis=0)), axes)
    col_lse = jnp.log(jax.lax.psum(jnp.sum(jnp.exp(logits - col_max), axis=0), axes)) + col_max  # [B]
    # NOTE: col_lse is replicated; each device counts only the columns of its own texts.
    own_lse = jax.lax.dynamic_slice_in_dim(col_lse, offset, b)
    loss_t2i = jnp.sum(own_lse - logits[rows, positive])
    return 0.5 * jax.lax.psum(loss_i2t + loss_t2i, axes) / big_b


def filip_loss(v, t, mv=None, mt=None, scale=1.0, mesh=None, axes=BATCH_AXES, impl="auto"):
    """[B, Nv, D] x [B, Nt, D] (masks [B, Nv], [B, Nt]) x scalar scale -> scalar symmetric FILIP InfoNCE."""
    if v.shape[0] != t.shape[0]:
        raise ValueError(f"v and t must hold the same number of pairs, got {v.shape[0]} and {t.shape[0]}")
    mv = jnp.ones(v.shape[:2], bool) if mv is None else mv
    mt = jnp.ones(t.shape[:2], bool) if mt is None else mt
    scale = jnp.asarray(scale, jnp.float32)
    if mesh is None:
        i2t, t2i = late_interaction(v, t, mv, mt, impl=impl)
        return filip_loss_from_scores(i2t, t2i, scale)
    axes, _ = batch_shards(v.shape[0], mesh, axes)
    batch = P(axes)
    body = lambda v, t, mv, mt, s: _sharded_loss(v, t, mv, mt, s, axes, impl)
    # NOTE: jax 0.10's Pallas interpreter drops varying-axis types inside its grid loop, so the CPU
    # interpret path runs without the vma check; compiled kernels keep it (their outputs carry the type).
    check_vma = not (impl == "pallas" and tiles.backend() != "gpu")
    sharded = jax.shard_map(
        body, mesh=mesh, in_specs=(batch, batch, batch, batch, P()), out_specs=P(), check_vma=check_vma
    )
    if any(mesh.axis_types[mesh.axis_names.index(a)] == AxisType.Explicit for a in axes):
        # NOTE: explicit-sharding meshes type-check shardings: put the batch on its spec (the caller holds
        # the mesh via jax.set_mesh, as explicit sharding requires).
        v, t, mv, mt = (jax.reshard(x, batch) for x in (v, t, mv, mt))
        return sharded(v, t, mv, mt, jax.reshard(scale, P()))
    # NOTE: jit lets auto-sharding meshes reshard the inputs to the batch spec instead of the caller.
    return jax.jit(sharded)(v, t, mv, mt, scale)
