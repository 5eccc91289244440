"""COCO-captions json + image folder, and Karpathy-split json (COCO, Flickr30k) -> image-text records.

Records: {'key', 'image': encoded bytes, 'text': one caption, 'image_id': str}; with per='caption'
(training) one record per (image, caption), with per='image' (retrieval eval) one record per image
whose 'text' is its first caption and 'texts' all of them. A malformed annotation entry or a missing
image file is a bad record at read time (skipped by the guard), never an indexing crash.
"""
from __future__ import annotations

import os
from typing import Any

from vljax.data.sources.bad_records import BadRecordError
from vljax.data.sources.files import load_annotations, read_bytes

KARPATHY_SPLITS = ("train", "restval", "val", "test")


class _CaptionSource:
    """Index of (key, image path | error, captions) -> random-access image-text records."""

    def __init__(self, entries: list[tuple[str, str | BadRecordError, list[str]]], per: str):
        if per not in ("caption", "image"):
            raise ValueError(f"per must be 'caption' or 'image', got {per!r}")
        self.per = per
        self._entries = entries
        self._index = ([(e, c) for e, (_, _, caps) in enumerate(entries) for c in range(max(len(caps), 1))]
                       if per == "caption" else [(e, 0) for e in range(len(entries))])

    def __len__(self) -> int:
        """-> number of records."""
        return len(self._index)

    def __getitem__(self, index) -> dict[str, Any]:
        """int index -> {'key', 'image', 'text', 'image_id'} (+ 'texts' when per='image')."""
        e, c = self._index[int(index)]
        image_id, path, captions = self._entries[e]
        key = f"{image_id}/{c}" if self.per == "caption" else image_id
        if isinstance(path, BadRecordError):
            raise BadRecordError(key, path)
        if not captions or not all(isinstance(t, str) for t in captions):
            raise BadRecordError(key, "annotation has no caption string")
        out = {"key": key, "image": read_bytes(path, key), "text": captions[c].strip(), "image_id": image_id}
        if self.per == "image":
            out["texts"] = [t.strip() for t in captions]
        return out


class CocoCaptionsSource(_CaptionSource):
    """COCO captions_{split}.json ('images': id/file_name, 'annotations': image_id/caption) + image dir."""

    def __init__(self, annotations: str, image_dir: str, per: str = "caption"):
        data = load_annotations(annotations)
        if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
            raise ValueError(f"{annotations}: not a COCO captions file (needs 'images' and 'annotations')")
        paths: dict[str, str | BadRecordError] = {}
        captions: dict[str, list[str]] = {}
        for n, im in enumerate(data["images"]):
            image_id = str(im.get("id", f"images[{n}]")) if isinstance(im, dict) else f"images[{n}]"
            name = im.get("file_name") if isinstance(im, dict) else None
            paths[image_id] = (os.path.join(image_dir, name) if isinstance(name, str)
                               else BadRecordError(image_id, "image entry has no 'file_name'"))
            captions.setdefault(image_id, [])
        for ann in data["annotations"]:
            if isinstance(ann, dict) and str(ann.get("image_id")) in captions:
                captions[str(ann["image_id"])].append(ann.get("caption"))
        entries = [(i, paths[i], captions[i]) for i in paths]
        super().__init__(entries, per)


class KarpathySource(_CaptionSource):
    """Karpathy-split json (dataset_coco.json, dataset_flickr30k.json) -> one split's records.

    COCO entries carry 'filepath' (train2014/val2014) joined under image_root; Flickr30k has none.
    split='train' with include_restval=True adds COCO's 'restval' images (the usual 113k train set).
    """

    def __init__(self, path: str, image_root: str, split: str = "train", per: str = "caption",
                 include_restval: bool = True):
        if split not in KARPATHY_SPLITS:
            raise ValueError(f"split must be one of {KARPATHY_SPLITS}, got {split!r}")
        data = load_annotations(path)
        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            raise ValueError(f"{path}: not a Karpathy split file (needs an 'images' list)")
        splits = {split} | ({"restval"} if split == "train" and include_restval else set())
        entries = []
        for n, im in enumerate(data["images"]):
            if not isinstance(im, dict):
                entries.append((f"images[{n}]", BadRecordError(f"images[{n}]", "entry is not an object"), []))
                continue
            if im.get("split") not in splits:
                continue
            image_id = str(im.get("cocoid", im.get("imgid", f"images[{n}]")))
            name = im.get("filename")
            path_ = (os.path.join(image_root, im.get("filepath", ""), name) if isinstance(name, str)
                     else BadRecordError(image_id, "entry has no 'filename'"))
            sents = im.get("sentences")
            caps = [s.get("raw") if isinstance(s, dict) else None for s in sents] if isinstance(sents, list) else []
            entries.append((image_id, path_, caps))
        super().__init__(entries, per)


Flickr30kSource = KarpathySource
