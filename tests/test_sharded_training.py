"""Sharded CLIP / SigLIP training steps equal the single-device step (loss and gradients).

Two-tower models with the ViT image tower (CLIP, SigLIP) and with CLIP's ResNet (conv kernels sharded
over fsdp x tensor, GroupNorm per example).

Meshes on 8 forced CPU devices: data-parallel 8, FSDP 8, and data 2 x fsdp 2 x tensor 2.
Tolerance (tests/sharded_check.assert_matches): float32, 2e-5 relative on the loss and 1e-4 relative
(of the global max) on gradients, i.e. the round-off of reordered reductions across shards.
"""
import flax.linen as nn
import jax
import numpy as np
import pytest

from sharded_check import assert_matches

from vljax import sharding as shard_lib
from vljax.config import load_config
from vljax.methods import get_method
from vljax.train.state import abstract_sharded_state, create_sharded_state

MESHES = [{"data": 8}, {"data": 1, "fsdp": 8}, {"data": 2, "fsdp": 2, "tensor": 2}]
VOCAB = 40


def _setup(method_name, preset="tiny"):
    image = ["--config.model.image.width=48", "--config.model.image.depth=1", "--config.model.image.num_heads=2",
             "--config.model.image.mlp_dim=64"]
    if preset == "tiny_resnet":
        # NOTE: width 16 keeps every sharded conv dim (8 channels and up) divisible by the 8-way fsdp axis.
        image = ["--config.model.image.width=16", "--config.model.image.layers=(1, 1)",
                 "--config.model.image.num_heads=2", "--config.model.image.output_dim=16"]
    cfg = load_config(f"configs/{method_name}.py:{preset}", [
        "--config.data.world.resolution=32", "--config.data.max_len=8", *image,
        "--config.model.text.width=48", "--config.model.text.depth=1",
        "--config.model.text.num_heads=2", "--config.model.text.mlp_dim=64", "--config.model.embed_dim=16"])
    rng = np.random.default_rng(1)
    batch = {"image": rng.integers(0, 255, size=(16, 32, 32, 3), dtype=np.uint8),
             "text": rng.integers(3, VOCAB, size=(16, 8)).astype(np.int32)}
    batch["text"][:, 6:] = 0  # padding
    return cfg, batch


def _loss_and_grads(method_name, mesh_sizes, devices, preset="tiny", params=None):
    """-> (loss, grads, params) on a mesh of `devices`; `params` (from a previous call) are resharded onto it.

    NOTE: the state is created (create_sharded_state) once, on one device; the other meshes get those values
    resharded to their shardings. Creating it on every mesh compiled the init (a threefry hash per leaf) four
    times, 7 s each for the ResNet on 2 cores; every trainer test creates its state sharded on 8 devices, and
    tests/test_models.py checks an init placed that way against one device.
    """
    import optax

    cfg, batch = _setup(method_name, preset)
    method = get_method(method_name)
    mesh = shard_lib.make_mesh(mesh_sizes, devices)
    rules = shard_lib.rules_from_config(cfg.sharding.rules)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        model = method.build(cfg, vocab_size=VOCAB)
        init = lambda r: method.init_params(model, cfg, r)
        if params is None:
            params = create_sharded_state(init, optax.sgd(0.0), jax.random.key(0), mesh, rules)[0].params
        else:
            shardings = abstract_sharded_state(init, optax.sgd(0.0), jax.random.key(0), mesh, rules)[1]
            params = jax.device_put(params, shardings.params)
        loss_fn = method.make_loss(model, cfg, mesh)
        gb = shard_lib.host_to_global(batch, mesh)
        f = jax.jit(jax.value_and_grad(lambda p, b: loss_fn(p, b, jax.random.key(1))[0]))
        loss, grads = f(params, gb)
    return float(loss), jax.tree.map(np.asarray, grads), params


@pytest.mark.parametrize("method_name,preset", [("clip", "tiny"), ("siglip", "tiny"), ("clip", "tiny_resnet")])
def test_sharded_equals_single_device(method_name, preset):
    ref_loss, ref_grads, params = _loss_and_grads(method_name, {"data": 1}, jax.devices()[:1], preset)
    for sizes in MESHES:
        loss, grads, sharded = _loss_and_grads(method_name, sizes, jax.devices(), preset, params)
        assert jax.tree.leaves(sharded)[0].sharding.mesh.size == 8
        assert_matches((ref_loss, ref_grads), (loss, grads), sizes)
