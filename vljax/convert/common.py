"""Shared conversion machinery: lazy tensor sources, name/layout rules, sharded leaf-by-leaf loading.

A converter describes each vljax param as an `Entry`: the source tensor names it is built from
and a numpy function that turns those tensors into the vljax layout. `load_params` then reads one
tensor at a time, checks its shape against the model's abstract params and places it directly
with the param's logical sharding, so a large checkpoint is never assembled on one device.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from vljax import sharding as shard_lib
from vljax.nn.dtypes import DTYPES  # noqa: F401 - re-exported for the converters


class ConversionError(ValueError):
    """A checkpoint that cannot be converted exactly (missing, extra or mis-shaped tensors)."""


class TensorSource(Protocol):
    """Named tensors read lazily, one at a time."""

    def names(self) -> list[str]:
        """-> all tensor names."""

    def get(self, name: str) -> np.ndarray:
        """name -> the tensor as numpy (read on demand)."""


class SafetensorsSource:
    """A Hugging Face folder's *.safetensors shards, opened with `safe_open` and read per tensor."""

    def __init__(self, folder: str | Path):
        from safetensors import safe_open

        folder = Path(folder)
        files = sorted(folder.glob("*.safetensors"))
        if not files:
            raise ConversionError(
                f"no *.safetensors files in {folder} (pytorch_model.bin is not supported; "
                "re-save with safe_serialization=True)"
            )
        self._handles = [safe_open(str(f), framework="numpy") for f in files]
        self._where = {}
        for handle in self._handles:
            for name in handle.keys():
                self._where[name] = handle

    def names(self) -> list[str]:
        """-> all tensor names across shards."""
        return list(self._where)

    def get(self, name: str) -> np.ndarray:
        """name -> numpy array (bf16 as ml_dtypes.bfloat16)."""
        return self._where[name].get_tensor(name)


class MappingSource:
    """Tensors from an in-memory or lazily indexed mapping (npz file, torch state dict)."""

    def __init__(self, tensors: Mapping[str, Any], to_numpy: Callable[[Any], np.ndarray] = np.asarray):
        self._tensors = tensors
        self._to_numpy = to_numpy

    def names(self) -> list[str]:
        """-> all tensor names."""
        return list(self._tensors.keys())

    def get(self, name: str) -> np.ndarray:
        """name -> numpy array."""
        return self._to_numpy(self._tensors[name])


@dataclasses.dataclass(frozen=True)
class Entry:
    """One vljax param built from source tensors `names` by `fn(*tensors)`."""

    names: tuple[str, ...]
    fn: Callable[..., np.ndarray] = lambda x: x


@dataclasses.dataclass(frozen=True)
class Layout:
    """A reversible per-tensor layout change: `to_vljax(source)` and `to_source(vljax)`."""

    to_vljax: Callable[[np.ndarray], np.ndarray]
    to_source: Callable[[np.ndarray], np.ndarray]


IDENTITY = Layout(lambda x: x, lambda x: x)
# NOTE: torch Linear stores [out, in]; a flax kernel is [in, out].
LINEAR = Layout(lambda w: w.T, lambda k: k.T)


def heads_in(heads: int, head_dim: int) -> Layout:
    """[H*K, D] torch projection <-> [D, H, K] vljax query/key/value kernel."""
    return Layout(
        lambda w: w.T.reshape(w.shape[1], heads, head_dim), lambda k: k.reshape(k.shape[0], heads * head_dim).T
    )


def heads_bias(heads: int, head_dim: int) -> Layout:
    """[H*K] <-> [H, K] projection bias."""
    return Layout(lambda b: b.reshape(heads, head_dim), lambda b: b.reshape(heads * head_dim))


def heads_out(heads: int, head_dim: int) -> Layout:
    """[D, H*K] torch output projection <-> [H, K, D] vljax out kernel."""
    return Layout(
        lambda w: w.T.reshape(heads, head_dim, w.shape[0]), lambda k: k.reshape(heads * head_dim, k.shape[-1]).T
    )


def conv_patch(patch: Sequence[int], channels: int = 3) -> Layout:
    """[D, C, ph, pw] torch conv weight <-> [ph*pw*C, D] vljax patch-embedding kernel."""
    # NOTE: vljax patchifies as (ph pw c) row-major then applies a dense.
    ph, pw = patch
    return Layout(
        lambda w: w.transpose(2, 3, 1, 0).reshape(ph * pw * channels, w.shape[0]),
        lambda k: k.reshape(ph, pw, channels, k.shape[-1]).transpose(3, 2, 0, 1),
    )


Rule = tuple[str, str, Layout]  # (vljax path, source name, layout)


def entries_from_rules(rules: Iterable[Rule]) -> dict[str, Entry]:
    """[(vljax path, source name, layout)] -> {vljax path: Entry}."""
    return {path: Entry((name,), layout.to_vljax) for path, name, layout in rules}


def export_rules(rules: Iterable[Rule], flat_params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """[(vljax path, source name, layout)] x flat vljax params -> {source name: tensor}."""
    out = {}
    for path, name, layout in rules:
        if path not in flat_params:
            raise ConversionError(f"vljax param {path} is missing (needed for {name})")
        out[name] = np.asarray(layout.to_source(np.asarray(flat_params[path])), order="C")
    return out


def flatten(params: Any) -> dict[str, Any]:
    """Nested param dict -> {'a/b/c': leaf}."""
    return traverse_util.flatten_dict(nn.meta.unbox(params), sep="/")


def unflatten(flat: Mapping[str, Any]) -> dict:
    """{'a/b/c': leaf} -> nested param dict."""
    return traverse_util.unflatten_dict(dict(flat), sep="/")


def abstract_params(init_fn: Callable[[jax.Array], Any], mesh, rules=None):
    """init_fn(rng) -> boxed params  =>  ({path: ShapeDtypeStruct}, {path: NamedSharding})."""
    rules = rules if rules is not None else shard_lib.DEFAULT_RULES
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        boxed = jax.eval_shape(init_fn, jax.random.key(0))
        specs = nn.get_partition_spec(boxed)
        shardings = nn.logical_to_mesh_sharding(specs, mesh, rules)
    shapes = flatten(boxed)
    flat_shardings = traverse_util.flatten_dict(shardings, sep="/")
    return shapes, {p: _divisible(s, shapes[p].shape) for p, s in flat_shardings.items()}


def _divisible(sharding, shape):
    """NamedSharding -> same, with mesh axes dropped from dims they do not divide (e.g. vocab 50257)."""
    spec = list(sharding.spec) + [None] * (len(shape) - len(sharding.spec))
    for dim, axes in enumerate(spec):
        names = (axes,) if isinstance(axes, str) else tuple(axes or ())
        ways = int(np.prod([sharding.mesh.shape[a] for a in names])) if names else 1
        if shape[dim] % ways:
            spec[dim] = None
    return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec(*spec))


def _fmt(shape) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def put_sharded(value: np.ndarray, sharding, dtype=None) -> jax.Array:
    """Host array -> global jax.Array laid out by `sharding`; each device receives only its slice."""
    if dtype is not None and jnp.issubdtype(value.dtype, jnp.floating):
        value = value.astype(dtype)
    return jax.make_array_from_callback(value.shape, sharding, lambda idx: value[idx])


def load_params(
    entries: Mapping[str, Entry],
    source: TensorSource,
    shapes: Mapping[str, Any],
    shardings: Mapping[str, Any],
    *,
    dtype: str | None = "float32",
    ignore: Sequence[str] = (),
    prefixes: Sequence[str] | None = None,
    what: str = "checkpoint",
) -> dict:
    """Entries + source -> nested sharded params, or ConversionError naming every gap (never partial).

    `prefixes` restricts the load to vljax paths under them (e.g. ('img_tower', 'img_proj')); the
    check that every source tensor is consumed applies to full loads only. `ignore` are regexes of
    source names that carry no parameters (buffers such as position ids).
    """
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not one of {sorted(DTYPES)}")
    want = [p for p in shapes if prefixes is None or any(p == q or p.startswith(q + "/") for q in prefixes)]
    if not want:
        raise ConversionError(f"no vljax params under {list(prefixes or [])}")
    unmapped = [p for p in want if p not in entries]
    if unmapped:
        raise ConversionError(f"{len(unmapped)} vljax params have no source in the {what} mapping: {unmapped[:8]}")
    available = set(source.names())
    missing = [(n, p) for p in want for n in entries[p].names if n not in available]
    if missing:
        listed = ", ".join(f"{n} (for vljax {p})" for n, p in missing[:8])
        raise ConversionError(f"{what} lacks {len(missing)} tensors: {listed}")
    if prefixes is None:
        used = {n for p in want for n in entries[p].names}
        extra = sorted(n for n in available - used if not any(re.fullmatch(g, n) for g in ignore))
        if extra:
            raise ConversionError(
                f"{what} has {len(extra)} tensors the mapping does not use (refusing a partial "
                f"load; unsupported variant?): {extra[:8]}"
            )
    target = DTYPES[dtype] if dtype is not None else None
    out = {}
    for path in want:
        entry = entries[path]
        tensors = [source.get(n) for n in entry.names]
        src = ", ".join(f"{n} {_fmt(t.shape)}" for n, t in zip(entry.names, tensors))
        try:
            value = np.asarray(entry.fn(*tensors))
        except ValueError as e:
            raise ConversionError(
                f"tensor {src} -> vljax {path}: expected shape {_fmt(shapes[path].shape)} ({e})"
            ) from e
        if tuple(value.shape) != tuple(shapes[path].shape):
            raise ConversionError(
                f"tensor {src} -> vljax {path}: expected shape {_fmt(shapes[path].shape)}, got {_fmt(value.shape)}"
            )
        out[path] = put_sharded(value, shardings[path], target)
    return unflatten(out)


def read_json(path: str | Path) -> dict:
    """JSON file -> dict, with a clear error when it is absent."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path} not found")
    return json.loads(path.read_text())


def host_params(params: Any) -> dict[str, np.ndarray]:
    """Nested (sharded) params -> {'a/b/c': numpy array} gathered to this host (for export)."""
    return {k: np.asarray(jax.device_get(v)) for k, v in flatten(params).items()}


def packed_qkv_entries(ours: str, weight: str, bias: str, width: int, heads: int) -> dict[str, Entry]:
    """torch MultiheadAttention in_proj [3D, D] + [3D] (q, k, v rows) -> vljax attn `ours` q/k/v entries."""
    head_dim = width // heads
    out = {}
    for i, proj in enumerate(("query", "key", "value")):
        rows = slice(i * width, (i + 1) * width)
        out[f"{ours}/{proj}_kernel"] = Entry((weight,), lambda w, r=rows: w[r].T.reshape(width, heads, head_dim))
        out[f"{ours}/{proj}_bias"] = Entry((bias,), lambda b, r=rows: b[r].reshape(heads, head_dim))
    return out


def pack_qkv(flat: Mapping[str, np.ndarray], ours: str, width: int) -> tuple[np.ndarray, np.ndarray]:
    """vljax attn `ours` q/k/v params -> torch in_proj ([3D, D] weight, [3D] bias)."""
    names = ("query", "key", "value")
    weight = np.concatenate([np.asarray(flat[f"{ours}/{n}_kernel"]).reshape(width, -1).T for n in names])
    bias = np.concatenate([np.asarray(flat[f"{ours}/{n}_bias"]).reshape(-1) for n in names])
    return weight, bias
