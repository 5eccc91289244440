"""Sharded CLIP / SigLIP training steps equal the single-device step (loss and gradients).

Two-tower models with the ViT image tower (CLIP, SigLIP) and with CLIP's ResNet (conv kernels sharded
over fsdp x tensor, GroupNorm per example).

Meshes on 8 forced CPU devices (tests/sharded_check.MESHES): data-parallel 8, FSDP 8, and data 2 x fsdp 2 x
tensor 2. Tolerance (tests/sharded_check.assert_matches): float32, 2e-5 relative on the loss and 1e-4 relative
(of the global max) on gradients, i.e. the round-off of reordered reductions across shards.
"""
import pytest

from sharded_check import TWO_TOWER_SMALL, check_method_sharded, two_tower_batch

from vljax.config import load_config

VOCAB = 40


def _setup(method_name, preset="tiny"):
    overrides = list(TWO_TOWER_SMALL)
    if preset == "tiny_resnet":
        # NOTE: width 16 keeps every sharded conv dim (8 channels and up) divisible by the 8-way fsdp axis.
        overrides += ["--config.model.image.width=16", "--config.model.image.layers=(1, 1)",
                      "--config.model.image.output_dim=16"]
        overrides.remove("--config.model.image.depth=1")
        overrides.remove("--config.model.image.mlp_dim=64")
    return load_config(f"configs/{method_name}.py:{preset}", overrides), two_tower_batch(vocab_size=VOCAB)


@pytest.mark.parametrize("method_name,preset", [("clip", "tiny"), ("siglip", "tiny"), ("clip", "tiny_resnet")])
def test_sharded_equals_single_device(method_name, preset):
    cfg, batch = _setup(method_name, preset)
    check_method_sharded(cfg, batch, VOCAB)


_COMPILE_STEP = """
import flax.linen as nn, jax, numpy as np
from vljax import sharding as shard_lib
from vljax.config import load_config
from vljax.train import loop
cfg = load_config("configs/clip.py:tiny", ["--config.data.world.resolution=32", "--config.data.max_len=16",
                                           "--config.train.batch_size=16", "--config.mesh.data=4",
                                           "--config.mesh.fsdp=2"])
exp = loop.Experiment(cfg, "unused")
state, shardings = exp.abstract_state()
batch = {"image": np.zeros((16, 32, 32, 3), np.uint8), "text": np.ones((16, 16), np.int32)}
with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):  # NOTE: as the trainer runs the step
    gb = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                      shard_lib.host_to_global(batch, exp.mesh))
    exp.jit_step(shardings).lower(state, gb).compile()
print("compiled")
"""


def test_train_step_on_a_data_x_fsdp_mesh_needs_no_full_rematerialization():
    """The compiled step of `vljax train` on data 4 x fsdp 2: XLA's partitioner warns when it must replicate a
    whole tensor to reshard it; the token embedding's lookup did so (its gradient, batch rows -> table columns
    split over fsdp) before its table was gathered over fsdp first (vljax.nn.embeddings.TokenEmbed). In a
    subprocess: the suite's environment mutes XLA's warnings (TF_CPP_MIN_LOG_LEVEL=3, tests/conftest.py)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0", JAX_COMPILATION_CACHE_DIR="")
    out = subprocess.run([sys.executable, "-c", _COMPILE_STEP], env=env, capture_output=True, text=True, timeout=300)
    assert "compiled" in out.stdout, out.stderr[-2000:]
    assert "Involuntary full rematerialization" not in out.stderr
