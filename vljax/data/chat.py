"""Chat templates for instruction data: conversation -> tokens + label mask (only replies are supervised).

Each turn is rendered as prefix + content + suffix of its role; every segment is tokenized on its own
so the mask boundary is exact. The mask is aligned with `tokens`: loss_mask[i] = 1 means token i is a
target (predicted from tokens[:i]); it covers assistant contents and their end-of-turn suffix, never
system or user text. A conversation whose mask is empty after truncation raises ValueError, so it is
skipped as a bad record instead of training on a zero loss.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import grain
import numpy as np

from vljax.data import tokenizer as tokenizer_lib


@dataclasses.dataclass(frozen=True)
class ChatTemplate:
    """Per-role (prefix, suffix) strings around each turn's content."""

    name: str
    system: tuple[str, str]
    user: tuple[str, str]
    assistant: tuple[str, str]
    default_system: str = ""


TEMPLATES: dict[str, ChatTemplate] = {
    "vicuna": ChatTemplate("vicuna", ("", " "), ("USER: ", " "), ("ASSISTANT: ", "</s>"),
                           default_system="A chat between a curious user and an artificial intelligence "
                                          "assistant. The assistant gives helpful, detailed, and polite "
                                          "answers to the user's questions."),
    "chatml": ChatTemplate("chatml", ("<|im_start|>system\n", "<|im_end|>\n"), ("<|im_start|>user\n", "<|im_end|>\n"),
                           ("<|im_start|>assistant\n", "<|im_end|>\n")),
    # NOTE: LLaVA stage-1 (captioning) data: no role markers, the reply is the caption.
    "plain": ChatTemplate("plain", ("", ""), ("", ""), ("", "\n")),
}


def get_template(name: str) -> ChatTemplate:
    """name -> ChatTemplate (ValueError listing the known ones)."""
    if name not in TEMPLATES:
        raise ValueError(f"template: unknown chat template {name!r} (known: {sorted(TEMPLATES)})")
    return TEMPLATES[name]


def render_segments(conversation: Sequence[Mapping[str, str]], template: ChatTemplate
                    ) -> list[tuple[str, bool]]:
    """[{'role', 'content'}] -> [(text, supervised)] segments in order."""
    turns = list(conversation)
    if template.default_system and not (turns and turns[0].get("role") == "system"):
        turns = [{"role": "system", "content": template.default_system}] + turns
    out: list[tuple[str, bool]] = []
    for n, turn in enumerate(turns):
        role = turn.get("role")
        if role not in ("system", "user", "assistant"):
            raise ValueError(f"conversation turn {n}: role must be system/user/assistant, got {role!r}")
        prefix, suffix = getattr(template, role)
        content = turn.get("content")
        if not isinstance(content, str):
            raise ValueError(f"conversation turn {n}: content must be str, got {type(content).__name__}")
        if role == "assistant":
            out += [(prefix, False), (content + suffix, True)]
        else:
            out.append((prefix + content + suffix, False))
    return out


def tokenize_conversation(conversation: Sequence[Mapping[str, str]], tok: Any, template: ChatTemplate | str,
                          max_len: int, key: str = "") -> dict[str, np.ndarray]:
    """Conversation -> {'tokens': int32 [max_len] (bos + turns, 0-padded), 'loss_mask': bool [max_len]}."""
    template = get_template(template) if isinstance(template, str) else template
    ids, mask = [tokenizer_lib.BOS], [False]
    for text, supervised in render_segments(conversation, template):
        if text:
            piece = tok.encode(text)
            ids += piece
            mask += [supervised] * len(piece)
    ids, mask = ids[:max_len], mask[:max_len]
    if not any(mask):
        raise ValueError(f"conversation {key!r}: no supervised token within max_len={max_len} "
                         f"(no assistant reply, or truncated away); refusing to train on a zero loss")
    tokens = np.zeros((max_len,), np.int32)
    loss_mask = np.zeros((max_len,), bool)
    tokens[: len(ids)] = ids
    loss_mask[: len(mask)] = mask
    return {"tokens": tokens, "loss_mask": loss_mask}


@dataclasses.dataclass(frozen=True)
class ChatTokenize(grain.transforms.Map):
    """'conversation' field -> 'tokens' int32 [max_len] + 'loss_mask' bool [max_len]."""

    tokenizer: Any
    max_len: int
    template: str = "vicuna"
    field: str = "conversation"

    def __post_init__(self):
        get_template(self.template)

    def map(self, element: dict[str, Any]) -> dict[str, Any]:
        """Renders and tokenizes element[field]."""
        out = tokenize_conversation(element[self.field], self.tokenizer, self.template, self.max_len,
                                    key=str(element.get("key", "")))
        return {**element, **out}
