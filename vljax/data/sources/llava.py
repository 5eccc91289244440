"""LLaVA instruction json / jsonl ('id', optional 'image', 'conversations': [{'from', 'value'}]) -> records.

Records: {'key', 'image': encoded bytes (b'' for text-only), 'has_image': bool,
'conversation': [{'role': 'system'|'user'|'assistant', 'content': str}]}; vljax.data.chat turns the
conversation into tokens and a label mask. A malformed entry (no turns, unknown role, non-string
text) or a missing image is a bad record.
"""
from __future__ import annotations

import os
from typing import Any

from vljax.data.sources.bad_records import BadRecordError
from vljax.data.sources.files import load_annotations, read_bytes

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
IMAGE_PLACEHOLDER = "<image>"


def parse_conversation(turns: Any, key: str) -> list[dict[str, str]]:
    """LLaVA 'conversations' -> [{'role', 'content'}] with the <image> placeholder removed."""
    if not isinstance(turns, list) or not turns:
        raise BadRecordError(key, "'conversations' must be a non-empty list")
    out = []
    for n, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise BadRecordError(key, f"turn {n} is not an object")
        role = ROLES.get(str(turn.get("from", turn.get("role"))))
        text = turn.get("value", turn.get("content"))
        if role is None:
            raise BadRecordError(key, f"turn {n}: unknown role {turn.get('from', turn.get('role'))!r}")
        if not isinstance(text, str):
            raise BadRecordError(key, f"turn {n}: text is {type(text).__name__}, not str")
        # NOTE: the image enters the model as prefix embeddings, so the placeholder is dropped here.
        out.append({"role": role, "content": text.replace(IMAGE_PLACEHOLDER, "").strip()})
    return out


class LlavaSource:
    """RandomAccessDataSource over a LLaVA conversation file + image root."""

    def __init__(self, path: str, image_root: str = ""):
        data = load_annotations(path)
        if not isinstance(data, list):
            raise ValueError(f"{path}: a LLaVA file is a json list (or jsonl) of conversations")
        self.entries, self.image_root = data, image_root

    def __len__(self) -> int:
        """-> number of conversations."""
        return len(self.entries)

    def __getitem__(self, index) -> dict[str, Any]:
        """int index -> {'key', 'image', 'has_image', 'conversation'}."""
        entry = self.entries[int(index)]
        if isinstance(entry, BadRecordError):
            raise entry
        if not isinstance(entry, dict):
            raise BadRecordError(f"#{index}", "entry is not an object")
        key = str(entry.get("id", f"#{index}"))
        conversation = parse_conversation(entry.get("conversations"), key)
        image = entry.get("image")
        if image is not None and not isinstance(image, str):
            raise BadRecordError(key, "'image' must be a relative path string")
        data = read_bytes(os.path.join(self.image_root, image), key) if image else b""
        return {"key": key, "image": data, "has_image": bool(image), "conversation": conversation}
