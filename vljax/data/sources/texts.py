"""Text corpora from any source (for tokenizer training): captions, conversation turns or plain text files."""
from __future__ import annotations

import logging
from typing import Any, Iterator

from vljax.data.sources.bad_records import DATA_ERRORS

log = logging.getLogger(__name__)


def record_texts(record: dict[str, Any], field: str) -> list[str]:
    """Record -> its texts: a str field, a list of str, or a conversation's turn contents."""
    value = record.get(field)
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list):
        return [t["content"] if isinstance(t, dict) else str(t) for t in value]
    raise KeyError(f"field {field!r} is not text in record {record.get('key', '?')!r} (fields: {sorted(record)})")


def iter_texts(source: Any, field: str = "text", limit: int | None = None) -> Iterator[str]:
    """Random-access source -> texts of `field` in index order (bad records skipped and logged)."""
    n = len(source) if limit is None else min(limit, len(source))
    for i in range(n):
        try:
            yield from record_texts(source[i], field)
        except KeyError:
            raise
        except DATA_ERRORS as e:
            log.warning("skipping record %d: %s", i, e)


def iter_text_files(paths: list[str]) -> Iterator[str]:
    """Plain text files -> one text per non-empty line."""
    for p in paths:
        with open(p, encoding="utf-8") as f:
            yield from (line.rstrip("\n") for line in f if line.strip())
