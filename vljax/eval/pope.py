"""POPE-style object-existence hallucination probe: ask "is there a <shape> in the image?", parse yes / no.

Items are the world's `pope/{question,answer,neg_kind}` (`data.world.pope.per_sample` per scene; half present,
half absent with random / popular / adversarial negatives). Answers are parsed like the POPE reference script:
keep the text before the first ".", drop commas, answer "no" when a word is "no" or "not", else "yes".

With "yes" as the positive class, TP = yes on a present object, FP = yes on an absent one (a hallucination):
    accuracy = (TP + TN) / N, precision = TP / (TP + FP), recall = TP / (TP + FN), f1 = 2 P R / (P + R),
    yes_ratio = (TP + FP) / N, unparsed = fraction of answers containing none of yes / no / not
Per negative kind k: the same on every positive plus the kind-k negatives (POPE's three settings share one
positive pool here), and `k/false_yes` = FP / (FP + TN) on kind-k negatives alone (the hallucination rate).
"""

from __future__ import annotations

import copy
from typing import Sequence

import numpy as np

from vljax.data.world.annotate import POPE_NEGATIVES
from vljax.eval import generation
from vljax.eval.embed import world_samples


def parse_yes_no(text: str) -> tuple[bool, bool]:
    """Generated text -> (answered yes, parsed: the text has a yes / no / not word)."""
    head = text.lower().split(".")[0].replace(",", "")
    words = head.split()
    if "no" in words or "not" in words:
        return False, True
    return True, "yes" in words


def _binary(pred: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """bool [N] predictions (yes) + bool [N] labels (present) -> accuracy, precision, recall, f1, yes_ratio."""
    tp = float(np.sum(pred & label))
    fp = float(np.sum(pred & ~label))
    fn = float(np.sum(~pred & label))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return dict(accuracy=float(np.mean(pred == label)), precision=precision, recall=recall, f1=f1,
                yes_ratio=float(np.mean(pred)))


def score(texts: Sequence[str], answers: Sequence[str], neg_kinds: Sequence[int]) -> dict[str, float]:
    """Generated texts, reference 'yes' / 'no', neg_kind ids (-1 for present objects) -> POPE metrics."""
    parsed = [parse_yes_no(t) for t in texts]
    pred = np.array([p for p, _ in parsed], bool)
    label = np.array([a == "yes" for a in answers], bool)
    kinds = np.asarray(neg_kinds)
    out = _binary(pred, label)
    out["unparsed"] = float(np.mean([not ok for _, ok in parsed]))
    for k, name in enumerate(POPE_NEGATIVES):
        neg = ~label & (kinds == k)
        if not neg.any():
            continue
        sel = label | neg
        out.update({f"{name}/{m}": v for m, v in _binary(pred[sel], label[sel]).items()})
        out[f"{name}/false_yes"] = float(np.mean(pred[neg]))
    return out


def world_with(exp, section: str, per_sample: int):
    """exp.world, or a copy whose data.world.<section>.per_sample is `per_sample` (cached on the experiment).

    NOTE: annotations read their own random windows, so the copy renders the same scenes and images; only the
    number of POPE / referring items per scene changes.
    """
    world = exp.world
    if world is None:
        raise ValueError(f"config.data.source={exp.config.data.source!r}: the {section} probe needs the world")
    if int(world.cfg[section].per_sample) == per_sample:
        return world
    cache = exp.__dict__.setdefault("_eval_worlds", {})
    key = (section, per_sample)
    if key not in cache:
        from vljax.data.world import World

        cfg = copy.deepcopy(world.cfg)
        cfg.unlock()
        cfg[section].per_sample = per_sample
        cache[key] = World(cfg)
    return cache[key]


def evaluate(exp, params, cfg) -> dict[str, float]:
    """cfg: split, n (scenes; 0 = skip), per_sample (questions per scene), max_new_tokens -> POPE metrics."""
    n = int(cfg.get("n", 0))
    if n <= 0:
        return {}
    per_sample = int(cfg.get("per_sample", 4))
    if per_sample <= 0:
        raise ValueError(f"config.evals.<pope>.per_sample={per_sample} must be > 0")
    world = world_with(exp, "pope", per_sample)
    samples = world_samples(world, cfg.get("split", "test"), n, ("image", "pope"))
    prompts, images, answers, kinds = [], [], [], []
    for s in samples:
        for q, a, k in zip(s["pope/question"], s["pope/answer"], np.asarray(s["pope/neg_kind"]).tolist()):
            if q:
                prompts.append(str(q))
                images.append(s["image"])
                answers.append(str(a))
                kinds.append(int(k))
    texts = generation.generate_texts(exp, params, cfg, prompts, np.stack(images))
    return score(texts, answers, kinds)
