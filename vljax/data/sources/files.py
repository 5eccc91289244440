"""File access shared by the folder-based sources: bytes by path, json / jsonl annotation files."""
from __future__ import annotations

import json
import os
from typing import Any

from vljax.data.sources.bad_records import BadRecordError


def read_bytes(path: str, key: str) -> bytes:
    """path -> file bytes; a missing or unreadable file is a BadRecordError naming `key`."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise BadRecordError(key, f"cannot read {path}: {e.strerror or e}") from e


def load_annotations(path: str) -> Any:
    """.json -> parsed object; .jsonl -> list with one entry per line (a malformed line -> BadRecordError entry).

    A whole .json file that does not parse is a ValueError naming the file: nothing can be indexed.
    """
    if not os.path.exists(path):
        raise ValueError(f"annotation file {path} does not exist")
    with open(path, encoding="utf-8") as f:
        if path.endswith(".jsonl"):
            out = []
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as e:
                    out.append(BadRecordError(f"{os.path.basename(path)}:{n}", f"malformed json line: {e}"))
            return out
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"annotation file {path} is not valid json: {e}") from e


def list_files(root: str, extensions: tuple[str, ...]) -> list[str]:
    """root dir -> sorted relative paths of files with one of the extensions (recursive)."""
    if not os.path.isdir(root):
        raise ValueError(f"root: {root} is not a directory")
    exts = tuple(e.lower().lstrip(".") for e in extensions)
    out = []
    for d, _, names in os.walk(root):
        for n in names:
            if n.rsplit(".", 1)[-1].lower() in exts:
                out.append(os.path.relpath(os.path.join(d, n), root))
    return sorted(out)


def load_captions(path: str) -> dict[str, list[str]]:
    """Captions file -> {file stem: [captions]}.

    Accepts MSR-VTT json ({'sentences': [{'video_id', 'caption'}]}), a {stem: caption | [captions]} json,
    or a csv with a header naming a key column (file/video_id/youtube_id/id) and a 'caption' column
    (AudioCaps layout).
    """
    if path.endswith(".csv"):
        import csv

        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            return {}
        key_col = next((c for c in ("file", "file_name", "video_id", "youtube_id", "id") if c in rows[0]), None)
        if key_col is None or "caption" not in rows[0]:
            raise ValueError(f"{path}: csv needs a key column (file/video_id/youtube_id/id) and 'caption'")
        out: dict[str, list[str]] = {}
        for r in rows:
            out.setdefault(os.path.splitext(r[key_col])[0], []).append(r["caption"])
        return out
    data = load_annotations(path)
    if isinstance(data, dict) and isinstance(data.get("sentences"), list):
        out = {}
        for s in data["sentences"]:
            if isinstance(s, dict) and "video_id" in s:
                out.setdefault(str(s["video_id"]), []).append(s.get("caption"))
        return out
    if isinstance(data, dict):
        return {str(k): (v if isinstance(v, list) else [v]) for k, v in data.items()}
    raise ValueError(f"{path}: captions must be MSR-VTT json, a {{key: caption}} json or a csv")


class CaptionedFiles:
    """Files under a root, optionally paired with captions -> one record per (file, caption)."""

    def __init__(self, root: str, extensions: tuple[str, ...], field: str, captions: str | None = None):
        self.root, self.field = root, field
        files = list_files(root, extensions)
        if not files:
            raise ValueError(f"root: no {'/'.join(extensions)} files under {root}")
        caps = load_captions(captions) if captions else {}
        self._index: list[tuple[str, str]] = []
        for rel in files:
            stem = os.path.splitext(os.path.basename(rel))[0]
            texts = caps.get(stem, [""] if not captions else [])
            self._index.extend((rel, t) for t in texts)
        if not self._index:
            raise ValueError(f"captions: no file under {root} has a caption in {captions}")

    def __len__(self) -> int:
        """-> number of (file, caption) records."""
        return len(self._index)

    def __getitem__(self, index) -> dict[str, Any]:
        """int index -> {'key', field: file bytes, 'text', 'format': extension}."""
        rel, text = self._index[int(index)]
        key = f"{rel}#{index}"
        if not isinstance(text, str):
            raise BadRecordError(key, "caption is not a string")
        return {"key": key, self.field: read_bytes(os.path.join(self.root, rel), key), "text": text.strip(),
                "format": rel.rsplit(".", 1)[-1].lower()}
