"""Grounding (referring expression comprehension) accuracy when boxes are emitted as text.

Prompt: "where is <ref/text> ? answer with a box ." (the world conversation's `rec` task). The answer is a box in
the world's serialization, "[x1,y1,x2,y2]" with integers 0..99 = round(99 * normalized coordinate)
(`vljax.data.world.conversation.format_box` / `parse_box`). The word-level world tokenizer emits every digit
and bracket as its own token, so the decoded text reads "[ 1 2 , 3 4 , ... ]": whitespace between digits is
removed before parsing.

    IoU(a, b) = |a n b| / |a u b| on normalized xyxy boxes
    accuracy  = fraction of items whose first parsed box has IoU >= iou_threshold (0.5) with `ref/box`
    parsed    = fraction of answers that contain a box at all (an unparsable answer counts as a miss)
    mean_iou  = mean IoU (0 for unparsable answers)
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from vljax.data.world.conversation import parse_box
from vljax.eval import generation
from vljax.eval.embed import world_samples
from vljax.eval.pope import world_with

PROMPT = "where is {} ? answer with a box ."
_DIGIT_GAP = re.compile(r"(?<=\d)\s+(?=\d)")


def parse_generated_box(text: str) -> np.ndarray | None:
    """Generated text -> float32 [4] normalized xyxy box (the first "[x1,y1,x2,y2]"), or None."""
    try:
        return parse_box(_DIGIT_GAP.sub("", text))
    except ValueError:
        return None


def box_iou(a, b) -> float:
    """Normalized xyxy boxes [4], [4] -> IoU (0 for empty or inverted boxes)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area = lambda x: max(0.0, x[2] - x[0]) * max(0.0, x[3] - x[1])  # noqa: E731
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def score(texts: Sequence[str], boxes, iou_threshold: float = 0.5) -> dict[str, float]:
    """Generated texts + reference boxes float [N, 4] -> {accuracy, mean_iou, parsed}."""
    ious, parsed = [], []
    for text, ref in zip(texts, np.asarray(boxes)):
        box = parse_generated_box(text)
        parsed.append(box is not None)
        ious.append(0.0 if box is None else box_iou(box, ref))
    ious = np.asarray(ious)
    return dict(accuracy=float(np.mean(ious >= iou_threshold)), mean_iou=float(ious.mean()),
                parsed=float(np.mean(parsed)))


def evaluate(exp, params, cfg) -> dict[str, float]:
    """cfg: split, n (scenes; 0 = skip), per_sample (refs per scene), iou_threshold, max_new_tokens -> metrics.

    max_new_tokens must fit a box: 4 numbers of up to 2 digits + 3 commas + 2 brackets = 13 tokens.
    """
    n = int(cfg.get("n", 0))
    if n <= 0:
        return {}
    world = world_with(exp, "ref", int(cfg.get("per_sample", 4)))
    samples = world_samples(world, cfg.get("split", "test"), n, ("image", "ref"))
    prompts, images, boxes = [], [], []
    for s in samples:
        for text, box in zip(s["ref/text"], np.asarray(s["ref/box"])):
            if text:
                prompts.append(PROMPT.format(text))
                images.append(s["image"])
                boxes.append(box)
    texts = generation.generate_texts(exp, params, cfg, prompts, np.stack(images))
    return score(texts, np.stack(boxes), float(cfg.get("iou_threshold", 0.5)))
