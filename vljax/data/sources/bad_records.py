"""Bad-record policy: a corrupt record is skipped, counted and logged with its key, never a crash.

`GuardedMap` is the grain MapDataset stage that decodes and augments. When reading index i or
transforming it raises a data error, it logs the record's key, counts it and returns the next good
element (i+1, i+2, ... of the same stream), so shapes stay fixed and the order stays deterministic
and resumable. When the bad fraction of this process exceeds `max_bad_fraction` (after
`min_records` reads), or `max_consecutive` records in a row are bad, it raises `BadDataError`
naming the source.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import struct
import tarfile
import threading
import zlib
from typing import Any, Sequence

import grain
import numpy as np

log = logging.getLogger(__name__)


class BadRecordError(ValueError):
    """One record cannot be read or decoded; `key` names it."""

    def __init__(self, key: str, reason: str | BaseException):
        self.key = key
        super().__init__(f"bad record {key!r}: {reason}")


class BadDataError(RuntimeError):
    """Too many bad records in one source (not caught by the guard)."""


# NOTE: the errors a corrupt or missing input produces (PIL raises OSError subclasses, PyAV raises
# OSError/ValueError subclasses, json ValueError); programming errors (TypeError, AttributeError) still crash.
DATA_ERRORS: tuple[type[BaseException], ...] = (
    BadRecordError, OSError, ValueError, KeyError, EOFError, zlib.error, struct.error, tarfile.TarError,
    json.JSONDecodeError, UnicodeDecodeError)


@dataclasses.dataclass(frozen=True)
class BadRecordPolicy:
    """How many bad records a source may have before the run stops."""

    max_bad_fraction: float = 0.05
    min_records: int = 50            # NOTE: the fraction is meaningless on the first few reads
    max_consecutive: int = 64
    log_first: int = 20              # NOTE: log every key up to this many, then every 100th

    def __post_init__(self):
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {self.max_bad_fraction}")
        if self.max_consecutive < 1:
            raise ValueError(f"max_consecutive must be >= 1, got {self.max_consecutive}")


class BadRecordCounter:
    """Thread-safe per-process counts of good and bad records of one source."""

    def __init__(self, name: str, policy: BadRecordPolicy):
        self.name, self.policy = name, policy
        self.good = self.bad = 0
        self.bad_keys: list[str] = []
        self._lock = threading.Lock()

    def ok(self) -> None:
        """Counts one good record."""
        with self._lock:
            self.good += 1

    def record_bad(self, key: str, error: BaseException) -> None:
        """Counts and logs one bad record; raises BadDataError past the policy's fraction."""
        with self._lock:
            self.bad += 1
            if len(self.bad_keys) < 1000:
                self.bad_keys.append(key)
            bad, seen = self.bad, self.good + self.bad
        if bad <= self.policy.log_first or bad % 100 == 0:
            log.warning("source %r: skipping bad record %r (%d bad of %d): %s", self.name, key, bad, seen, error)
        if seen >= self.policy.min_records and bad / seen > self.policy.max_bad_fraction:
            raise BadDataError(f"source {self.name!r}: {bad} of {seen} records bad ({bad / seen:.1%} > "
                               f"max_bad_fraction={self.policy.max_bad_fraction}); first bad keys: "
                               f"{self.bad_keys[:5]}; last error: {error}")

    def check_final(self) -> None:
        """Raises BadDataError if the whole pass exceeded max_bad_fraction (min_records not applied)."""
        seen = self.good + self.bad
        if seen and self.bad / seen > self.policy.max_bad_fraction:
            raise BadDataError(f"source {self.name!r}: {self.bad} of {seen} records bad ({self.bad / seen:.1%} > "
                               f"max_bad_fraction={self.policy.max_bad_fraction}); first bad keys: "
                               f"{self.bad_keys[:5]}")

    def summary(self) -> dict[str, Any]:
        """-> {'source', 'good', 'bad', 'bad_keys'}."""
        return {"source": self.name, "good": self.good, "bad": self.bad, "bad_keys": list(self.bad_keys[:20])}

    def __getstate__(self):
        """Pickles without the lock (grain worker processes count on their own)."""
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state):
        """Restores with a fresh lock."""
        self.__dict__.update(state)
        self._lock = threading.Lock()


def record_key(element: Any, index: int) -> str:
    """-> the element's 'key' field, else '#index'."""
    if isinstance(element, dict) and "key" in element:
        key = element["key"]
        return key.decode() if isinstance(key, bytes) else str(key)
    return f"#{index}"


def apply_transforms(element: Any, transforms: Sequence[Any], rng: np.random.Generator) -> Any:
    """Applies grain Map / RandomMap transforms (or plain callables) in order."""
    for t in transforms:
        if isinstance(t, grain.transforms.RandomMap):
            element = t.random_map(element, rng)
        elif isinstance(t, grain.transforms.Map):
            element = t.map(element)
        elif callable(t):
            element = t(element)
        else:
            raise TypeError(f"transform {t!r} is neither a grain Map/RandomMap nor callable")
    return element


class GuardedMap(grain.MapDataset):
    """parent[i] -> transforms(parent[i]) with bad records replaced by the next good one of the stream."""

    def __init__(self, parent: grain.MapDataset, transforms: Sequence[Any] = (), *, name: str,
                 seed: int = 0, policy: BadRecordPolicy | None = None):
        super().__init__(parent)
        self.transforms = tuple(transforms)
        self.seed = int(seed)
        self.counter = BadRecordCounter(name, policy or BadRecordPolicy())

    def __len__(self) -> int:
        """-> length of the parent."""
        return len(self._parent)

    def __str__(self) -> str:
        """-> short description (grain logs it)."""
        return f"GuardedMap(source={self.counter.name!r}, transforms={len(self.transforms)})"

    def _read(self, index: int) -> Any:
        element = self._parent[index]
        if element is None:
            return None
        # NOTE: rng from (seed, stream index) as grain's random_map does: the same index always gets
        # the same augmentation, so a restored iterator reproduces the stream exactly.
        rng = np.random.default_rng([self.seed, index])
        try:
            return apply_transforms(element, self.transforms, rng)
        except BadRecordError:
            raise
        except DATA_ERRORS as e:
            raise BadRecordError(record_key(element, index), e) from e

    def __getitem__(self, index):
        """int index -> transformed element (bad records skipped, counted and logged)."""
        if isinstance(index, slice):
            return self.slice(index)
        n = len(self)
        for k in range(self.counter.policy.max_consecutive):
            j = (index + k) % n
            try:
                out = self._read(j)
            except DATA_ERRORS as e:
                key = e.key if isinstance(e, BadRecordError) else f"#{j}"
                self.counter.record_bad(key, e)
                continue
            self.counter.ok()
            return out
        raise BadDataError(f"source {self.counter.name!r}: {self.counter.policy.max_consecutive} consecutive bad "
                           f"records from stream index {index}; first bad keys: {self.counter.bad_keys[:5]}")
