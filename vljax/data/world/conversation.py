"""Instruction conversations about a scene (WORLD.md 3.3 `conversation`; Muffin, CROC, SPHINX, TowerVision).

A conversation is `conversation.turns` exchanges, each a user turn and an assistant turn, so the field is a
tuple of 2 * turns (role, text) pairs padded with ("", ""). Single-source conversations keep one task for every
exchange (caption, vqa, mc, rec, reg, detect, translate); `conversation.merged` mixes tasks per exchange and adds
one compositional exchange whose answer needs two facts ("what color is A and what shape is B ?").
Boxes are serialized as "[x1,y1,x2,y2]" with integer coordinates in 0..99 (`format_box` / `parse_box`).
"""
from __future__ import annotations

import re

import numpy as np

from vljax.data.world import concepts
from vljax.data.world.language import lexicon
from vljax.data.world.language import realize as rz

TASKS = ("caption", "vqa", "mc", "rec", "reg", "detect", "translate")
_CAPTION_PROMPTS = ("describe the image .", "write a caption for this picture .", "what do you see ?")
_CAPTION_KINDS = ("long", "short", "positional")
_BOX = re.compile(r"\[\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\]")
_LETTERS = "abcdefgh"


def format_box(box) -> str:
    """normalized xyxy [4] -> "[x1,y1,x2,y2]" with integers in 0..99."""
    q = np.clip(np.rint(np.asarray(box, np.float64) * 99), 0, 99).astype(int).tolist()
    return "[" + ",".join(str(v) for v in q) + "]"


def parse_box(text: str) -> np.ndarray:
    """first "[x1,y1,x2,y2]" in text -> float32 [4] normalized box (ValueError when none)."""
    m = _BOX.search(text)
    if m is None:
        raise ValueError(f"no [x1,y1,x2,y2] box in {text!r}")
    return np.asarray([int(g) / 99 for g in m.groups()], np.float32)


def _homonym_word() -> str:
    """-> the xb word shared by circle and ring."""
    return lexicon.LANGS["xb"].words["shape:circle"]


def _tasks(ctx, objs, refs) -> list:
    """-> the tasks this scene supports."""
    out = ["caption", "vqa", "mc"]
    if any(t for t in refs["ref/text"]):
        out += ["rec", "reg"]
    if objs:
        out.append("detect")
    if len(ctx.languages) > 1:
        out.append("translate")
    return [t for t in TASKS if t in out]


def _qa_item(ann, ctx, objs, rels, d):
    """-> (question, answer, qtype) from one window (type fallback as in qa/*), or None."""
    types = ctx.qa_types
    start = d.int(len(types))
    for k in range(len(types)):
        qtype = types[(start + k) % len(types)]
        item = ann._one_qa(ctx, objs, rels, d, qtype)
        if item is not None:
            frame, kw, answer, _ = item
            return rz.frame_text(frame, "en", d.int(rz.num_paraphrases(frame, "en")), **kw), answer, qtype
    return None


def _exchange(world, ann, ctx, task, spec, objs, rels, split, index, boxes, refs, d, k, lang_pair):
    """-> (user text, assistant text) of exchange k of `task`, or None when the scene cannot support it."""
    if task == "caption":
        kind = _CAPTION_KINDS[k % len(_CAPTION_KINDS)]
        return d.pick(_CAPTION_PROMPTS), ann.caption_text(world, spec, world.relations(spec), split, index, kind)
    if task in ("vqa", "mc"):
        item = _qa_item(ann, ctx, objs, rels, d)
        if item is None:
            return None
        q, a, qtype = item
        if task == "vqa":
            return q, a
        space = [x for x in ann._answer_space(ctx, qtype) if x != a]
        picks = [a]
        while space and len(picks) < max(ctx.mc_choices, 4):
            picks.append(space.pop(d.int(len(space))))
        order = sorted(range(len(picks)), key=lambda j: d.next())
        choices = [picks[j] for j in order]
        j = choices.index(a)
        return q + " " + " ".join(f"({_LETTERS[i]}) {w}" for i, w in enumerate(choices)), f"({_LETTERS[j]}) {a}"
    if task in ("rec", "reg"):
        valid = [i for i, t in enumerate(refs["ref/text"]) if t]
        if not valid:
            return None
        r = valid[k % len(valid)]
        text, box = refs["ref/text"][r], format_box(refs["ref/box"][r])
        if task == "rec":
            return f"where is {text} ? answer with a box .", box
        return f"describe the object in {box} .", text
    if task == "detect":
        if k == 0:
            dets = [f"{concepts.COLORS[o.color]} {concepts.SHAPES[o.shape]} {format_box(boxes[o.slot])}" for o in objs]
            return "detect every object .", " ; ".join(dets) if dets else "none"
        shape = d.pick(ctx.shapes)
        hits = [format_box(boxes[o.slot]) for o in objs if o.shape == shape]
        return f"find every {concepts.SHAPES[shape]} .", " ; ".join(hits) if hits else "none"
    src, tgt = lang_pair
    kind = _CAPTION_KINDS[k % len(_CAPTION_KINDS)]
    rel = world.relations(spec)
    return (f"translate from {src} into {tgt} : " + ann.caption_text(world, spec, rel, split, index, kind, src),
            ann.caption_text(world, spec, rel, split, index, kind, tgt))


def _compositional(ann, ctx, objs, d):
    """-> (question, answer) needing two facts: the attributes of two different uniquely described objects."""
    attrs = [a for a in ("color", "shape", "size", "texture") if ctx.name[a]]
    if len(objs) < 2 or not attrs:
        return None
    pool = list(objs)
    a = pool.pop(d.int(len(pool)))
    b = pool.pop(d.int(len(pool)))
    parts = []
    for o in (a, b):
        attr = d.pick(attrs)
        desc = ann._unique_desc(ctx, objs, o, ann._NAME_ORDER, drop=(attr,))
        if desc is None:
            return None
        q = rz.frame_text("ASK", "en", 0, np=desc, attr=attr)
        names = {"color": concepts.COLORS, "shape": concepts.SHAPES, "size": concepts.SIZES,
                 "texture": concepts.TEXTURES}[attr]
        parts.append((q[:-2] if q.endswith(" ?") else q, names[getattr(o, attr)]))
    return f"{parts[0][0]} and {parts[1][0]} ?", f"{parts[0][1]} and {parts[1][1]}"


def conversation(world, ctx, spec, objs, rels, split: str, index: int, boxes) -> dict:
    """-> conversation, conversation/{task,sources,compositional,ambiguous}: one instruction conversation."""
    from vljax.data.world import annotate as ann  # NOTE: local import: annotate imports this module.
    cfg = world.cfg.conversation
    turns = int(cfg.turns)
    if turns < 1:
        raise ValueError(f"conversation fields need conversation.turns >= 1, got {turns}")
    merged = bool(cfg.merged)
    wins = ann._windows(ctx, split, index, "conversation", turns + 1)
    head = wins[0]
    refs = ann._refs(ctx._replace(ref_per_sample=max(turns, 1)), spec, objs, rels, split, index,
                     np.asarray(boxes, np.float32))
    tasks = _tasks(ctx, objs, refs)
    langs = list(ctx.languages)
    src = head.pick(langs)
    tgt = head.pick([x for x in langs if x != src]) if len(langs) > 1 else src
    single = head.pick(tasks)
    comp_at = head.int(turns) if merged else -1
    out, sources, comp = [], [], -1
    ambiguous = False
    for k in range(turns):
        d = wins[k + 1]
        pair, task = None, single
        if k == comp_at:
            pair = _compositional(ann, ctx, objs, d)
            if pair is not None:
                task, comp = "compositional", 2 * k
        if pair is None:
            if merged:
                task = d.pick(tasks)
            pair = _exchange(world, ann, ctx, task, spec, objs, rels, split, index, boxes, refs, d, k, (src, tgt))
            if pair is None:
                task, pair = "caption", _exchange(world, ann, ctx, "caption", spec, objs, rels, split, index, boxes,
                                                  refs, d, k, (src, tgt))
        if task == "translate" and src == "xb" and _homonym_word() in pair[0].replace("-", " ").split():
            ambiguous = True
        out += [("user", pair[0]), ("assistant", pair[1])]
        sources.append(task)
    return {"conversation": tuple(out), "conversation/task": "merged" if merged else single,
            "conversation/sources": tuple(sources), "conversation/compositional": np.int32(comp),
            "conversation/ambiguous": np.bool_(ambiguous)}
