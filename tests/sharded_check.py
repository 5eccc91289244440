"""Shared helpers for "sharded == single device" tests: identical params on every mesh, and the comparison.

A new method gets its sharded test with one call (its config and a host batch of its data_spec's keys):

    from sharded_check import TWO_TOWER_SMALL, check_method_sharded, two_tower_batch
    def test_my_method_sharded_equals_single_device():
        cfg = load_config("configs/my_method.py:tiny", list(TWO_TOWER_SMALL))
        check_method_sharded(cfg, two_tower_batch(), vocab_size=40)

(a method with other inputs builds its own host batch: a dict of numpy arrays, the keys its loss reads).

Tolerance (float32): loss 2e-5 relative; gradients 1e-4 of the reference's largest entry, i.e. the
round-off of reductions reordered across shards.
"""

import flax.linen as nn
import jax
import numpy as np

from vljax import sharding as shard_lib
from vljax.methods import get_method

# NOTE: the meshes every method is checked on (8 forced CPU devices, tests/conftest.py).
MESHES = ({"data": 8}, {"data": 1, "fsdp": 8}, {"data": 2, "fsdp": 2, "tensor": 2})


def numpy_params(boxed, mesh, rules, seed: int = 0, scale: float = 0.2, scalar: float = 2.0):
    """Abstract boxed params -> params filled from numpy N(0, scale^2), placed by their logical axis names.

    The values are identical on every mesh (no RNG-init compile); the placement is what
    create_sharded_state would give. Scalars (a learned log temperature, a logit bias) get `scalar` instead:
    a log temperature near 0 would leave the logits nearly flat, where a loss variant barely moves the loss.
    Call it outside jax.set_mesh (it places concrete arrays on the mesh's devices).
    """
    shardings = shard_lib.logical_to_mesh_sharding(nn.get_partition_spec(boxed), mesh, rules)
    rng = np.random.default_rng(seed)
    fill = lambda s: np.full(s.shape, scalar) if s.ndim == 0 else rng.normal(0.0, scale, s.shape)
    return jax.tree.map(lambda s, sh: jax.device_put(fill(s).astype(s.dtype), sh), nn.meta.unbox(boxed), shardings)


# NOTE: two-tower dims every test mesh divides (8-way fsdp, 2-way tensor): widths 48 / 16, 2 heads, MLP 64, 32 px
# images, 8 text tokens. `vljax train` presets (tiny: 3 heads, width 96) do not all split over tensor=2.
TWO_TOWER_SMALL = (
    "--config.data.world.resolution=32", "--config.data.max_len=8", "--config.model.image.width=48",
    "--config.model.image.depth=1", "--config.model.image.num_heads=2", "--config.model.image.mlp_dim=64",
    "--config.model.text.width=48", "--config.model.text.depth=1", "--config.model.text.num_heads=2",
    "--config.model.text.mlp_dim=64", "--config.model.embed_dim=16",
)


def two_tower_batch(n: int = 16, resolution: int = 32, length: int = 8, vocab_size: int = 40, seed: int = 1) -> dict:
    """A host batch for two-tower methods: uint8 images [n, r, r, 3], int32 text [n, length] (last 2 tokens pad)."""
    rng = np.random.default_rng(seed)
    batch = {"image": rng.integers(0, 255, size=(n, resolution, resolution, 3), dtype=np.uint8),
             "text": rng.integers(3, vocab_size, size=(n, length)).astype(np.int32)}
    batch["text"][:, length - 2:] = 0  # padding
    return batch


def assert_matches(ref, got, label) -> None:
    """(loss, grads) of a sharded run vs the single-device (loss, grads)."""
    ref_loss, ref_grads = ref
    loss, grads = got
    assert abs(loss - ref_loss) <= 2e-5 * abs(ref_loss), (label, loss, ref_loss)
    gmax = max(float(np.abs(g).max()) for g in jax.tree.leaves(ref_grads))
    for (path, rg), g in zip(jax.tree_util.tree_leaves_with_path(ref_grads), jax.tree.leaves(grads)):
        np.testing.assert_allclose(g, rg, atol=1e-4 * gmax, rtol=0, err_msg=f"{label} {path}")


def method_loss_and_grads(cfg, batch: dict, vocab_size: int, mesh_sizes: dict, devices) -> tuple[float, dict]:
    """config.method's loss on a mesh of `devices` -> (loss, grads as numpy).

    batch: a host batch (dict of numpy arrays, the keys the method's loss reads), made global on the mesh as the
    trainer does. Params come from numpy_params, so every mesh sees the same values, placed by their logical axes.
    """
    method = get_method(cfg.method)
    mesh = shard_lib.make_mesh(mesh_sizes, devices)
    rules = shard_lib.rules_from_config(cfg.sharding.rules)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        model = method.build(cfg, vocab_size=vocab_size)
        boxed = jax.eval_shape(lambda r: method.init_params(model, cfg, r), jax.random.key(0))
    params = numpy_params(boxed, mesh, rules)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        loss_fn = method.make_loss(model, cfg, mesh)
        gb = shard_lib.host_to_global(batch, mesh)
        loss, grads = jax.jit(jax.value_and_grad(lambda p, b: loss_fn(p, b, jax.random.key(1))[0]))(params, gb)
    return float(loss), jax.tree.map(np.asarray, grads)


def check_method_sharded(cfg, batch: dict, vocab_size: int, meshes=MESHES) -> None:
    """Asserts that config.method's loss and gradients on each 8-device mesh equal those on one device."""
    ref = method_loss_and_grads(cfg, batch, vocab_size, {"data": 1}, jax.devices()[:1])
    for sizes in meshes:
        assert_matches(ref, method_loss_and_grads(cfg, batch, vocab_size, sizes, jax.devices()), sizes)
