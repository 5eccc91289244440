"""Source + transforms -> deterministic, host-sharded, checkpointable grain datasets.

    source --shuffle(seed)--> repeat --> [host shard] --GuardedMap(decode, augment)--> batch --> prefetch

The guard sits after shuffle/repeat, so random augmentations depend on the stream index (new crops
every epoch) and bad records are replaced by the next element of the same stream.
"""
from __future__ import annotations

from typing import Any, Sequence

import grain
import jax

from vljax.data.pipeline import per_host_batch_size
from vljax.data.sources.bad_records import BadRecordPolicy, GuardedMap


def shard_for_host(ds: grain.MapDataset, index: int | None = None, count: int | None = None) -> grain.MapDataset:
    """MapDataset -> this host's disjoint slice ds[index::count] (jax.process_index/count by default)."""
    index = jax.process_index() if index is None else index
    count = jax.process_count() if count is None else count
    if not 0 <= index < count:
        raise ValueError(f"host shard index {index} not in [0, {count})")
    return ds[index::count] if count > 1 else ds


def make_map_dataset(source, transforms: Sequence[Any] = (), *, name: str, seed: int = 0, shuffle: bool = True,
                     repeat: bool = True, policy: BadRecordPolicy | None = None,
                     shard: tuple[int, int] | None = None) -> grain.MapDataset:
    """Random-access source -> per-host MapDataset of transformed elements (unbatched)."""
    if len(source) == 0:
        raise ValueError(f"source {name!r} is empty")
    ds = grain.MapDataset.source(source)
    if shuffle:
        ds = ds.shuffle(seed=seed)
    if repeat:
        ds = ds.repeat()
    ds = shard_for_host(ds, *(shard or (None, None)))
    return GuardedMap(ds, transforms, name=name, seed=seed, policy=policy)


def make_dataset(source, transforms: Sequence[Any] = (), *, name: str, global_batch: int, seed: int = 0,
                 shuffle: bool = True, repeat: bool = True, policy: BadRecordPolicy | None = None,
                 shard: tuple[int, int] | None = None, drop_remainder: bool = True, num_threads: int = 2,
                 prefetch: int = 8) -> grain.IterDataset:
    """Random-access source -> IterDataset of host batches (dicts of [B/hosts, ...] numpy arrays)."""
    ds = make_map_dataset(source, transforms, name=name, seed=seed, shuffle=shuffle, repeat=repeat,
                          policy=policy, shard=shard)
    ds = ds.batch(per_host_batch_size(global_batch), drop_remainder=drop_remainder)
    return ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch))
