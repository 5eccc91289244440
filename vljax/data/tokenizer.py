"""Tokenizers: the world's word-level vocabulary, or sentencepiece (trained on a corpus or loaded).

All tokenizers share the id convention pad=0, bos=1, eos=2 used by the text towers
(padding is detected as `tokens == 0`).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import numpy as np

PAD, BOS, EOS = 0, 1, 2


class Tokenizer(Protocol):
    vocab_size: int

    def encode(self, text: str) -> list[int]:
        """str -> ids without bos/eos."""


class WorldTokenizer:
    """Word-level tokenizer over `World.vocab` (closed vocabulary: exact, no <unk> on world text)."""

    def __init__(self, vocab):
        self.vocab = vocab
        self.vocab_size = len(vocab)

    def encode(self, text: str) -> list[int]:
        """str -> word ids."""
        return list(self.vocab.ids(text))

    def decode(self, ids: Sequence[int]) -> str:
        """ids -> text (special tokens dropped)."""
        return " ".join(w for w in self.vocab.words([i for i in ids if i > EOS]))


class SentencePieceTokenizer:
    """sentencepiece model with pad=0, bos=1, eos=2 (as trained by `train_sentencepiece`)."""

    def __init__(self, model: str | bytes):
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor()
        if isinstance(model, bytes):
            self.sp.LoadFromSerializedProto(model)
        else:
            self.sp.Load(str(model))
        if self.sp.pad_id() != PAD or self.sp.bos_id() != BOS or self.sp.eos_id() != EOS:
            raise ValueError(f"sentencepiece model must use pad=0 bos=1 eos=2, got pad={self.sp.pad_id()} "
                             f"bos={self.sp.bos_id()} eos={self.sp.eos_id()}; retrain with train_sentencepiece")
        self.vocab_size = self.sp.GetPieceSize()

    def encode(self, text: str) -> list[int]:
        """str -> piece ids."""
        return self.sp.EncodeAsIds(text)

    def decode(self, ids: Sequence[int]) -> str:
        """ids -> text."""
        return self.sp.DecodeIds([int(i) for i in ids if i > EOS])


def train_sentencepiece(texts: Iterable[str], vocab_size: int, path: str | Path | None = None,
                        model_type: str = "unigram") -> SentencePieceTokenizer:
    """Trains a sentencepiece model (byte fallback on) on texts; writes model_path(path) when path is given."""
    import sentencepiece as spm

    if path is not None:
        # NOTE: before training, so that a bad output path fails at once rather than after the work.
        model_path(path).parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.Train(
        sentence_iterator=iter(texts), model_writer=buf, vocab_size=vocab_size, model_type=model_type,
        pad_id=PAD, bos_id=BOS, eos_id=EOS, unk_id=3, byte_fallback=True, hard_vocab_limit=False,
        character_coverage=1.0, minloglevel=2)
    proto = buf.getvalue()
    if path is not None:
        model_path(path).write_bytes(proto)
    return SentencePieceTokenizer(proto)


def model_path(path: str | Path) -> Path:
    """Output prefix -> the .model file train_sentencepiece writes: 'tok' -> tok.model, 'tok_v1.5' ->
    tok_v1.5.model, 'tok.model' -> tok.model."""
    path = Path(path)
    return path if path.suffix == ".model" else path.with_name(path.name + ".model")


def pad_tokens(ids: Sequence[int], max_len: int, bos: bool = True, eos: bool = True, *,
               bos_id: int = BOS, eos_id: int = EOS, pad_id: int = PAD) -> np.ndarray:
    """ids -> int32 [max_len]: [bos] ids [eos] pad..pad, truncated so that eos is always kept."""
    body = list(ids)
    bos, eos = bos and bos_id is not None, eos and eos_id is not None
    room = max_len - int(bos) - int(eos)
    if room < 0:
        raise ValueError(f"max_len={max_len} too small for bos/eos")
    body = ([bos_id] if bos else []) + body[:room] + ([eos_id] if eos else [])
    out = np.full((max_len,), PAD if pad_id is None else pad_id, np.int32)
    out[: len(body)] = body
    return out


def special_ids(tok) -> dict:
    """The tokenizer's bos/eos/pad ids (HF tokenizers carry their own; the rest use 1/2/0)."""
    return dict(bos_id=getattr(tok, "bos_id", BOS), eos_id=getattr(tok, "eos_id", EOS),
                pad_id=getattr(tok, "pad_id", PAD))


def tokenize(tok: Tokenizer, texts: Sequence[str], max_len: int) -> np.ndarray:
    """[B] strings -> int32 [B, max_len]."""
    ids = special_ids(tok)
    return np.stack([pad_tokens(tok.encode(t), max_len, **ids) for t in texts]) if len(texts) else \
        np.zeros((0, max_len), np.int32)


def make_tokenizer(cfg, world=None) -> Tokenizer:
    """config.tokenizer -> tokenizer. kind 'world' (needs a World) or 'sentencepiece' (path)."""
    kind = cfg.get("kind", "world")
    if kind == "world":
        if world is None:
            raise ValueError("config.tokenizer.kind='world' needs the synthetic world as data source")
        return WorldTokenizer(world.vocab)
    if kind == "sentencepiece":
        if not cfg.get("path"):
            raise ValueError("config.tokenizer.path: a sentencepiece .model file is required")
        return SentencePieceTokenizer(cfg.path)
    if kind == "hf":
        if not cfg.get("path"):
            raise ValueError("config.tokenizer.path: a Hugging Face tokenizer.json (or its folder) is required")
        from vljax.convert.tokenizer_hf import HFTokenizer

        # NOTE: ids are the checkpoint's own (e.g. CLIP's end-of-text 49407), not pad=0/bos=1/eos=2.
        return HFTokenizer(cfg.path)
    raise ValueError(f"config.tokenizer.kind: unknown {kind!r} (world, sentencepiece, hf)")


def fingerprint(tok) -> str:
    """Tokenizer -> a short hex digest of its vocabulary (cache keys: any change of ids changes it).

    Memoized on the tokenizer object (example builders call it per example).
    """
    import hashlib

    memo = getattr(tok, "_vljax_fingerprint", None)
    if memo is not None:
        return memo

    h = hashlib.sha1(type(tok).__name__.encode())
    if isinstance(tok, WorldTokenizer):
        h.update("\n".join(tok.vocab.words(range(tok.vocab_size))).encode())
    elif isinstance(tok, SentencePieceTokenizer):
        h.update(tok.sp.serialized_model_proto())
    elif hasattr(tok, "fingerprint"):
        h.update(str(tok.fingerprint()).encode())
    else:
        # NOTE: no way to read the vocabulary: fall back to the ids of a probe string plus the size.
        h.update(repr((tok.vocab_size, list(tok.encode("a photo of a red circle 0123456789")))).encode())
    digest = h.hexdigest()[:16]
    try:
        tok._vljax_fingerprint = digest
    except AttributeError:  # NOTE: tokenizers with __slots__ are simply not memoized.
        pass
    return digest
