"""Video files (MSR-VTT style: a folder of clips + captions) and frame decoding with PyAV (`av`).

The source yields encoded bytes; `transforms.DecodeVideo` picks frame indices (uniform,
random-segment, fixed fps) and calls `decode_frames`, which decodes up to the last needed frame.
"""
from __future__ import annotations

import io
from typing import Callable

import numpy as np

from vljax.data.sources.files import CaptionedFiles

VIDEO_EXTS = ("mp4", "avi", "mkv", "webm", "mov")


class VideoSource(CaptionedFiles):
    """RandomAccessDataSource: {'key', 'video': bytes, 'text', 'format'} per (clip, caption)."""

    def __init__(self, root: str, captions: str | None = None, extensions: tuple[str, ...] = VIDEO_EXTS):
        super().__init__(root, extensions, "video", captions)


def probe(data: bytes) -> tuple[int, float]:
    """Encoded video -> (frame count, frames per second) from the container (count 0 if unknown)."""
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        return int(stream.frames or 0), float(stream.average_rate or stream.guessed_rate or 0.0)


def decode_frames(data: bytes, choose: Callable[[int, float], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Encoded video, choose(num_frames, fps) -> [T] indices  ->  (uint8 [T, H, W, 3], int32 [T] indices)."""
    import av

    try:
        return _decode_frames(data, choose)
    except av.error.FFmpegError as e:  # NOTE: not all FFmpeg errors derive from OSError/ValueError.
        raise ValueError(f"cannot decode video: {e}") from e


def _decode_frames(data: bytes, choose: Callable[[int, float], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    import av

    num, fps = probe(data)
    if num <= 0:
        # NOTE: some containers do not store a frame count; count by demuxing packets (no decoding).
        with av.open(io.BytesIO(data)) as container:
            num = sum(1 for p in container.demux(video=0) if p.size)
    if num <= 0:
        raise ValueError("video has no frames")
    indices = np.asarray(choose(num, fps), np.int64)
    if indices.size == 0 or indices.min() < 0 or indices.max() >= num:
        raise ValueError(f"frame indices {indices} out of range for {num} frames")
    wanted = set(indices.tolist())
    frames: dict[int, np.ndarray] = {}
    last = int(indices.max())
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for n, frame in enumerate(container.decode(stream)):
            if n in wanted:
                frames[n] = frame.to_ndarray(format="rgb24")
            if n >= last:
                break
    missing = wanted - frames.keys()
    if missing:
        # NOTE: the container over-reported its frame count; use the last decoded frame, as loaders do.
        if not frames:
            raise ValueError("no frame could be decoded")
        tail = frames[max(frames)]
        frames.update({m: tail for m in missing})
    return np.stack([frames[int(i)] for i in indices]), indices.astype(np.int32)
