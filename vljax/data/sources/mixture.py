"""Weighted mixtures of sources, each with its own transforms (LAVIS / big_vision style).

Each component is its own guarded, shuffled, repeated, host-sharded stream; `grain.MapDataset.mix`
interleaves them deterministically in proportion to the weights, so a mixture is random access and
its iterator state is checkpointable like any single source. Components must produce elements with
the same fields and shapes (end each transform chain with KeepFields).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import grain
import numpy as np

from vljax.data.pipeline import per_host_batch_size
from vljax.data.sources.bad_records import BadRecordPolicy
from vljax.data.sources.loader import make_map_dataset


@dataclasses.dataclass(frozen=True)
class Component:
    """One mixture member: a named source, its weight and its own transform chain."""

    name: str
    source: Any
    weight: float
    transforms: tuple[Any, ...] = ()

    def __post_init__(self):
        if not self.weight > 0:
            raise ValueError(f"mixture component {self.name!r}: weight must be > 0, got {self.weight}")


@dataclasses.dataclass(frozen=True)
class _TagSource(grain.transforms.Map):
    """Adds 'source_id' int32 [] so batches say which component each example came from."""

    source_id: int

    def map(self, element):
        """Tags element with its component index."""
        return {**element, "source_id": np.int32(self.source_id)}


def make_mixture(components: Sequence[Component], *, seed: int = 0, policy: BadRecordPolicy | None = None,
                 shard: tuple[int, int] | None = None) -> grain.MapDataset:
    """Components -> infinite MapDataset drawing from each in proportion to its weight (+ 'source_id')."""
    if not components:
        raise ValueError("components: a mixture needs at least one component")
    names = [c.name for c in components]
    if len(set(names)) != len(names):
        raise ValueError(f"components: duplicate names {names}")
    parts = [make_map_dataset(c.source, (*c.transforms, _TagSource(i)), name=c.name, seed=seed + 7919 * i,
                              policy=policy, shard=shard) for i, c in enumerate(components)]
    return grain.MapDataset.mix(parts, [c.weight for c in components])


def make_mixture_dataset(components: Sequence[Component], *, global_batch: int, seed: int = 0,
                         policy: BadRecordPolicy | None = None, shard: tuple[int, int] | None = None,
                         num_threads: int = 2, prefetch: int = 8) -> grain.IterDataset:
    """Components -> IterDataset of host batches (fixed shapes; 'source_id' int32 [B] says which source)."""
    ds = make_mixture(components, seed=seed, policy=policy, shard=shard)
    ds = ds.batch(per_host_batch_size(global_batch), drop_remainder=True)
    return ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch))
