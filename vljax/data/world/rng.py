"""Counter-based randomness for the synthetic world (WORLD.md, principle 1).

Every random draw is a pure function of (seed, split, index, stream): there is no
hidden state and no global ``np.random``. Philox is a counter-based generator, so
building one per (index, stream) is cheap and exactly reproducible across
processes, hosts and platforms.
"""
from __future__ import annotations

import threading
import zlib

import numpy as np

# NOTE: stream ids are part of the data format: never renumber, only append.
STREAMS = {
    "layout": 0,
    "attributes": 1,
    "style": 2,
    "caption": 3,
    "qa": 4,
    "refs": 5,
    "contrast": 6,
    "preference": 7,
    "counterfactual": 8,
    "video": 9,
    "audio": 10,
    "points": 11,
    "rgbd": 12,
    "noise": 13,
    "language": 14,
    "class": 15,
    "supervision": 16,
    "detector": 17,
    "conversation": 18,
    "pope": 19,
    "room": 20,
    "surgical": 21,
    "split": 22,
}


def split_key(split: str) -> int:
    """str -> uint32 key of a split name (crc32; never Python's salted hash())."""
    return zlib.crc32(split.encode("utf-8")) & 0xFFFFFFFF


def stream_rng(seed: int, split: str, index: int, stream: str | int) -> np.random.Generator:
    """(seed, split, index, stream) -> an independent numpy Generator (Philox)."""
    sid = STREAMS[stream] if isinstance(stream, str) else int(stream)
    if not 0 <= sid < 256:
        raise ValueError(f"stream id {sid} out of range [0, 256)")
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    k0 = ((int(seed) & 0xFFFFFFFF) << 32) | split_key(split)
    k1 = (int(index) << 8) | sid
    # NOTE: an explicit uint64 array: a tuple of Python ints >= 2**63 goes through float64 and loses bits.
    key = np.array([k0 & (2**64 - 1), k1 & (2**64 - 1)], dtype=np.uint64)
    return np.random.Generator(np.random.Philox(key=key))


_LOCAL = threading.local()


def stream_uniforms(seed: int, split: str, index: int, stream: str | int, n: int) -> np.ndarray:
    """(seed, split, index, stream) -> float64 [n] uniforms; equal to `stream_rng(...).random(n)`.

    NOTE: fast path for hot loops: re-keys one thread-local Philox instead of building a new
    generator (3x cheaper); no generator escapes, so callers cannot alias each other's streams.
    """
    sid = STREAMS[stream] if isinstance(stream, str) else int(stream)
    if not 0 <= sid < 256:
        raise ValueError(f"stream id {sid} out of range [0, 256)")
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    gen = getattr(_LOCAL, "gen", None)
    if gen is None:
        gen = _LOCAL.gen = np.random.Generator(np.random.Philox(key=(0, 0)))
        _LOCAL.state = gen.bit_generator.state
    state = _LOCAL.state
    k0 = ((int(seed) & 0xFFFFFFFF) << 32) | split_key(split)
    state["state"]["key"][:] = (k0 & (2**64 - 1), ((int(index) << 8) | sid) & (2**64 - 1))
    state["state"]["counter"][:] = 0
    state["buffer_pos"] = 4
    state["has_uint32"] = 0
    gen.bit_generator.state = state
    return gen.random(n)


def stream_generator(seed: int, split: str, index: int, stream: str | int) -> np.random.Generator:
    """(seed, split, index, stream) -> a Generator equal to `stream_rng(...)`, valid until the next call.

    NOTE: re-keys one thread-local Philox (no allocation); a caller must finish with one stream before it
    asks for the next, so use it only for streams consumed strictly in sequence inside one function.
    """
    sid = STREAMS[stream] if isinstance(stream, str) else int(stream)
    if not 0 <= sid < 256:
        raise ValueError(f"stream id {sid} out of range [0, 256)")
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    gen = getattr(_LOCAL, "seq_gen", None)
    if gen is None:
        gen = _LOCAL.seq_gen = np.random.Generator(np.random.Philox(key=(0, 0)))
        _LOCAL.seq_state = gen.bit_generator.state
    state = _LOCAL.seq_state
    k0 = ((int(seed) & 0xFFFFFFFF) << 32) | split_key(split)
    state["state"]["key"][:] = (k0 & (2**64 - 1), ((int(index) << 8) | sid) & (2**64 - 1))
    state["state"]["counter"][:] = 0
    state["buffer_pos"] = 4
    state["has_uint32"] = 0
    state["uinteger"] = 0
    gen.bit_generator.state = state
    return gen
