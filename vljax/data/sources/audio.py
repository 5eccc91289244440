"""Audio files (AudioCaps style: a folder of wav/flac + captions) and waveform decoding.

wav is read with the stdlib `wave` (8/16/24/32-bit PCM); flac and other formats with `soundfile`.
"""
from __future__ import annotations

import io
import wave

import numpy as np

from vljax.data.sources.files import CaptionedFiles

AUDIO_EXTS = ("wav", "flac", "ogg")


class AudioSource(CaptionedFiles):
    """RandomAccessDataSource: {'key', 'audio': bytes, 'text', 'format'} per (clip, caption)."""

    def __init__(self, root: str, captions: str | None = None, extensions: tuple[str, ...] = AUDIO_EXTS):
        super().__init__(root, extensions, "audio", captions)


def _read_wav(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data)) as w:
        width, channels, rate, n = w.getsampwidth(), w.getnchannels(), w.getframerate(), w.getnframes()
        raw = w.readframes(n)
    if len(raw) != n * width * channels:
        raise ValueError(f"wav truncated: {len(raw)} of {n * width * channels} bytes")
    if width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        x = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8).astype(np.float32) / 2**23
    elif width in (2, 4):
        x = np.frombuffer(raw, f"<i{width}").astype(np.float32) / float(2 ** (8 * width - 1))
    else:
        raise ValueError(f"unsupported wav sample width {width}")
    return x.reshape(-1, channels), rate


def decode_audio(data: bytes, fmt: str = "wav") -> tuple[np.ndarray, int]:
    """Encoded audio -> (float32 [S, C] in [-1, 1], sample rate)."""
    if fmt == "wav":
        return _read_wav(data)
    try:
        import soundfile
    except ImportError as e:
        raise ImportError(f"decoding {fmt!r} audio needs the `soundfile` package (pip install soundfile)") from e
    try:
        x, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as e:  # NOTE: libsndfile errors are RuntimeErrors.
        raise ValueError(f"cannot decode {fmt} audio: {e}") from e
    return x, int(rate)
