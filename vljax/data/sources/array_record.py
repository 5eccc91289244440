"""array_record files of msgpack records: the fast random-access format `vljax data convert` writes.

A record is a flat or nested dict of str / bytes / int / float / bool / list / numpy arrays;
arrays are stored as (dtype, shape, raw bytes), so decoding is a zero-parse `np.frombuffer`.
"""
from __future__ import annotations

import glob
import os
from typing import Any, Sequence

import grain
import msgpack
import numpy as np

from vljax.data.sources.bad_records import BadRecordError

_ND = 1  # msgpack ext type code of a numpy array


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "OUS":
            return obj.tolist()
        header = msgpack.packb((obj.dtype.str, list(obj.shape)))
        return msgpack.ExtType(_ND, header + np.ascontiguousarray(obj).tobytes())
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot encode {type(obj).__name__} in an array_record record")


def _ext_hook(code: int, data: bytes) -> Any:
    if code != _ND:
        return msgpack.ExtType(code, data)
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    dtype, shape = unpacker.unpack()
    return np.frombuffer(data[unpacker.tell():], dtype=np.dtype(dtype)).reshape(shape)


def encode_record(record: dict[str, Any]) -> bytes:
    """dict record -> bytes (msgpack; numpy arrays keep dtype and shape)."""
    if not isinstance(record, dict):
        raise TypeError(f"record must be a dict, got {type(record).__name__}")
    return msgpack.packb(record, default=_default, use_bin_type=True)


def decode_record(data: bytes) -> dict[str, Any]:
    """bytes -> dict record (inverse of encode_record)."""
    out = msgpack.unpackb(data, raw=False, ext_hook=_ext_hook, strict_map_key=False)
    if not isinstance(out, dict):
        raise ValueError(f"record decodes to {type(out).__name__}, not a dict")
    return out


def expand_paths(paths: str | Sequence[str]) -> list[str]:
    """Glob pattern(s) or file list -> sorted existing paths (ValueError when none match)."""
    patterns = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    out: list[str] = []
    for p in patterns:
        p = os.fspath(p)
        hits = sorted(glob.glob(p)) if any(c in p for c in "*?[") else [p]
        out.extend(hits)
    if not out:
        raise ValueError(f"paths: no file matches {patterns}")
    missing = [p for p in out if not os.path.exists(p)]
    if missing:
        raise ValueError(f"paths: missing files {missing[:5]}")
    return out


class ArrayRecordSource:
    """RandomAccessDataSource over array_record files of `encode_record` records."""

    def __init__(self, paths: str | Sequence[str]):
        self.paths = expand_paths(paths)
        self._source = grain.sources.ArrayRecordDataSource(self.paths)

    def __len__(self) -> int:
        """-> number of records over all files."""
        return len(self._source)

    def __getitem__(self, index) -> dict[str, Any]:
        """int index -> decoded record (BadRecordError if it does not decode)."""
        data = self._source[int(index)]
        try:
            record = decode_record(data)
        except Exception as e:  # NOTE: msgpack raises several unrelated types on garbage input.
            raise BadRecordError(f"array_record#{index}", e) from e
        record.setdefault("key", f"array_record#{index}")
        return record

    def __repr__(self) -> str:
        """-> short description."""
        return f"ArrayRecordSource({len(self.paths)} files, {len(self)} records)"
