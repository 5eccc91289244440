"""Any TFDS dataset prepared in array_record format, read through `tfds.data_source` (no tensorflow).

`fields` renames features ({'image': 'image', 'text': 'caption'} keeps 'image' and maps the TFDS
'caption' feature to 'text'); Text features arrive as bytes and are decoded to str.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from vljax.data.sources.bad_records import BadRecordError


class TfdsSource:
    """RandomAccessDataSource over `tfds.data_source(name, split, data_dir)` with renamed fields."""

    def __init__(self, name: str, split: str, data_dir: str | None = None,
                 fields: Mapping[str, str] | None = None, text_fields: tuple[str, ...] = ("text",)):
        import tensorflow_datasets as tfds

        self.name, self.split = name, split
        try:
            self._source = tfds.data_source(name, split=split, data_dir=data_dir)
        except Exception as e:  # NOTE: tfds raises its own error types for missing datasets.
            # NOTE: first lines only: for an unknown name tfds appends its whole catalogue (hundreds of lines).
            lines = str(e).strip().splitlines()
            reason = " ".join(lines[:3]) + (f" ... ({len(lines) - 3} more lines)" if len(lines) > 3 else "")
            raise ValueError(f"tfds dataset {name!r} split {split!r} in data_dir={data_dir!r} cannot be "
                             f"opened (prepare it with file_format='array_record'): {reason}") from e
        self.fields = dict(fields) if fields is not None else None
        features = getattr(getattr(self._source, "dataset_info", None), "features", None)
        if self.fields is not None and features is not None:
            missing = sorted(set(self.fields.values()) - set(features.keys()))
            if missing:
                raise ValueError(f"fields: tfds features {missing} not in {name!r} (has {sorted(features.keys())})")
        self.text_fields = text_fields

    def __len__(self) -> int:
        """-> number of examples in the split."""
        return len(self._source)

    def __getitem__(self, index) -> dict[str, Any]:
        """int index -> {'key', renamed features...} (text fields as str)."""
        key = f"{self.name}/{self.split}#{int(index)}"
        try:
            example = self._source[int(index)]
        except Exception as e:  # NOTE: a corrupt serialized example surfaces as a proto/parse error.
            raise BadRecordError(key, e) from e
        if self.fields is None:
            out = dict(example)
        else:
            missing = [f for f in self.fields.values() if f not in example]
            if missing:
                raise KeyError(f"fields: tfds features {missing} not in {sorted(example)}")
            out = {dst: example[src] for dst, src in self.fields.items()}
        for f in self.text_fields:
            v = out.get(f)
            if isinstance(v, (bytes, np.bytes_)):
                out[f] = bytes(v).decode("utf-8")
        out["key"] = key
        return out

    def __repr__(self) -> str:
        """-> short description."""
        return f"TfdsSource({self.name!r}, split={self.split!r}, {len(self)} examples)"
