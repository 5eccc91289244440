"""Format name + paths -> source object (used by `vljax data convert` and `vljax tokenizer train`)."""
from __future__ import annotations

from typing import Any, Callable

FORMATS = ("array_record", "webdataset", "coco", "karpathy", "llava", "video", "audio", "points", "tfds",
           "world")


def open_source(fmt: str, input: str, *, images: str = "", captions: str | None = None, split: str = "train",
                data_dir: str | None = None) -> Any:
    """(format, input path/pattern/name) -> random-access source; ValueError naming an unknown format."""
    from vljax.data import sources as s

    builders: dict[str, Callable[[], Any]] = {
        "array_record": lambda: s.ArrayRecordSource(input),
        "webdataset": lambda: s.WebDatasetSource(input),
        "coco": lambda: s.CocoCaptionsSource(input, images),
        "karpathy": lambda: s.KarpathySource(input, images, split=split),
        "llava": lambda: s.LlavaSource(input, images),
        "video": lambda: s.VideoSource(input, captions),
        "audio": lambda: s.AudioSource(input, captions),
        "points": lambda: s.PointCloudSource(input, split=split or None),
        "tfds": lambda: s.TfdsSource(input, split, data_dir=data_dir),
        "world": lambda: _world_source(input, split),
    }
    if fmt not in builders:
        raise ValueError(f"format: unknown {fmt!r} (known: {', '.join(FORMATS)})")
    return builders[fmt]()


class WorldImageText:
    """World split as an image-text source: {'key', 'image': uint8 [H, W, 3], 'text': caption}."""

    def __init__(self, preset: str, split: str):
        from vljax.data.world import World, get_config

        self.split = split
        self._source = World(get_config(preset)).source(split, fields=("image", "caption"))

    def __len__(self) -> int:
        """-> split size."""
        return len(self._source)

    def __getitem__(self, index) -> dict:
        """int index -> {'key', 'image', 'text'}."""
        s = self._source[int(index)]
        return {"key": f"world/{self.split}#{int(index)}", "image": s["image"], "text": s["caption"]}


def _world_source(preset: str, split: str):
    return WorldImageText(preset, split)
