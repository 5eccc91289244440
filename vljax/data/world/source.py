"""grain random-access source over a World split (WORLD.md principle 3).

`WorldSource` is picklable (it carries only the config dict, split and fields and rebuilds its
World lazily per process), so grain worker processes can use it. Host sharding: the trainer's
pipeline (`vljax.data.pipeline.build_dataset`) gives each host its row block of every global
batch (`host_batches`), so the batches do not depend on the process count; slicing the dataset
(`grain.MapDataset.source(src)[jax.process_index()::jax.process_count()]`) also gives disjoint,
deterministic index sets per host, in another order.
"""
from __future__ import annotations

import ml_collections


class WorldSource:
    """RandomAccessDataSource: `len(src)` = split size, `src[i]` = `World.sample(split, i, fields)`."""

    def __init__(self, cfg, split: str, fields=None):
        self._cfg_dict = cfg.to_dict() if isinstance(cfg, ml_collections.ConfigDict) else dict(cfg)
        self.split = split
        self.fields = None if fields is None else tuple((fields,) if isinstance(fields, str) else fields)
        self._world = None
        self._len = self.world.split_size(split)

    @property
    def world(self):
        """-> the World (built on first use in each process)."""
        if self._world is None:
            from vljax.data.world.world import World  # NOTE: local import: world.py imports this module.
            self._world = World(ml_collections.ConfigDict(self._cfg_dict))
        return self._world

    def __len__(self) -> int:
        """-> number of indices of the split."""
        return self._len

    def __getitem__(self, index) -> dict:
        """int index -> sample dict."""
        index = int(index)
        if not 0 <= index < self._len:
            raise IndexError(f"index {index} out of range for split {self.split!r} of size {self._len}")
        return self.world.sample(self.split, index, self.fields)

    def __getstate__(self) -> dict:
        """Pickles without the World (rebuilt lazily)."""
        state = dict(self.__dict__)
        state["_world"] = None
        return state

    def __repr__(self) -> str:
        """-> short description (grain logs it)."""
        return f"WorldSource(split={self.split!r}, len={self._len}, fields={self.fields})"
