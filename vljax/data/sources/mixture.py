"""Weighted mixtures of sources, each with its own transforms (LAVIS / big_vision style).

Each component is its own guarded, shuffled, repeated stream; `grain.MapDataset.mix` interleaves them
deterministically in proportion to the weights into one global stream, which the hosts then split (row blocks of
each global batch, as vljax.data.sources.make_dataset does), so a mixture is random access, its iterator state is
checkpointable like any single source, and its batches do not depend on the process count. Components must
produce elements with the same fields and shapes (end each transform chain with KeepFields).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import grain
import numpy as np

from vljax.data.pipeline import host_batches
from vljax.data.sources.bad_records import BadRecordPolicy
from vljax.data.sources.loader import guarded_stream, shard_for_host


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


def _mix(components: Sequence[Component], seed: int, policy: BadRecordPolicy | None) -> grain.MapDataset:
    """Components -> the global, infinite mixture stream (+ 'source_id')."""
    if not components:
        raise ValueError("components: a mixture needs at least one component")
    names = [c.name for c in components]
    if len(set(names)) != len(names):
        raise ValueError(f"components: duplicate names {names}")
    parts = [guarded_stream(c.source, (*c.transforms, _TagSource(i)), name=c.name, seed=seed + 7919 * i,
                            policy=policy) for i, c in enumerate(components)]
    return grain.MapDataset.mix(parts, [c.weight for c in components])


def make_mixture(components: Sequence[Component], *, seed: int = 0, policy: BadRecordPolicy | None = None,
                 shard: tuple[int, int] | None = None) -> grain.MapDataset:
    """Components -> this host's elements of the mixture (every P-th; infinite MapDataset with 'source_id')."""
    return shard_for_host(_mix(components, seed, policy), shard)


def make_mixture_dataset(components: Sequence[Component], *, global_batch: int, seed: int = 0,
                         policy: BadRecordPolicy | None = None, shard: tuple[int, int] | None = None,
                         num_threads: int = 2, prefetch: int = 8) -> grain.IterDataset:
    """Components -> IterDataset of host batches (fixed shapes; 'source_id' int32 [B] says which source).

    Host p's batch k is rows [p B/P, (p + 1) B/P) of the one-process batch k; shard = (index, count) stands in for
    (jax.process_index(), jax.process_count()).
    """
    ds = host_batches(_mix(components, seed, policy), global_batch, shard=shard)
    return ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch))
