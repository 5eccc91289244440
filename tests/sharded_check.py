"""Shared helpers for "sharded == single device" tests: identical params on every mesh, and the comparison.

Tolerance (float32): loss 2e-5 relative; gradients 1e-4 of the reference's largest entry, i.e. the
round-off of reductions reordered across shards.
"""

import flax.linen as nn
import jax
import numpy as np

from vljax import sharding as shard_lib


def numpy_params(boxed, mesh, rules, seed: int = 0, scale: float = 0.2):
    """Abstract boxed params -> params filled from numpy N(0, scale^2), placed by their logical axis names.

    The values are identical on every mesh (no RNG-init compile); the placement is what
    create_sharded_state would give.
    """
    shardings = shard_lib.logical_to_mesh_sharding(nn.get_partition_spec(boxed), mesh, rules)
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s, sh: jax.device_put(rng.normal(0.0, scale, s.shape).astype(s.dtype), sh),
        nn.meta.unbox(boxed),
        shardings,
    )


def assert_matches(ref, got, label) -> None:
    """(loss, grads) of a sharded run vs the single-device (loss, grads)."""
    ref_loss, ref_grads = ref
    loss, grads = got
    assert abs(loss - ref_loss) <= 2e-5 * abs(ref_loss), (label, loss, ref_loss)
    gmax = max(float(np.abs(g).max()) for g in jax.tree.leaves(ref_grads))
    for (path, rg), g in zip(jax.tree_util.tree_leaves_with_path(ref_grads), jax.tree.leaves(grads)):
        np.testing.assert_allclose(g, rg, atol=1e-4 * gmax, rtol=0, err_msg=f"{label} {path}")
