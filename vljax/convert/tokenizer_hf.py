"""A Hugging Face `tokenizer.json` (via the `tokenizers` library) as a vljax tokenizer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence


class HFTokenizer:
    """tokenizer.json -> encode(text) -> ids (no special tokens by default), vocab_size, pad/bos/eos ids.

    NOTE: ids are the checkpoint's own (e.g. CLIP's end-of-text 49407), not vljax's pad=0/bos=1/eos=2
    convention; models converted from the same folder use these ids (see text.pad_id / eos_id).
    """

    def __init__(self, path: str | Path):
        from tokenizers import Tokenizer

        path = Path(path)
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"{file} not found (need a Hugging Face tokenizer.json)")
        self.tok = Tokenizer.from_file(str(file))
        self.vocab_size = self.tok.get_vocab_size(with_added_tokens=True)
        special = {}
        cfg_file = file.parent / "tokenizer_config.json"
        if cfg_file.is_file():
            cfg = json.loads(cfg_file.read_text())
            for role in ("pad", "bos", "eos", "unk"):
                token = cfg.get(f"{role}_token")
                token = token.get("content") if isinstance(token, dict) else token
                special[role] = self.tok.token_to_id(token) if token else None
        self.pad_id, self.bos_id, self.eos_id = special.get("pad"), special.get("bos"), special.get("eos")

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """str -> ids; add_special_tokens=True applies the tokenizer's post-processor (bos/eos)."""
        return self.tok.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: Sequence[int]) -> str:
        """ids -> text (special tokens skipped)."""
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=True)
