"""Grain input pipelines: world (or any random-access source) -> fixed-shape numpy host batches.

    source --shuffle(seed)--> [augment] --map(to_example)--> batch --> [this host's batches] --> thread prefetch

Host batches are dicts of numpy arrays with a leading per-host batch dim; the trainer
assembles them into global arrays (vljax.sharding.host_to_global). Iterators are grain
iterators, so `get_state()` / `set_state()` resume exactly (saved with every checkpoint).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import grain
import jax
import numpy as np

from vljax.data import tokenizer as tokenizer_lib


def to_example_fn(tok, text_fields: dict[str, str], keep: Sequence[str], max_len: int) -> Callable:
    """Returns sample dict -> numeric example: text fields tokenized ([L] int32), `keep` arrays copied."""

    ids = tokenizer_lib.special_ids(tok)

    def to_example(sample: dict[str, Any]) -> dict[str, np.ndarray]:
        out = {}
        for src, dst in text_fields.items():
            if src not in sample:
                raise KeyError(f"text field {src!r} missing from sample; available: {sorted(sample)[:20]}...")
            out[dst] = tokenizer_lib.pad_tokens(tok.encode(sample[src]), max_len, **ids)
        for k in keep:
            if k not in sample:
                raise KeyError(f"field {k!r} missing from sample; available: {sorted(sample)[:20]}...")
            out[k] = np.asarray(sample[k])
        return out

    return to_example


def per_host_batch_size(global_batch: int, count: int | None = None) -> int:
    """Global batch -> this host's share (must divide evenly among `count` hosts, jax.process_count() by default)."""
    n = jax.process_count() if count is None else count
    if global_batch % n:
        raise ValueError(f"batch size {global_batch} not divisible by process count {n}")
    return global_batch // n


def host_shard(shard: tuple[int, int] | None = None) -> tuple[int, int]:
    """-> (host index, host count): `shard` when given (tests, tools), else (jax.process_index(), process_count())."""
    index, count = shard or (jax.process_index(), jax.process_count())
    if not 0 <= index < count:
        raise ValueError(f"host shard index {index} not in [0, {count})")
    return index, count


def host_batches(ds: grain.MapDataset, global_batch: int, *, drop_remainder: bool = True,
                 shard: tuple[int, int] | None = None) -> grain.MapDataset:
    """Global stream of examples -> this host's batches (MapDataset of [B/P, ...] dicts).

    With P hosts, host p's batch k is rows [p B/P, (p + 1) B/P) of global batch k: the one-process batches, row for
    row, at any process count (host_to_global reassembles them). shard = (index, count) stands in for
    (jax.process_index(), jax.process_count()). With drop_remainder a finite stream is cut to whole global batches
    first, so every host gets the same number of batches; without it the hosts split the last, short global batch
    (some may get a shorter batch, or one batch fewer).
    """
    index, count = host_shard(shard)
    ds = ds[: len(ds) // global_batch * global_batch] if count > 1 and drop_remainder else ds
    ds = ds.batch(per_host_batch_size(global_batch, count), drop_remainder=drop_remainder)
    # NOTE: the b-row batches of the global stream, dealt out in turn: batch k P + p is host p's k-th.
    return ds[index::count] if count > 1 else ds


def build_dataset(source, to_example: Callable, global_batch: int, *, shuffle_seed: int | None,
                  repeat: bool, num_threads: int = 2, prefetch: int = 8, drop_remainder: bool = True,
                  pack: dict | None = None, augment: grain.transforms.RandomMap | None = None,
                  augment_seed: int = 0) -> grain.IterDataset:
    """Random-access source -> grain IterDataset of host batches (sharded by process).

    With P processes, process p's k-th batch is rows [p B/P, (p + 1) B/P) of the k-th global batch of B: the same
    examples and augmentations in the same rows as a one-process run (packed rows excepted: there each process
    packs every P-th example).

    augment: a random transform of the raw sample before `to_example` (e.g. transforms.DropAttributeWords);
    grain draws its rng from (augment_seed, position in the stream), so a resumed iterator repeats it exactly.
    pack: dict(max_len=T, num_bins=N, pad_id=P) packs the (padded, 1-D) tokens / label_mask examples
    into rows [T] with segment_ids and positions (vljax.data.packing) before batching.
    """
    ds = grain.MapDataset.source(source)
    if shuffle_seed is not None:
        ds = ds.shuffle(seed=shuffle_seed)
    if repeat:
        ds = ds.repeat()
    if augment is not None:
        # NOTE: before the per-process split, so an example's draw depends on its place in the global stream,
        # not on how many processes share it.
        ds = ds.random_map(augment, seed=augment_seed)
    read = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
    if pack is not None:
        proc, n_proc = host_shard()
        if n_proc > 1:
            ds = ds[proc::n_proc]
        from vljax.data import packing

        ds = ds.map(to_example).map(lambda e: packing.strip_padding(e, int(pack["pad_id"]), int(pack["max_len"])))
        # NOTE: packing runs after the threaded map stage (it is sequential by nature); its iterator state
        # wraps the prefetch iterator's, so checkpoints still resume exactly.
        packed = packing.pack_dataset(ds.to_iter_dataset(read), int(pack["max_len"]), int(pack["num_bins"]))
        return packed.batch(per_host_batch_size(global_batch), drop_remainder=drop_remainder)
    return host_batches(ds.map(to_example), global_batch, drop_remainder=drop_remainder).to_iter_dataset(read)
