"""`World` dispatch for the 3D kinds (WORLD.md 3.7): `object3d` -> points3d, `room` -> room.

A `Kind3D` gives the World its `sample` / `spec` / `label` for `cfg.kind in ("object3d", "room")`:
the generator's fields plus `meta/*`, filtered to exactly the requested paths (prefix selection as
for 2D scenes), with always-present ground truth (`labels/shape3d`; the room layout, boxes and scene
graph) returned whatever `fields` asks.
"""
from __future__ import annotations

import numpy as np

from vljax.data.world import splits

KINDS = ("object3d", "room")
LABEL_TASKS = {"object3d": ("shape3d",), "room": ()}
META_SPEC = {"meta/index": ((), np.dtype(np.int64)), "meta/split_id": ((), np.dtype(np.int64)),
             "meta/dup_of": ((), np.dtype(np.int64)), "meta/mismatched": ((), np.dtype(bool)),
             "meta/config_hash": ((), str)}


def selected(path: str, fields: tuple) -> bool:
    """True when `path` equals a requested field or lies under one (prefix selection)."""
    return any(path == f or path.startswith(f + "/") for f in fields)


class Kind3D:
    """3D sampler of one World config: `sample(split, i, fields) -> dict`, `spec(fields) -> schema`."""

    def __init__(self, cfg, config_hash: str):
        if cfg.kind not in KINDS:
            raise ValueError(f"kind={cfg.kind!r} is not a 3D kind ({', '.join(KINDS)})")
        # NOTE: generators imported here, not at module level: `python -m vljax.data.world.room` (the 3D benchmark)
        # must not find room.py already imported by the package.
        from vljax.data.world import points3d, room
        self.cfg, self.kind, self.config_hash = cfg, cfg.kind, config_hash
        self.seed = int(cfg.seed)
        self._sampler = points3d.sample_object3d if self.kind == "object3d" else room.sample_room
        # NOTE: the generators check their own config sections (ValueError naming the field); object3d reads
        # its settings compiled once.
        full = points3d.spec_object3d(cfg) if self.kind == "object3d" else room.spec_room(cfg)
        self._gen_cfg = points3d.compile_object3d(cfg) if self.kind == "object3d" else cfg
        self.full_spec = {k: (shape, str if dtype == np.dtype(object) else dtype)
                          for k, (shape, dtype) in full.items()}
        # NOTE: what the generator returns for no requested field is its always-present ground truth.
        self.always = frozenset(self._sampler(self._gen_cfg, self.seed, "train", 0, ()))

    def _keep(self, path: str, fields: tuple) -> bool:
        return path in self.always or selected(path, fields)

    def sample(self, split: str, index: int, fields: tuple) -> dict:
        """(split, index, fields) -> {path: array | str | tuple[str]}: generator fields + meta/*."""
        index = int(index)
        if index < 0:
            raise ValueError(f"index must be >= 0, got {index}")
        raw = self._sampler(self._gen_cfg, self.seed, split, index, fields)
        out = {k: v for k, v in raw.items() if self._keep(k, fields)}
        out.update(splits.meta_fields(split, index, self.config_hash))
        return out

    def spec(self, fields: tuple) -> dict:
        """fields -> {path: (shape, dtype)} of `sample` (text: dtype `str`)."""
        out = {k: v for k, v in self.full_spec.items() if self._keep(k, fields)}
        out.update(META_SPEC)
        return out

    def label(self, split: str, index: int, task: str) -> int:
        """(split, index, task) -> int class label without rendering views ('shape3d' for object3d)."""
        if task not in LABEL_TASKS[self.kind]:
            valid = ", ".join(LABEL_TASKS[self.kind]) or "none"
            raise ValueError(f"unknown task {task!r} for kind {self.kind!r}; valid: {valid}")
        return int(self._sampler(self._gen_cfg, self.seed, split, int(index), ("labels",))["labels/shape3d"])

    def num_classes(self, task: str) -> int:
        """task -> number of classes."""
        if task not in LABEL_TASKS[self.kind]:
            raise ValueError(f"unknown task {task!r} for kind {self.kind!r}")
        return int(self.cfg.points.classes)
