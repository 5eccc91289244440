"""Mesh from config, logical-axis rules, sharded state creation, host <-> global arrays.

One mesh with axes ("data", "fsdp", "tensor"). Params and activations carry logical
names (see vljax/nn); a rules table (config.sharding.rules) maps names to mesh axes.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# NOTE: params shard their `embed` dim over fsdp (ZeRO-3 style); activations use the
# act_* names so that their feature dims stay replicated over fsdp while the batch is
# split over data x fsdp.
DEFAULT_RULES = (
    ("batch", BATCH_AXES),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("vocab", "tensor"),
    ("kv", None),
    ("length", None),
    ("act_embed", None),
    ("act_mlp", "tensor"),
    ("act_heads", "tensor"),
    ("act_kv", None),
    ("patch", None),
    ("pos", None),
    ("norm", None),
    ("classes", None),
    ("proj_in", "fsdp"),
    ("proj_out", None),
)


def mesh_shape(sizes: dict[str, int], num_devices: int) -> tuple[int, ...]:
    """{'data': -1, 'fsdp': 2, 'tensor': 1} -> concrete sizes whose product is num_devices."""
    shape = [int(sizes.get(a, 1)) for a in MESH_AXES]
    unknown = [i for i, s in enumerate(shape) if s == -1]
    if len(unknown) > 1:
        raise ValueError(f"mesh: at most one axis may be -1, got {dict(zip(MESH_AXES, shape))}")
    fixed = int(np.prod([s for s in shape if s != -1]))
    if any(s == 0 or s < -1 for s in shape):
        raise ValueError(f"mesh: axis sizes must be positive or -1, got {dict(zip(MESH_AXES, shape))}")
    if unknown:
        if num_devices % fixed:
            raise ValueError(f"mesh: {num_devices} devices not divisible by the fixed axes ({fixed})")
        shape[unknown[0]] = num_devices // fixed
    if int(np.prod(shape)) != num_devices:
        raise ValueError(f"mesh {dict(zip(MESH_AXES, shape))} needs {int(np.prod(shape))} devices, "
                         f"have {num_devices}")
    return tuple(shape)


def make_mesh(sizes: dict[str, int] | None = None, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """config.mesh -> Mesh over ('data', 'fsdp', 'tensor'); -1 takes the remaining devices."""
    devices = list(devices if devices is not None else jax.devices())
    shape = mesh_shape(dict(sizes or {"data": -1}), len(devices))
    try:
        # NOTE: create_device_mesh orders devices for the physical topology (ICI rings on TPU).
        arr = jax.experimental.mesh_utils.create_device_mesh(shape, devices=devices)
    except Exception:  # noqa: BLE001 - host platform or odd topologies: plain reshape
        arr = np.asarray(devices).reshape(shape)
    return Mesh(arr, MESH_AXES)


def rules_from_config(rules: Any) -> tuple[tuple[str, Any], ...]:
    """Config rules (list of [name, axis|list|None]) -> tuple form for flax."""
    if rules is None:
        return DEFAULT_RULES
    out = []
    for name, axes in rules:
        if isinstance(axes, list):
            axes = tuple(axes)
        out.append((name, axes))
    return tuple(out)


def logical_to_mesh_sharding(logical_specs: Any, mesh: Mesh, rules) -> Any:
    """Pytree of logical PartitionSpecs -> pytree of NamedShardings on mesh."""
    return nn.logical_to_mesh_sharding(logical_specs, mesh, rules)


def indivisible_params(boxed_params: Any, mesh: Mesh, rules) -> list[str]:
    """Boxed (abstract) params -> one line per param dim that its mesh axes do not divide evenly.

    jax would fail on the first of them inside the init with a shape and a spec but no param name; this names
    the param, its logical axis and the mesh axes, so the config key behind it (a width, a head count) is clear.
    """
    logical = nn.get_partition_spec(boxed_params)
    shardings = logical_to_mesh_sharding(logical, mesh, rules)
    flat_logical = jax.tree_util.tree_leaves_with_path(logical, is_leaf=lambda x: isinstance(x, P))
    shapes = jax.tree.leaves(nn.meta.unbox(boxed_params))
    out = []
    for (path, names), shape, sharding in zip(flat_logical, shapes, jax.tree.leaves(shardings)):
        for dim, (size, axes) in enumerate(zip(shape.shape, sharding.spec)):
            axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
            n = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
            if size % n:
                name = "/".join(str(getattr(k, "key", k)) for k in path)
                out.append(f"{name} {list(shape.shape)}: dim {dim} ('{names[dim]}', size {size}) is split over "
                           f"mesh axes {' x '.join(f'{a}={mesh.shape[a]}' for a in axes)} = {n}, which does not "
                           f"divide it")
    return out


def batch_sharding(mesh: Mesh, ndim: int = 1) -> NamedSharding:
    """Sharding of a [B, ...] batch array: B over data x fsdp, the rest replicated."""
    return NamedSharding(mesh, P(BATCH_AXES, *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
    """Fully replicated sharding on mesh."""
    return NamedSharding(mesh, P())


def batch_size_divisor(mesh: Mesh) -> int:
    """Number of batch shards (data x fsdp)."""
    return mesh.shape["data"] * mesh.shape["fsdp"]


def per_batch_shard(fn, *args, replicated: int = 0):
    """fn(*args) on each batch shard when the current mesh splits the batch, else fn(*args) as is.

    args [B, ...] (the last `replicated` of them passed whole to every shard) -> fn's outputs, each [B, ...]
    sharded like the first arg. For kernels: XLA does not partition a custom call, so called on global
    arrays under a mesh whose batch axes ('data', 'fsdp') hold more than one shard, a kernel would gather
    the whole batch onto every device; under shard_map it runs on the local rows. Runs fn as is without
    such a mesh, inside a shard_map that already made those axes manual, or when the shards do not divide B.
    """
    mesh = jax.sharding.get_abstract_mesh()
    manual = set(getattr(mesh, "manual_axes", ()))
    axes = tuple(a for a in BATCH_AXES if a in mesh.axis_names and a not in manual and mesh.shape[a] > 1)
    shards = int(np.prod([mesh.shape[a] for a in axes]))
    if not axes or args[0].shape[0] % shards:
        return fn(*args)
    n = len(args) - replicated
    # NOTE: check_vma=False: the interpreter that runs Pallas kernels off-GPU does not track varying axes;
    # the outputs are per row of the sharded args, so sharded over the same axes (out_specs).
    return jax.shard_map(
        fn, in_specs=(P(axes),) * n + (P(),) * replicated, out_specs=P(axes), check_vma=False
    )(*args)


def host_to_global(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Per-host batch {k: [B_local, ...]} -> global arrays {k: [B_global, ...]} sharded over the batch axes."""
    out = {}
    for k, v in batch.items():
        v = np.asarray(v)
        out[k] = jax.make_array_from_process_local_data(batch_sharding(mesh, v.ndim), v)
    return out


def maybe_initialize_distributed() -> bool:
    """Calls jax.distributed.initialize when launched multi-process (SLURM, TPU pod, or explicit env)."""
    explicit = "JAX_COORDINATOR_ADDRESS" in os.environ or "VLJAX_COORDINATOR" in os.environ
    slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1
    tpu_pod = "TPU_WORKER_HOSTNAMES" in os.environ and "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")
    if not (explicit or slurm or tpu_pod):
        return False
    if jax.distributed.is_initialized():
        return True
    kwargs = {}
    if "VLJAX_COORDINATOR" in os.environ:
        kwargs = dict(coordinator_address=os.environ["VLJAX_COORDINATOR"],
                      num_processes=int(os.environ["VLJAX_NUM_PROCESSES"]),
                      process_id=int(os.environ["VLJAX_PROCESS_ID"]))
    cpu_only = os.environ.get("JAX_PLATFORMS", "").strip().lower() == "cpu"
    if cpu_only and "JAX_CPU_COLLECTIVES_IMPLEMENTATION" not in os.environ:
        # NOTE: CPU-only processes (tests, debugging a launch on one machine) have no cross-process collectives
        # unless one is chosen; gloo ships with jaxlib.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    logging.info("jax.distributed.initialize(%s)", kwargs or "auto-detected cluster")
    jax.distributed.initialize(**kwargs)
    return True
