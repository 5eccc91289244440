"""Per-device temp memory of value_and_grad for the sigmoid loss: all_gather vs ppermute ring.

Usage: python benchmarks/contrastive_memory.py [--per_device_batch 1024] [--dim 768]
Prints compiled `memory_analysis().temp_size_in_bytes` (per device) for 1, 2, 4, 8 host devices.
"""

import argparse
import os

# NOTE: must be set before jax is imported; host devices stand in for accelerators.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

from vljax.losses import contrastive as C  # noqa: E402

VARIANTS = {
    "gather": lambda i, t, s, b, m: C.sharded_sigmoid_gather(i, t, s, b, m, axes=("data",)),
    "ring": lambda i, t, s, b, m: C.sharded_sigmoid_ring(i, t, s, b, m, axes=("data",)),
    "ring_autodiff": lambda i, t, s, b, m: C.sharded_sigmoid_ring(i, t, s, b, m, axes=("data",), custom_grad=False),
}


def temp_bytes(variant: str, n: int, per_device_batch: int, dim: int) -> int:
    """-> compiled temp bytes per device of value_and_grad(loss) w.r.t. (img, txt, scale, bias)."""
    mesh = Mesh(np.array(jax.devices()[:n]), ("data",))
    spec = jax.ShapeDtypeStruct((n * per_device_batch, dim), jnp.float32, sharding=NamedSharding(mesh, P("data")))
    scalar = jax.ShapeDtypeStruct((), jnp.float32, sharding=NamedSharding(mesh, P()))
    fn = VARIANTS[variant]
    step = jax.jit(jax.value_and_grad(lambda i, t, s, b: fn(i, t, s, b, mesh)[0], (0, 1, 2, 3)))
    compiled = step.lower(spec, spec, scalar, scalar).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per_device_batch", type=int, default=1024)
    parser.add_argument("--dim", type=int, default=768)
    args = parser.parse_args()
    counts = [n for n in (1, 2, 4, 8) if n <= len(jax.devices())]
    print(f"per-device batch {args.per_device_batch}, dim {args.dim}, float32; temp_size_in_bytes per device (MiB)")
    print(f"{'devices':>8} {'global B':>9} " + " ".join(f"{v:>14}" for v in VARIANTS))
    for n in counts:
        row = [temp_bytes(v, n, args.per_device_batch, args.dim) / 2**20 for v in VARIANTS]
        print(f"{n:>8} {n * args.per_device_batch:>9} " + " ".join(f"{r:>14.2f}" for r in row))


if __name__ == "__main__":
    main()
