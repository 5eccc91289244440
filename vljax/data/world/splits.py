"""Split bookkeeping: sizes, ids, and seeded subsets (few-shot pools, nested label fractions).

Splits are namespaces (WORLD.md principle 4): a name only changes the Philox key. Subsets are
drawn with their own Philox keys from a user seed, so they never consume a scene stream.
"""
from __future__ import annotations

import zlib
from typing import Callable, Sequence

import numpy as np


def split_id(split: str) -> int:
    """split name -> int64 id (crc32, the key used by `rng.stream_rng`)."""
    return zlib.crc32(split.encode("utf-8")) & 0xFFFFFFFF


def split_size(cfg, split: str) -> int:
    """(config, split) -> number of indices (`split_sizes`; train is virtual)."""
    if split not in cfg.split_sizes:
        raise ValueError(f"unknown split {split!r}; split_sizes has {', '.join(cfg.split_sizes)}")
    return int(cfg.split_sizes[split])


def _subset_rng(seed: int, purpose: str) -> np.random.Generator:
    """(user seed, purpose) -> Generator independent of every scene stream."""
    key = np.array([int(seed) & 0xFFFFFFFF, zlib.crc32(purpose.encode("utf-8"))], np.uint64)
    return np.random.Generator(np.random.Philox(key=key))


def few_shot(label: Callable[[int], int], classes: Sequence[int], size: int, shots: int, seed: int,
             name: str = "pool") -> np.ndarray:
    """(index -> label, classes, pool size, K, seed) -> int64 [C*K] indices, exactly K per class, class-major."""
    if shots < 1:
        raise ValueError(f"few_shot: shots={shots} must be >= 1")
    want = {c: [] for c in classes}
    g = _subset_rng(seed, "few_shot")
    budget = min(size, max(4096, 400 * shots * len(want)))
    seen, taken = 0, set()
    while any(len(v) < shots for v in want.values()):
        if seen >= budget:
            short = [c for c, v in want.items() if len(v) < shots]
            raise ValueError(f"few_shot: {name} has fewer than {shots} examples of classes {short} "
                             f"in the first {seen} draws")
        # NOTE: without-replacement chunks; small pools are one full permutation.
        chunk = g.permutation(size) if size <= 1024 else g.choice(size, size=1024, replace=False)
        for i in chunk.tolist():
            seen += 1
            if i in taken:
                continue
            y = label(i)
            if y in want and len(want[y]) < shots:
                want[y].append(i)
                taken.add(i)
        if size <= 1024:
            seen = budget
    return np.asarray([i for c in classes for i in want[c]], np.int64)


def label_fraction(size: int, frac: float, seed: int, split: str) -> np.ndarray:
    """(split size, fraction, seed, split) -> sorted int64 [round(frac*size)]; nested: 1% ⊂ 10% ⊂ 100%."""
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"label_fraction: frac={frac} outside [0, 1]")
    perm = _subset_rng(seed, f"label_fraction/{split}").permutation(size)
    return np.sort(perm[:int(round(frac * size))]).astype(np.int64)


def meta_fields(split: str, index: int, config_hash: str, dup_of: int = -1) -> dict:
    """(split, index) -> the bookkeeping fields every sample carries: meta/{index,split_id,dup_of,mismatched,config_hash}."""
    return {"meta/index": np.int64(index), "meta/split_id": np.int64(split_id(split)),
            "meta/dup_of": np.int64(dup_of), "meta/mismatched": np.bool_(False), "meta/config_hash": config_hash}
