"""webdataset tar shards in img2dataset layout (`key.jpg|png|webp`, `key.txt`, `key.json`), random access.

At construction every shard's tar headers are scanned once (seeks only, no payload reads) into an
index key -> {extension: (shard, offset, size)}; `src[i]` then reads just that sample's members.
A truncated shard keeps the samples indexed before the damage; a member cut short is a bad record.
"""
from __future__ import annotations

import json
import logging
import os
import tarfile
from typing import Any, Sequence

from vljax.data.sources.array_record import expand_paths
from vljax.data.sources.bad_records import BadRecordError

log = logging.getLogger(__name__)

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


def split_member_name(name: str) -> tuple[str, str]:
    """'dir/000123.jpg' -> ('dir/000123', 'jpg'); webdataset keys end at the first dot of the basename."""
    head, base = os.path.split(name)
    stem, dot, ext = base.partition(".")
    return (os.path.join(head, stem) if head else stem), ext.lower()


def index_shard(path: str) -> list[tuple[str, dict[str, tuple[int, int]]]]:
    """tar path -> [(key, {ext: (offset, size)})] in member order (stops at the first damaged header)."""
    samples: dict[str, dict[str, tuple[int, int]]] = {}
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = split_member_name(member.name)
                samples.setdefault(key, {})[ext] = (member.offset_data, member.size)
    except (tarfile.TarError, OSError, EOFError) as e:
        log.warning("webdataset shard %s is damaged after %d samples: %s", path, len(samples), e)
    return list(samples.items())


class WebDatasetSource:
    """RandomAccessDataSource over tar shards -> {'key', 'image': bytes, 'text': str, 'json': str}."""

    def __init__(self, shards: str | Sequence[str], *, image_exts: Sequence[str] = IMAGE_EXTS,
                 text_ext: str = "txt", json_ext: str = "json", require_text: bool = True):
        self.shards = expand_paths(shards)
        self.image_exts, self.text_ext, self.json_ext = tuple(image_exts), text_ext, json_ext
        self.require_text = require_text
        self._index: list[tuple[int, str, dict[str, tuple[int, int]]]] = []
        for s, path in enumerate(self.shards):
            self._index.extend((s, key, members) for key, members in index_shard(path))
        if not self._index:
            raise ValueError(f"shards: no samples found in {self.shards[:3]}")

    def __len__(self) -> int:
        """-> number of samples (distinct keys) over all shards."""
        return len(self._index)

    def _read(self, shard: int, offset: int, size: int, key: str) -> bytes:
        with open(self.shards[shard], "rb") as f:
            f.seek(offset)
            data = f.read(size)
        if len(data) != size:
            raise BadRecordError(key, f"tar member truncated ({len(data)} of {size} bytes)")
        return data

    def __getitem__(self, index) -> dict[str, Any]:
        """int index -> {'key', 'image' (encoded bytes), 'text', 'json' (validated json text or '')}."""
        shard, key, members = self._index[int(index)]
        full_key = f"{os.path.basename(self.shards[shard])}/{key}"
        ext = next((e for e in self.image_exts if e in members), None)
        if ext is None:
            raise BadRecordError(full_key, f"no image member (have {sorted(members)})")
        out = {"key": full_key, "image": self._read(shard, *members[ext], full_key)}
        if self.text_ext in members:
            out["text"] = self._read(shard, *members[self.text_ext], full_key).decode("utf-8").strip()
        elif self.require_text:
            raise BadRecordError(full_key, f"no .{self.text_ext} member")
        else:
            out["text"] = ""
        meta = ""
        if self.json_ext in members:
            meta = self._read(shard, *members[self.json_ext], full_key).decode("utf-8")
            try:
                json.loads(meta)
            except json.JSONDecodeError as e:
                raise BadRecordError(full_key, f"malformed .{self.json_ext}: {e}") from e
        out["json"] = meta
        return out

    def __repr__(self) -> str:
        """-> short description."""
        return f"WebDatasetSource({len(self.shards)} shards, {len(self)} samples)"
