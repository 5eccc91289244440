"""Split bookkeeping: sizes, ids, and seeded subsets (few-shot pools, nested label fractions).

Splits are namespaces (WORLD.md principle 4): a name only changes the Philox key. Subsets are
drawn with their own Philox keys from a user seed, so they never consume a scene stream.
"""
from __future__ import annotations

import os
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


# ---------------------------------------------------------------------------------------------- continual tasks
# CTP's four tasks (WORLD.md section 4, ctp): disjoint shape families.
CTP_FAMILIES = (("circle", "ellipse"), ("square", "rectangle"), ("triangle",), ("star", "cross"))
DOMAINS = ("natural", "medical", "aerial")


def continual_overrides(cfg, name_or_list) -> list:
    """"shape_families" | [shape-name tuples] | [domain names] -> one `World.variant` override dict per task.

    A shape-family task holds out every other enabled shape as a composition (`compositions.heldout`), so its
    train/val/test draw only family shapes by conditional sampling and its `heldout` split only other shapes.
    """
    from vljax.data.world import concepts  # NOTE: local import keeps this module free of world imports.
    tasks = CTP_FAMILIES if name_or_list == "shape_families" else tuple(name_or_list)
    if isinstance(name_or_list, str) and name_or_list != "shape_families":
        raise ValueError(f"continual_tasks: unknown name {name_or_list!r}; valid: 'shape_families', "
                         "a list of shape-name tuples, or a list of domains")
    if not tasks:
        raise ValueError("continual_tasks: empty task list")
    if all(isinstance(t, str) and t in DOMAINS for t in tasks):
        from vljax.data.world import domains  # NOTE: local import, as above.

        # NOTE: a domain task also needs the inventories that domain's renderer requires.
        return [domains.domain_overrides(t, cfg) for t in tasks]
    out, seen = [], set()
    for fam in tasks:
        fam = (fam,) if isinstance(fam, str) else tuple(fam)
        bad = [s for s in fam if s not in concepts.SHAPES]
        if bad or not fam:
            raise ValueError(f"continual_tasks: family {fam} has unknown shapes {bad}; valid: {concepts.SHAPES}")
        if seen & set(fam):
            raise ValueError(f"continual_tasks: family {fam} overlaps an earlier family")
        seen |= set(fam)
        n = max(int(cfg.objects.shapes), 1 + max(concepts.SHAPES.index(s) for s in fam))
        held = tuple(cfg.compositions.heldout) + tuple(s for s in concepts.SHAPES[:n] if s not in fam)
        out.append({"objects.shapes": n, "compositions.heldout": held})
    return out


# ---------------------------------------------------------------------------------------------- frozen export
def _manifest_path(path: str) -> str:
    return f"{path}.manifest.json"


def export(world, split: str, indices, path: str, fields=None, num_shards: int = 1) -> dict:
    """(world, split, int n or int indices, path prefix, fields) -> manifest; writes array_record shards.

    Shards are `path.array_record-XXXXX-of-YYYYY` (records round-robin, `vljax data convert` format) and
    `path.manifest.json` holds the world version, config and its hash, split, fields, schema and the index of
    every record in read order (shard by shard), so a benchmark split is frozen with its provenance (benchx).
    """
    import json

    from vljax.data import convert
    from vljax.data.world import config as config_lib

    idx = np.arange(int(indices), dtype=np.int64) if np.ndim(indices) == 0 else np.asarray(indices, np.int64)
    size = world.split_size(split)
    if idx.size == 0 or idx.min() < 0 or idx.max() >= size:
        raise ValueError(f"export: indices must be non-empty and inside split {split!r} of size {size}")
    fields = tuple(world.default_fields if fields is None else ((fields,) if isinstance(fields, str) else fields))

    class _Src:
        def __len__(self):
            return len(idx)

        def __getitem__(self, i):
            return world.sample(split, int(idx[i]), fields)

    summary = convert.convert_to_array_record(_Src(), path, name=f"world/{split}", num_shards=num_shards,
                                              progress=False)
    schema = {k: [list(shape), "str" if dtype is str else np.dtype(dtype).str]
              for k, (shape, dtype) in world.spec(fields).items()}
    order = np.concatenate([idx[s::num_shards] for s in range(num_shards)])
    manifest = {"world_version": config_lib.WORLD_VERSION, "config_hash": world.config_hash,
                "config": json.loads(world.cfg.to_json(sort_keys=True)), "split": split, "fields": list(fields),
                "indices": order.tolist(), "schema": schema, "shards": [os.path.basename(p) for p in summary.shards],
                "records": summary.records, "bytes": summary.bytes}
    with open(_manifest_path(path), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def _restore(value, shape, dtype):
    """msgpack value -> the sample's type: tuples for text, numpy arrays / scalars of the schema dtype."""
    if dtype == "str":
        if isinstance(value, list):
            return tuple(_restore(v, None, "str") for v in value)
        return value
    a = np.asarray(value, np.dtype(dtype)).reshape(shape)
    return a[()] if a.ndim == 0 else a


def load_export(path: str) -> tuple:
    """path prefix of `export` -> (manifest, [sample dict]) in manifest index order."""
    import json

    from vljax.data.sources.array_record import ArrayRecordSource

    with open(_manifest_path(path)) as f:
        manifest = json.load(f)
    base = os.path.dirname(os.path.abspath(path))
    src = ArrayRecordSource([os.path.join(base, s) for s in manifest["shards"]])
    out = []
    for i in range(len(src)):
        rec = src[i]
        out.append({k: _restore(rec[k], shape, dtype) for k, (shape, dtype) in manifest["schema"].items()})
    return manifest, out
