"""Source + transforms -> deterministic, host-sharded, checkpointable grain datasets.

    source --shuffle(seed)--> repeat --GuardedMap(decode, augment)--> batch --> [this host's batches] --> prefetch

The guard sits after shuffle/repeat and before the split between hosts, so random augmentations depend on the
position in the global stream (new crops every epoch, the same crops at any process count) and a bad record is
replaced by the next element of the global stream. Host p's batch k is then rows [p B/P, (p + 1) B/P) of the
one-process batch k (vljax.data.pipeline.host_batches), as in the trainer's own pipeline.
"""
from __future__ import annotations

from typing import Any, Sequence

import grain

from vljax.data.pipeline import host_batches, host_shard
from vljax.data.sources.bad_records import BadRecordPolicy, GuardedMap


def shard_for_host(ds: grain.MapDataset, shard: tuple[int, int] | None = None) -> grain.MapDataset:
    """MapDataset -> this host's disjoint slice ds[index::count]; shard = (index, count), by default
    (jax.process_index(), jax.process_count())."""
    index, count = host_shard(shard)
    return ds[index::count] if count > 1 else ds


def guarded_stream(source, transforms: Sequence[Any] = (), *, name: str, seed: int = 0, shuffle: bool = True,
                   repeat: bool = True, policy: BadRecordPolicy | None = None) -> grain.MapDataset:
    """Random-access source -> the global (all hosts') MapDataset of transformed elements (unbatched)."""
    if len(source) == 0:
        raise ValueError(f"source {name!r} is empty")
    ds = grain.MapDataset.source(source)
    if shuffle:
        ds = ds.shuffle(seed=seed)
    if repeat:
        ds = ds.repeat()
    return GuardedMap(ds, transforms, name=name, seed=seed, policy=policy)


def make_map_dataset(source, transforms: Sequence[Any] = (), *, name: str, seed: int = 0, shuffle: bool = True,
                     repeat: bool = True, policy: BadRecordPolicy | None = None,
                     shard: tuple[int, int] | None = None) -> grain.MapDataset:
    """Random-access source -> this host's elements (unbatched): every P-th element of the global stream.

    For batches use make_dataset, whose hosts read row blocks of the global batches instead.
    """
    ds = guarded_stream(source, transforms, name=name, seed=seed, shuffle=shuffle, repeat=repeat, policy=policy)
    return shard_for_host(ds, shard)


def make_dataset(source, transforms: Sequence[Any] = (), *, name: str, global_batch: int, seed: int = 0,
                 shuffle: bool = True, repeat: bool = True, policy: BadRecordPolicy | None = None,
                 shard: tuple[int, int] | None = None, drop_remainder: bool = True, num_threads: int = 2,
                 prefetch: int = 8) -> grain.IterDataset:
    """Random-access source -> IterDataset of host batches (dicts of [B/hosts, ...] numpy arrays).

    shard = (index, count) stands in for (jax.process_index(), jax.process_count()).
    """
    ds = guarded_stream(source, transforms, name=name, seed=seed, shuffle=shuffle, repeat=repeat, policy=policy)
    ds = host_batches(ds, global_batch, drop_remainder=drop_remainder, shard=shard)
    return ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch))
