"""`vljax data convert`: any source -> array_record shards of msgpack records, with progress and summary.

Records are written as the source yields them (encoded image / video / audio bytes stay encoded, so
shards stay small and decoding stays in the input pipeline); `verify` decodes each one first so that
corrupt payloads are dropped at conversion time. Bad records are skipped, counted and
logged; past `max_bad_fraction` the conversion stops with BadDataError naming the source.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Callable

from vljax.data.sources.array_record import encode_record
from vljax.data.sources.bad_records import DATA_ERRORS, BadRecordCounter, BadRecordError, BadRecordPolicy


@dataclasses.dataclass
class ConvertSummary:
    """What a conversion wrote."""

    source: str
    records: int
    bytes: int
    bad_records: int
    bad_keys: list[str]
    shards: list[str]

    def format(self) -> str:
        """-> one-line human summary."""
        return (f"{self.source}: wrote {self.records} records, {self.bytes / 2**20:.2f} MiB in "
                f"{len(self.shards)} shard(s); {self.bad_records} bad records skipped"
                + (f" (first: {', '.join(self.bad_keys[:3])})" if self.bad_keys else ""))


def shard_paths(output: str, num_shards: int) -> list[str]:
    """'out/name' -> ['out/name.array_record-00000-of-00002', ...] (TFDS naming)."""
    return [f"{output}.array_record-{i:05d}-of-{num_shards:05d}" for i in range(num_shards)]


def convert_to_array_record(source: Any, output: str, *, name: str = "source", num_shards: int = 1,
                            limit: int | None = None, policy: BadRecordPolicy | None = None,
                            verify: Callable[[dict], Any] | None = None, progress: bool = True) -> ConvertSummary:
    """Random-access source -> array_record shards at output.array_record-XXXXX-of-YYYYY (round-robin).

    `verify(record)` (e.g. transforms.DecodeImage().map) runs on each record and its result is dropped;
    a record it rejects is counted as bad and not written.
    """
    from array_record.python import array_record_module
    from tqdm import tqdm

    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    n = len(source) if limit is None else min(limit, len(source))
    if n == 0:
        raise ValueError(f"source {name!r} has no records to convert")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    paths = shard_paths(output, num_shards)
    # NOTE: group_size:1 gives true random access (one record per chunk) at a small size cost.
    writers = [array_record_module.ArrayRecordWriter(p, "group_size:1") for p in paths]
    counter = BadRecordCounter(name, policy or BadRecordPolicy())
    written = nbytes = 0
    try:
        for i in tqdm(range(n), desc=f"convert {name}", unit="rec", disable=not progress, file=sys.stderr):
            try:
                record = source[i]
                if verify is not None:
                    verify(record)
                data = encode_record(record)
            except DATA_ERRORS as e:
                counter.record_bad(e.key if isinstance(e, BadRecordError) else f"#{i}", e)
                continue
            writers[written % num_shards].write(data)
            written += 1
            nbytes += len(data)
            counter.ok()
    finally:
        for w in writers:
            w.close()
    counter.check_final()
    return ConvertSummary(name, written, nbytes, counter.bad, list(counter.bad_keys[:20]), paths)
