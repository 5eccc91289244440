"""Point clouds (.npy [N, C] or .ply; ModelNet / ScanNet style folders) and a small PLY reader.

Folder layout `root/<class>/[<split>/]<name>.{npy,ply}` gives 'label' = index of <class> in the sorted
class folders (-1 for files directly under root); `split` keeps only files with that path component.
"""
from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

from vljax.data.sources.files import list_files, read_bytes

POINT_EXTS = ("npy", "ply")
_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def _parse_ply_header(data: bytes) -> tuple[str, list[tuple[str, int, list[tuple[str, str | tuple]]]], int]:
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise ValueError("not a PLY file (missing 'ply' magic or 'end_header')")
    body = data.index(b"\n", end) + 1
    fmt, elements = None, []
    for line in data[:end].decode("ascii", "replace").splitlines()[1:]:
        parts = line.split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        if parts[0] == "format":
            fmt = parts[1]
        elif parts[0] == "element":
            elements.append((parts[1], int(parts[2]), []))
        elif parts[0] == "property":
            if not elements:
                raise ValueError("PLY property before any element")
            if parts[1] == "list":
                elements[-1][2].append((parts[4], ("list", _PLY_TYPES[parts[2]], _PLY_TYPES[parts[3]])))
            else:
                elements[-1][2].append((parts[2], _PLY_TYPES[parts[1]]))
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise ValueError(f"unsupported PLY format {fmt!r}")
    return fmt, elements, body


def read_ply(data: bytes, fields: tuple[str, ...] = ("x", "y", "z")) -> np.ndarray:
    """PLY bytes (ascii or binary) -> float32 [N, len(fields)] of the vertex element's properties.

    Faces and other elements are skipped; in binary files, elements before 'vertex' must have no
    list properties.
    """
    fmt, elements, body = _parse_ply_header(data)
    for name, count, props in elements:
        if name == "vertex":
            break
        if fmt != "ascii" and any(isinstance(t, tuple) for _, t in props):
            raise ValueError(f"PLY element {name!r} with list properties precedes 'vertex'")
    else:
        raise ValueError("PLY file has no 'vertex' element")
    names = [p for p, _ in props]
    missing = [f for f in fields if f not in names]
    if missing:
        raise ValueError(f"PLY vertex has no properties {missing} (has {names})")
    if any(isinstance(t, tuple) for _, t in props):
        raise ValueError("PLY vertex element with list properties is not supported")
    if fmt == "ascii":
        lines = data[body:].decode("ascii").split("\n")
        skip = sum(c for n, c, _ in elements[: [e[0] for e in elements].index("vertex")])
        cells = [ln.split()[: len(props)] for ln in lines[skip: skip + count]]
        if len(cells) != count or any(len(c) != len(props) for c in cells):
            raise ValueError(f"PLY ascii vertex block truncated: expected {count} rows of {len(props)} values")
        rows = np.array(cells, dtype=np.float64)
        table = {p: rows[:, i] for i, p in enumerate(names)}
    else:
        order = "<" if fmt == "binary_little_endian" else ">"
        offset = body
        for name, c, ps in elements:
            dtype = np.dtype([(p, order + t) for p, t in ps])
            if name == "vertex":
                if len(data) < offset + dtype.itemsize * c:
                    raise ValueError(f"PLY binary vertex block truncated ({len(data) - offset} bytes)")
                table = np.frombuffer(data, dtype, count=c, offset=offset)
                break
            offset += dtype.itemsize * c
    return np.stack([np.asarray(table[f], np.float32) for f in fields], axis=-1)


def decode_points(data: bytes, fmt: str) -> np.ndarray:
    """Encoded point cloud ('npy' or 'ply') -> float32 [N, C] (ply: xyz)."""
    if fmt == "npy":
        x = np.load(io.BytesIO(data), allow_pickle=False)
    elif fmt == "ply":
        x = read_ply(data)
    else:
        raise ValueError(f"unknown point cloud format {fmt!r} (npy, ply)")
    if x.ndim != 2 or x.shape[1] < 3 or x.shape[0] == 0:
        raise ValueError(f"point cloud must be [N>0, C>=3], got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("point cloud has non-finite values")
    return x.astype(np.float32)


class PointCloudSource:
    """RandomAccessDataSource: {'key', 'points': bytes, 'format', 'label': int} per file."""

    def __init__(self, root: str, split: str | None = None, extensions: tuple[str, ...] = POINT_EXTS):
        files = list_files(root, extensions)
        if split is not None:
            files = [f for f in files if split in f.split(os.sep)[:-1]]
        if not files:
            raise ValueError(f"root: no {'/'.join(extensions)} files under {root} (split={split!r})")
        self.root, self.files = root, files
        self.classes = sorted({f.split(os.sep)[0] for f in files if os.sep in f})

    def __len__(self) -> int:
        """-> number of point cloud files."""
        return len(self.files)

    def __getitem__(self, index) -> dict[str, Any]:
        """int index -> {'key', 'points' (encoded bytes), 'format', 'label'}."""
        rel = self.files[int(index)]
        label = self.classes.index(rel.split(os.sep)[0]) if os.sep in rel else -1
        return {"key": rel, "points": read_bytes(os.path.join(self.root, rel), rel),
                "format": rel.rsplit(".", 1)[-1].lower(), "label": np.int32(label)}
