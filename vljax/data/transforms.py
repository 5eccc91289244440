"""Typed, composable grain transforms for real data: image, text, video, audio, point clouds.

Each transform is a frozen dataclass subclassing `grain.transforms.Map` (deterministic) or
`grain.transforms.RandomMap` (takes the per-element rng grain derives from (seed, index)); each reads
and writes named fields of a dict element, so chains compose by field name:

    [DecodeImage(), RandomResizedCrop(224), RandomFlip(), Normalize(), Tokenize(tok, 64)]

Decoders raise ValueError / OSError on corrupt input, which `sources.GuardedMap` counts as a bad record.
"""
from __future__ import annotations

import dataclasses
import io
import math
from typing import Any, Sequence

import grain
import numpy as np

from vljax.data import tokenizer as tokenizer_lib

Element = dict[str, Any]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive, got {size}")
    return int(h), int(w)


def _resize(image: np.ndarray, hw: tuple[int, int], method: str) -> np.ndarray:
    from PIL import Image

    resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST,
                "area": Image.BOX}[method]
    return np.asarray(Image.fromarray(image).resize((hw[1], hw[0]), resample=resample))


# ------------------------------------------------------------------------------------------ image


@dataclasses.dataclass(frozen=True)
class DecodeImage(grain.transforms.Map):
    """field: encoded bytes (jpeg/png/webp/...) or uint8 array -> uint8 [H, W, 3]."""

    field: str = "image"

    def map(self, element: Element) -> Element:
        """Decodes element[field] to RGB."""
        from PIL import Image

        value = element[self.field]
        if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 3:
            return element
        if not isinstance(value, (bytes, np.bytes_)) or not len(value):
            raise ValueError(f"{self.field}: expected encoded image bytes, got {type(value).__name__} "
                             f"of length {len(value) if hasattr(value, '__len__') else '?'}")
        with Image.open(io.BytesIO(bytes(value))) as im:
            im.load()  # NOTE: forces the full decode here, so truncated files fail in the guard.
            rgb = np.asarray(im.convert("RGB"))
        return {**element, self.field: rgb}


@dataclasses.dataclass(frozen=True)
class Resize(grain.transforms.Map):
    """uint8 [H, W, C] -> [h, w, C]; an int size with keep_aspect=True resizes the shorter side to it."""

    size: int | tuple[int, int]
    field: str = "image"
    method: str = "bilinear"
    keep_aspect: bool = False

    def map(self, element: Element) -> Element:
        """Resizes element[field]."""
        image = element[self.field]
        if self.keep_aspect:
            if not isinstance(self.size, int):
                raise ValueError("size: keep_aspect=True needs an int size (the shorter side)")
            h, w = image.shape[:2]
            s = self.size / min(h, w)
            hw = (max(1, round(h * s)), max(1, round(w * s)))
        else:
            hw = _pair(self.size)
        return {**element, self.field: _resize(image, hw, self.method)}


@dataclasses.dataclass(frozen=True)
class CenterCrop(grain.transforms.Map):
    """[H, W, C] -> [h, w, C] central crop (ValueError if the image is smaller)."""

    size: int | tuple[int, int]
    field: str = "image"

    def map(self, element: Element) -> Element:
        """Crops the center of element[field]."""
        image = element[self.field]
        h, w = _pair(self.size)
        H, W = image.shape[:2]
        if h > H or w > W:
            raise ValueError(f"{self.field}: center crop {h}x{w} larger than image {H}x{W}")
        top, left = (H - h) // 2, (W - w) // 2
        return {**element, self.field: image[top:top + h, left:left + w]}


def sample_crop_box(H: int, W: int, scale: tuple[float, float], ratio: tuple[float, float],
                    rng: np.random.Generator, tries: int = 10) -> tuple[int, int, int, int]:
    """Inception-style crop: (top, left, h, w) of area in scale*H*W and aspect (w/h) log-uniform in ratio."""
    area = H * W
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(tries):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_r))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= W and 0 < h <= H:
            return int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1)), h, w
    # NOTE: fallback is the central crop at the clamped aspect ratio, as in the Inception recipe.
    in_ratio = W / H
    if in_ratio < ratio[0]:
        w, h = W, int(round(W / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = H, int(round(H * ratio[1]))
    else:
        h, w = H, W
    return (H - h) // 2, (W - w) // 2, h, w


@dataclasses.dataclass(frozen=True)
class RandomResizedCrop(grain.transforms.RandomMap):
    """uint8 [H, W, C] -> [size, size, C]: random area/aspect crop, then resize."""

    size: int | tuple[int, int]
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    field: str = "image"
    method: str = "bilinear"

    def __post_init__(self):
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < lo <= hi <= 1, got {self.scale}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < lo <= hi, got {self.ratio}")

    def random_map(self, element: Element, rng: np.random.Generator) -> Element:
        """Crops and resizes element[field]."""
        image = element[self.field]
        top, left, h, w = sample_crop_box(*image.shape[:2], self.scale, self.ratio, rng)
        crop = image[top:top + h, left:left + w]
        return {**element, self.field: _resize(np.ascontiguousarray(crop), _pair(self.size), self.method)}


@dataclasses.dataclass(frozen=True)
class RandomFlip(grain.transforms.RandomMap):
    """[..., H, W, C] -> horizontally flipped with probability p (applies to images and video)."""

    p: float = 0.5
    field: str = "image"

    def random_map(self, element: Element, rng: np.random.Generator) -> Element:
        """Flips element[field] left-right with probability p."""
        if rng.random() < self.p:
            return {**element, self.field: np.ascontiguousarray(element[self.field][..., ::-1, :])}
        return element


@dataclasses.dataclass(frozen=True)
class Normalize(grain.transforms.Map):
    """uint8 [..., C] -> float32 (x / 255 - mean) / std."""

    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    field: str = "image"
    dtype: Any = np.float32

    def map(self, element: Element) -> Element:
        """Normalizes element[field]."""
        x = np.asarray(element[self.field], np.float32) / 255.0
        out = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return {**element, self.field: out.astype(self.dtype)}


def patchify(image: np.ndarray, patch: int) -> np.ndarray:
    """[H, W, C] -> [(H/p)*(W/p), p*p*C] row-major patches (pixels within a patch row-major, then C)."""
    H, W, C = image.shape
    if H % patch or W % patch:
        raise ValueError(f"patch={patch} does not divide image {H}x{W}")
    x = image.reshape(H // patch, patch, W // patch, patch, C).transpose(0, 2, 1, 3, 4)
    return x.reshape((H // patch) * (W // patch), patch * patch * C)


@dataclasses.dataclass(frozen=True)
class Patchify(grain.transforms.Map):
    """[H, W, C] -> [N, p*p*C] patches (writes `out`, default same field)."""

    patch: int
    field: str = "image"
    out: str | None = None

    def map(self, element: Element) -> Element:
        """Patchifies element[field]."""
        return {**element, self.out or self.field: patchify(np.asarray(element[self.field]), self.patch)}


# ------------------------------------------------------------------------------------------- text


@dataclasses.dataclass(frozen=True)
class SampleText(grain.transforms.RandomMap):
    """field 'texts' (list of str) -> 'text' = one of them chosen uniformly."""

    field: str = "texts"
    out: str = "text"

    def random_map(self, element: Element, rng: np.random.Generator) -> Element:
        """Picks one caption."""
        texts = element[self.field]
        if not len(texts):
            raise ValueError(f"{self.field}: empty caption list")
        return {**element, self.out: texts[int(rng.integers(len(texts)))]}


# NOTE: the modifiers a caption can lose and stay a caption of the same scene, by WORLD.md 3.2 span type (the ids
# of vljax.data.world.language.realize, not imported so that real-data pipelines do not load the world; a test
# keeps them equal). The noun, counts, positions and relations carry the phrase's structure and stay.
DROPPABLE_ATTRIBUTES = {"size": 2, "color": 3, "texture": 5}
_COUNT_SPAN = 1


def _span_types(attributes: Sequence[str]) -> set[int]:
    """Attribute names -> their span type ids; unknown names or none at all fail."""
    bad = [a for a in attributes if a not in DROPPABLE_ATTRIBUTES]
    if bad or not attributes:
        raise ValueError(f"attributes={tuple(attributes)}: give one or more of {sorted(DROPPABLE_ATTRIBUTES)} "
                         "(the words a caption can lose and still describe its scene)")
    return {DROPPABLE_ATTRIBUTES[a] for a in attributes}


def drop_attribute_words(text: str, spans: np.ndarray, attributes: Sequence[str], p: float,
                         rng: np.random.Generator) -> str:
    """Caption + its world span table int32 [S, 5] -> the caption with each attribute word dropped w.p. p.

    "a medium red square and a large blue circle" -> e.g. "a square and a large circle". Each span of a
    type in `attributes` (names of DROPPABLE_ATTRIBUTES) is dropped independently. An English indefinite
    article is re-chosen for the word that now follows it ("an orange circle" -> "a circle").
    """
    types = _span_types(attributes)
    spans = np.asarray(spans)
    valid = spans[spans[:, 0] >= 0]
    valid = valid[np.argsort(valid[:, 0], kind="stable")]
    # NOTE: one draw per span, in span order, whether or not it is droppable, so the draws for one attribute
    # do not depend on which others are listed.
    drop = rng.random(len(valid)) < p
    pieces, pos, article = [], 0, None
    for (start, end, kind, _, concept), d in zip(valid.tolist(), drop):
        if kind in types and d:
            pieces.append(text[pos:start])
            pos = end
            continue
        if article is not None:
            # NOTE: the first kept word after an indefinite article decides a / an.
            pieces[article] = "an" if text[start:end][:1].lower() in "aeiou" else "a"
            article = None
        pieces.append(text[pos:start])
        if kind == _COUNT_SPAN and concept == 1 and text[start:end] in ("a", "an"):
            article = len(pieces)
        pieces.append(text[start:end])
        pos = end
    pieces.append(text[pos:])
    return " ".join("".join(pieces).split())


@dataclasses.dataclass(frozen=True)
class DropAttributeWords(grain.transforms.RandomMap):
    """str field + its span table -> the same caption with each size / color / texture word dropped w.p. `p`.

    Caption augmentation for contrastive pre-training on the world: captions that sometimes omit an attribute
    make the image tower match on the attributes left, and put the text tower's bare class prompts ("a
    square") on the training distribution (docs/clip_shape_study.md, caption attribute dropout).
    """

    p: float
    attributes: Sequence[str] = ("size", "color")
    field: str = "caption"
    spans_field: str = "spans/short"

    def __post_init__(self):
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"attribute word drop probability p={self.p} is outside [0, 1]")
        _span_types(self.attributes)

    def random_map(self, element: Element, rng: np.random.Generator) -> Element:
        """Rewrites element[field] from element[spans_field]."""
        for k in (self.field, self.spans_field):
            if k not in element:
                raise KeyError(f"DropAttributeWords: field {k!r} missing from the sample; available: {sorted(element)}")
        text = drop_attribute_words(str(element[self.field]), element[self.spans_field], self.attributes, self.p, rng)
        return {**element, self.field: text}


@dataclasses.dataclass(frozen=True)
class Tokenize(grain.transforms.Map):
    """str field -> int32 [max_len]: bos ids eos, truncated (eos kept) and zero-padded."""

    tokenizer: Any
    max_len: int
    field: str = "text"
    out: str = "tokens"
    bos: bool = True
    eos: bool = True

    def map(self, element: Element) -> Element:
        """Tokenizes element[field] into element[out]."""
        text = element[self.field]
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if not isinstance(text, str):
            raise ValueError(f"{self.field}: expected str, got {type(text).__name__}")
        ids = tokenizer_lib.pad_tokens(self.tokenizer.encode(text), self.max_len, bos=self.bos, eos=self.eos)
        return {**element, self.out: ids}


# ------------------------------------------------------------------------------------------ video


def sample_frame_indices(num: int, num_frames: int, mode: str, rng: np.random.Generator | None = None,
                         native_fps: float = 0.0, fps: float = 0.0) -> np.ndarray:
    """Frame count -> int [num_frames] indices: 'uniform' segment centers, 'random_segment' one random
    frame per equal segment (TSN), 'fps' every 1/fps seconds from t=0 (last frame repeated past the end)."""
    if num <= 0 or num_frames <= 0:
        raise ValueError(f"need num > 0 and num_frames > 0, got {num}, {num_frames}")
    if mode == "uniform":
        return np.minimum(((np.arange(num_frames) + 0.5) * num / num_frames).astype(np.int64), num - 1)
    if mode == "random_segment":
        if rng is None:
            raise ValueError("mode='random_segment' needs an rng")
        edges = np.arange(num_frames + 1) * num / num_frames
        lo = np.floor(edges[:-1]).astype(np.int64)
        hi = np.maximum(np.floor(edges[1:]).astype(np.int64), lo + 1)
        return np.minimum(lo + (rng.random(num_frames) * (hi - lo)).astype(np.int64), num - 1)
    if mode == "fps":
        if fps <= 0 or native_fps <= 0:
            raise ValueError(f"mode='fps' needs fps > 0 and a known native fps, got {fps}, {native_fps}")
        return np.minimum(np.round(np.arange(num_frames) * native_fps / fps).astype(np.int64), num - 1)
    raise ValueError(f"mode must be 'uniform', 'random_segment' or 'fps', got {mode!r}")


@dataclasses.dataclass(frozen=True)
class DecodeVideo(grain.transforms.RandomMap):
    """field: encoded video bytes -> uint8 [T, H, W, 3] (+ 'frame_indices' int32 [T]); resized if size."""

    num_frames: int
    mode: str = "uniform"
    fps: float = 0.0
    size: int | tuple[int, int] | None = None
    field: str = "video"

    def __post_init__(self):
        sample_frame_indices(8, 1, self.mode, np.random.default_rng(0), 1.0, self.fps or 1.0)
        if self.mode == "fps" and self.fps <= 0:
            raise ValueError("fps: mode='fps' needs fps > 0")

    def random_map(self, element: Element, rng: np.random.Generator) -> Element:
        """Decodes the chosen frames of element[field]."""
        from vljax.data.sources.video import decode_frames

        frames, idx = decode_frames(bytes(element[self.field]), lambda n, native: sample_frame_indices(
            n, self.num_frames, self.mode, rng, native, self.fps))
        if self.size is not None:
            hw = _pair(self.size)
            frames = np.stack([_resize(f, hw, "bilinear") for f in frames])
        return {**element, self.field: frames, "frame_indices": idx}


# ------------------------------------------------------------------------------------------ audio


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """-> float32 [n_fft//2+1, n_mels] triangular filters, HTK mel scale, Slaney area normalization."""
    fmax = sample_rate / 2 if fmax is None else fmax
    hz_to_mel = lambda f: 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)
    mel_to_hz = lambda m: 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)
    hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lower = (bins[:, None] - hz[None, :-2]) / (hz[1:-1] - hz[:-2])[None]
    upper = (hz[None, 2:] - bins[:, None]) / (hz[2:] - hz[1:-1])[None]
    fb = np.maximum(0.0, np.minimum(lower, upper)) * (2.0 / (hz[2:] - hz[:-2]))[None]
    return fb.astype(np.float32)


def log_mel(wave: np.ndarray, sample_rate: int, n_fft: int = 400, hop: int = 160, n_mels: int = 80,
            floor: float = 1e-10) -> np.ndarray:
    """float [S] waveform -> float32 [1 + S // hop, n_mels] log power mel (centered, reflect-padded, Hann)."""
    wave = np.asarray(wave, np.float32)
    if wave.ndim != 1:
        raise ValueError(f"wave must be mono [S], got {wave.shape}")
    if wave.size < 2:
        raise ValueError("wave is empty")
    pad = n_fft // 2
    x = np.pad(wave, (pad, pad), mode="reflect" if wave.size > pad else "constant")
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2
    return np.log(np.maximum(power @ mel_filterbank(sample_rate, n_fft, n_mels), floor)).astype(np.float32)


def resample_linear(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """float [S] at rate -> [round(S * target / rate)] at target by linear interpolation."""
    if rate == target:
        return wave
    n = int(round(len(wave) * target / rate))
    return np.interp(np.arange(n) * (rate / target), np.arange(len(wave)), wave).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class DecodeAudio(grain.transforms.Map):
    """field: encoded wav/flac bytes -> float32 [S] mono at sample_rate (channels averaged)."""

    sample_rate: int = 16000
    field: str = "audio"
    format_field: str = "format"

    def map(self, element: Element) -> Element:
        """Decodes element[field] to a mono waveform."""
        from vljax.data.sources.audio import decode_audio

        x, rate = decode_audio(bytes(element[self.field]), str(element.get(self.format_field, "wav")))
        return {**element, self.field: resample_linear(x.mean(axis=1), rate, self.sample_rate)}


@dataclasses.dataclass(frozen=True)
class LogMel(grain.transforms.Map):
    """float32 [S] -> "mel" float32 [max_frames, n_mels] (cropped, padded with log(1e-10)) + "mel_mask" bool."""

    sample_rate: int = 16000
    max_frames: int = 1000
    n_fft: int = 400
    hop: int = 160
    n_mels: int = 80
    field: str = "audio"
    out: str = "mel"

    def map(self, element: Element) -> Element:
        """Computes the log-mel spectrogram of element[field]."""
        mel = log_mel(element[self.field], self.sample_rate, self.n_fft, self.hop, self.n_mels)[: self.max_frames]
        out = np.full((self.max_frames, self.n_mels), np.log(1e-10), np.float32)
        out[: len(mel)] = mel
        mask = np.zeros((self.max_frames,), bool)
        mask[: len(mel)] = True
        return {**element, self.out: out, f"{self.out}_mask": mask}


# ----------------------------------------------------------------------------------- point clouds


@dataclasses.dataclass(frozen=True)
class DecodePoints(grain.transforms.Map):
    """field: encoded .npy/.ply bytes -> float32 [N, C]."""

    field: str = "points"
    format_field: str = "format"

    def map(self, element: Element) -> Element:
        """Decodes element[field]."""
        from vljax.data.sources.points import decode_points

        value = element[self.field]
        if isinstance(value, np.ndarray) and value.dtype != np.uint8:
            return element
        return {**element, self.field: decode_points(bytes(value), str(element.get(self.format_field, "npy")))}


@dataclasses.dataclass(frozen=True)
class SamplePoints(grain.transforms.RandomMap):
    """[N, C] -> [num_points, C]: without replacement when N >= num_points, else with."""

    num_points: int
    field: str = "points"

    def random_map(self, element: Element, rng: np.random.Generator) -> Element:
        """Subsamples element[field]."""
        pts = element[self.field]
        idx = rng.choice(len(pts), self.num_points, replace=len(pts) < self.num_points)
        return {**element, self.field: pts[idx]}


@dataclasses.dataclass(frozen=True)
class NormalizePoints(grain.transforms.Map):
    """[N, C] -> xyz centered on the centroid and scaled into the unit sphere (other channels kept)."""

    field: str = "points"

    def map(self, element: Element) -> Element:
        """Normalizes element[field]."""
        pts = np.array(element[self.field], np.float32)
        xyz = pts[:, :3] - pts[:, :3].mean(axis=0)
        radius = np.sqrt((xyz ** 2).sum(axis=1)).max()
        pts[:, :3] = xyz / max(float(radius), 1e-12)
        return {**element, self.field: pts}


# ---------------------------------------------------------------------------------------- structure


@dataclasses.dataclass(frozen=True)
class KeepFields(grain.transforms.Map):
    """dict -> only the named fields (drop bytes / strings / lists before batching)."""

    fields: tuple[str, ...]

    def map(self, element: Element) -> Element:
        """Selects fields (KeyError naming a missing one)."""
        missing = [f for f in self.fields if f not in element]
        if missing:
            raise KeyError(f"fields {missing} missing from element; available: {sorted(element)}")
        return {f: element[f] for f in self.fields}
