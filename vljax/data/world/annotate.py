"""Text about a scene: captions, spans, multilingual captions, QA, POPE, referring expressions (WORLD.md 3.2-3.4).

`annotate(world, spec, relations, split, index, fields)` is the one entry point the `World` calls. Every
caption kind is first a language-independent *plan* (frames with arguments and paraphrase choices), then
realized per language, so `captions/long` and `captions_ml/<lang>` say the same thing. Each caption kind
and each QA item reads its own fixed window of uniforms on its stream, so asking for more fields never
changes the ones already asked for.
"""
from __future__ import annotations

import functools
import weakref
from typing import Any, NamedTuple

import numpy as np

from vljax.data.world import concepts
from vljax.data.world.language import lexicon
from vljax.data.world.language import realize as rz
from vljax.data.world.language.realize import NP
from vljax.data.world.rng import stream_uniforms
from vljax.data.world.scene_spec import SceneSpec

DEFAULT_FIELDS = ("caption", "captions", "qa")
CAPTION_KINDS = ("short", "positional", "long", "partial", "noisy", "raw", "ptp")
QA_TYPES = ("color", "shape", "size", "texture", "count", "position", "existence", "relation", "compare",
            "two_hop")
POPE_NEGATIVES = ("random", "popular", "adversarial")
_WINDOW = 48                     # uniforms per caption kind / QA item
_CONVERSE = {0: 1, 1: 0, 2: 3, 3: 2, 7: 8, 8: 7}   # left<->right, above<->below, bigger<->smaller
_RAW_OPENERS = ("in this picture there is", "this image shows", "here we can see", "a photo showing")
_RAW_NOISE = ("photographer id", "stock photo", "image number", "upload")
_DISTRACTORS = ("sunday", "holiday", "vintage", "nice", "best", "free", "wallpaper", "hd")
_MC_LETTERS = "abcdefgh"


class _Ctx(NamedTuple):
    """Config values the hot path reads (ConfigDict lookups are slow)."""

    seed: int
    kinds: tuple
    default: str
    ml_kind: str
    languages: tuple
    name: dict          # attribute -> bool (language may name it)
    colors: tuple       # enabled color ids
    shapes: tuple
    sizes: tuple
    textures: tuple
    partial_objects: int
    partial_generic_p: float
    absent_p: float
    distractor_p: float
    ptp_grid: int
    qa_per_sample: int
    qa_types: tuple
    mc_choices: int
    pope_per_sample: int
    pope_negatives: tuple
    ref_per_sample: int
    partners: dict      # shape id -> co-occurrence partner shape ids (prior rules "shape=a -> +shape=b")
    max_objects: int
    heldout_tpl: frozenset = frozenset()   # qa.heldout_templates as template ids (type id * 8 + paraphrase)
    text_only_p: float = 0.0
    translation_noise: float = 0.0


_CTX_CACHE: "weakref.WeakKeyDictionary[Any, _Ctx]" = weakref.WeakKeyDictionary()


def _cfg(world):
    """World -> its ConfigDict (`config` or `cfg` attribute)."""
    cfg = getattr(world, "config", None)
    return cfg if cfg is not None else world.cfg


def _context(world) -> _Ctx:
    """World -> cached _Ctx (validates languages and QA types)."""
    try:
        return _CTX_CACHE[world]
    except (KeyError, TypeError):
        pass
    cfg = _cfg(world)
    cap, qa = cfg.caption, cfg.qa
    for lang in cfg.languages:
        lexicon.language(lang)
    for t in qa.types:
        if t not in QA_TYPES:
            raise ValueError(f"qa.types: unknown QA type {t!r}; valid: {', '.join(QA_TYPES)}")
    for k in tuple(cap.kinds) + (cap.default, cap.ml_kind):
        if k not in CAPTION_KINDS:
            raise ValueError(f"caption.kinds/default/ml_kind: unknown caption kind {k!r}; "
                             f"valid: {', '.join(CAPTION_KINDS)}")
    mention = set(cap.mention)
    sizes = tuple(i for i, s in enumerate(concepts.SIZES) if s in cfg.objects.sizes)
    textures = tuple(i for i, t in enumerate(concepts.TEXTURES) if t in cfg.objects.textures)
    name = {"count": "count" in mention, "color": "color" in mention, "shape": "shape" in mention,
            "size": "size" in mention and len(sizes) > 1, "texture": "texture" in mention and len(textures) > 1,
            "position": "position" in mention, "relation": "relation" in mention}
    partners = {}
    for rule in cfg.prior.rules:
        lhs, _, rhs = rule.partition("->")
        lhs, rhs = lhs.strip(), rhs.strip()
        if lhs.startswith("shape=") and rhs.startswith("+shape="):
            a, b = lhs[len("shape="):], rhs[len("+shape="):]
            if a in concepts.SHAPES and b in concepts.SHAPES:
                partners.setdefault(concepts.SHAPES.index(a), []).append(concepts.SHAPES.index(b))
    pope = cfg.get("pope", None)
    ctx = _Ctx(
        seed=int(cfg.seed), kinds=tuple(cap.kinds), default=cap.default, ml_kind=cap.ml_kind,
        languages=tuple(cfg.languages), name=name, colors=tuple(range(cfg.objects.colors)),
        shapes=tuple(range(cfg.objects.shapes)), sizes=sizes, textures=textures,
        partial_objects=int(cap.get("partial_objects", 1)), partial_generic_p=float(cap.partial_generic_p),
        absent_p=float(cap.absent_p), distractor_p=float(cap.distractor_p), ptp_grid=int(cfg.ptp.grid),
        qa_per_sample=int(qa.per_sample), qa_types=tuple(qa.types), mc_choices=int(qa.mc_choices),
        pope_per_sample=int(pope.per_sample) if pope is not None else 0,
        pope_negatives=tuple(pope.get("negatives", POPE_NEGATIVES)) if pope is not None else POPE_NEGATIVES,
        ref_per_sample=int(cfg.ref.per_sample), partners=partners, max_objects=int(cfg.objects.max),
        heldout_tpl=heldout_template_ids(qa.heldout_templates), text_only_p=float(qa.text_only_p),
        translation_noise=float(cfg.translation_noise))
    if not 0.0 <= ctx.text_only_p <= 1.0:
        raise ValueError(f"qa.text_only_p={ctx.text_only_p} outside [0, 1]")
    if not 0.0 <= ctx.translation_noise <= 1.0:
        raise ValueError(f"translation_noise={ctx.translation_noise} outside [0, 1]")
    try:
        _CTX_CACHE[world] = ctx
    except TypeError:
        pass
    return ctx


# QA type -> the frame its questions use (template id = type id * 8 + paraphrase index of that frame).
QA_FRAME = {"color": "ASK", "shape": "ASK", "size": "ASK", "texture": "ASK", "count": "COUNT", "position": "WHERE",
            "existence": "EXISTQ", "relation": "RELQ", "compare": "COMPARE", "two_hop": "ASK"}


def template_ids(qtype: str) -> tuple:
    """QA type -> its template ids (type id * 8 + paraphrase)."""
    tid = QA_TYPES.index(qtype)
    return tuple(tid * 8 + v for v in range(rz.num_paraphrases(QA_FRAME[qtype], "en")))


def heldout_template_ids(entries) -> frozenset:
    """qa.heldout_templates (template ids and/or QA type names = all their templates) -> frozenset of ids."""
    out = set()
    for e in entries:
        if isinstance(e, str):
            if e not in QA_TYPES:
                raise ValueError(f"qa.heldout_templates: unknown QA type {e!r}; valid: {', '.join(QA_TYPES)}")
            out.update(template_ids(e))
            continue
        e = int(e)
        if not 0 <= e // 8 < len(QA_TYPES) or e not in template_ids(QA_TYPES[e // 8]):
            raise ValueError(f"qa.heldout_templates: {e} is no template id (type id * 8 + paraphrase)")
        out.add(e)
    return frozenset(out)


class _Draws:
    """A fixed window of uniforms; reads past its end wrap (deterministic, never touches other windows)."""

    __slots__ = ("u", "i")

    def __init__(self, u: list):
        self.u, self.i = u, 0

    def next(self) -> float:
        """-> next uniform in [0, 1)."""
        v = self.u[self.i % len(self.u)]
        self.i += 1
        return v

    def int(self, n: int) -> int:
        """-> uniform int in [0, n)."""
        v = self.u[self.i % len(self.u)]
        self.i += 1
        k = int(v * n)
        return k if k < n else n - 1

    def pick(self, seq):
        """-> one element of a non-empty sequence."""
        return seq[self.int(len(seq))]


def _windows(ctx: _Ctx, split: str, index: int, stream: str, n: int) -> list:
    """-> n independent _Draws windows of one stream."""
    u = stream_uniforms(ctx.seed, split, index, stream, n * _WINDOW).tolist()
    return [_Draws(u[k * _WINDOW:(k + 1) * _WINDOW]) for k in range(n)]


# ---------------------------------------------------------------------------------------------- scene facts
class _Obj(NamedTuple):
    slot: int
    size: int
    color: int
    texture: int
    shape: int
    position: int


def position_id(x: float, y: float) -> int:
    """normalized center (x, y) -> index into concepts.POSITIONS (3x3 partition, row-major)."""
    col = min(max(int(x * 3), 0), 2)
    row = min(max(int(y * 3), 0), 2)
    return row * 3 + col


def block_index(box, n: int) -> int:
    """normalized xyxy box [4] x grid n -> PTP block id of its center (row-major, edges clamped)."""
    if n < 1:
        raise ValueError(f"block_index: n must be >= 1, got {n}")
    cx, cy = (float(box[0]) + float(box[2])) / 2, (float(box[1]) + float(box[3])) / 2
    col = min(max(int(cx * n), 0), n - 1)
    row = min(max(int(cy * n), 0), n - 1)
    return row * n + col


def spec_boxes(spec: SceneSpec) -> np.ndarray:
    """SceneSpec -> float32 [O, 4] approximate boxes (center +- circumradius, clipped to [0, 1])."""
    c, s = spec.center.astype(np.float32), spec.scale.astype(np.float32)[:, None]
    return np.clip(np.concatenate([c - s, c + s], axis=1), 0.0, 1.0).astype(np.float32)


def _objects(spec: SceneSpec) -> list:
    """SceneSpec -> [_Obj] of the valid slots."""
    valid = np.flatnonzero(spec.valid).tolist()
    size, color, tex, shape = spec.size.tolist(), spec.color.tolist(), spec.texture.tolist(), spec.shape.tolist()
    cen = spec.center.tolist()
    return [_Obj(i, size[i], color[i], tex[i], shape[i], position_id(*cen[i])) for i in valid]


def _np(ctx: _Ctx, o: _Obj, count=None, position=False, definite=False, drop=()) -> NP:
    """object -> NP naming the attributes the config allows (minus `drop`)."""
    nm = ctx.name
    return NP(count=count,
              size=o.size if nm["size"] and "size" not in drop else None,
              color=o.color if nm["color"] and "color" not in drop else None,
              texture=o.texture if nm["texture"] and "texture" not in drop else None,
              shape=o.shape if nm["shape"] and "shape" not in drop else None,
              position=o.position if position and nm["position"] and "position" not in drop else None,
              slot=o.slot, definite=definite)


def _key(np_: NP) -> tuple:
    """NP -> its attribute key (what the words say)."""
    return (np_.size, np_.color, np_.texture, np_.shape, np_.position)


def _okey(ctx: _Ctx, o: _Obj, position: bool) -> tuple:
    """object -> `_key(_np(ctx, o, None, position))` without building the NP (hot path)."""
    nm = ctx.name
    return (o.size if nm["size"] else None, o.color if nm["color"] else None,
            o.texture if nm["texture"] else None, o.shape if nm["shape"] else None,
            o.position if position and nm["position"] else None)


def _groups(ctx: _Ctx, objs: list, position: bool) -> list:
    """objects -> NPs of identical descriptions with counts (in first-slot order)."""
    if not ctx.name["count"]:
        return [_np(ctx, o, 1, position) for o in objs]
    order, counts = [], {}
    for o in objs:
        k = _okey(ctx, o, position)
        c = counts.get(k)
        if c is None:
            counts[k] = [o, 1]
            order.append(k)
        else:
            c[1] += 1
    return [_np(ctx, counts[k][0], counts[k][1], position) for k in order]


def _matches(o: _Obj, np_: NP) -> bool:
    """does object o fit every attribute np_ names?"""
    return ((np_.size is None or o.size == np_.size) and (np_.color is None or o.color == np_.color)
            and (np_.texture is None or o.texture == np_.texture) and (np_.shape is None or o.shape == np_.shape)
            and (np_.position is None or o.position == np_.position))


_FIELD = {"size": 1, "color": 2, "texture": 3, "shape": 4, "position": 5}   # _Obj tuple positions


def _unique_desc(ctx: _Ctx, objs: list, o: _Obj, order: tuple, drop=()) -> NP | None:
    """minimal definite description of o (adding attributes in `order`) that fits no other object."""
    nm = ctx.name
    chosen = {}
    cands = objs
    for attr in order:
        if attr in drop or not nm[attr]:
            continue
        i = _FIELD[attr]
        v = chosen[attr] = o[i]
        # NOTE: the objects fitting every attribute chosen so far only shrink: filter instead of re-matching.
        cands = [p for p in cands if p[i] == v]
        if len(cands) == 1:
            return NP(**chosen, slot=o.slot, definite=True)
    return None


def _rel_set(relations: np.ndarray, n_slots: int) -> set:
    """int32 [R, 3] -> set of (subject, predicate, object) triples over valid rows."""
    rel = np.asarray(relations)
    rows = rel[(rel[:, 0] >= 0) & (rel[:, 1] >= 0) & (rel[:, 2] >= 0)] if rel.size else rel
    return {tuple(r) for r in rows.tolist() if r[0] < n_slots and r[2] < n_slots}


def _full_unique(ctx: _Ctx, objs: list) -> dict:
    """-> {slot: definite NP} for objects whose full attribute description is unique."""
    keys = [_okey(ctx, o, False) for o in objs]
    counts = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    out = {}
    for o, k in zip(objs, keys):
        if counts[k] == 1 and not (k[0] is None and k[1] is None and k[2] is None and k[3] is None):
            out[o.slot] = _np(ctx, o, None, False, True)
    return out


# ---------------------------------------------------------------------------------------------- caption plans
# A plan is a list of sentences; a sentence is a list of frames (frame, variant, kwargs).
def _plan_short(ctx, objs, d, position=False) -> list:
    """-> one LIST frame over grouped NPs (no positions unless `position`)."""
    nps = _groups(ctx, objs, position)
    if not nps:
        return [[("GENERIC", d.int(8), {})]]
    return [[("LIST", d.int(8), {"nps": nps})]]


def _plan_long(ctx, objs, rels, d) -> list:
    """-> one EXIST sentence per described group + 1-2 REL sentences between uniquely named objects."""
    plan = [[("EXIST", d.int(8), {"np": np_})] for np_ in _groups(ctx, objs, True)]
    if not plan:
        return [[("GENERIC", d.int(8), {})]]
    if ctx.name["relation"]:
        uniq = _full_unique(ctx, objs)
        cands = sorted((s, p, o) for s, p, o in rels if s in uniq and o in uniq and s != o)
        k = 1 + d.int(2)
        for _ in range(min(k, len(cands))):
            s, p, o = cands.pop(d.int(len(cands)))
            plan.append([("REL", d.int(8), {"np": uniq[s], "np2": uniq[o], "pred": p})])
    return plan


def _plan_partial(ctx, objs, d) -> tuple:
    """-> (plan, chosen NPs): a random subset of objects, or with partial_generic_p only "a picture"."""
    if not objs or d.next() < ctx.partial_generic_p:
        return [[("GENERIC", d.int(8), {})]], []
    pool = list(objs)
    nps = [_np(ctx, pool.pop(d.int(len(pool))), 1) for _ in range(min(ctx.partial_objects, len(pool)))]
    return [[("LIST", d.int(8), {"nps": nps})]], nps


def _absent_np(ctx, objs, d) -> NP | None:
    """-> an indefinite NP (slot -1) that fits no object in the scene (bounded tries)."""
    for _ in range(16):
        np_ = NP(count=1, size=d.pick(ctx.sizes) if ctx.name["size"] else None,
                 color=d.pick(ctx.colors) if ctx.name["color"] else None,
                 texture=d.pick(ctx.textures) if ctx.name["texture"] else None,
                 shape=d.pick(ctx.shapes) if ctx.name["shape"] else None, slot=-1)
        if (np_.color, np_.shape) != (None, None) and not any(_matches(o, np_) for o in objs):
            return np_
    return None


def _plan_noisy(ctx, objs, d_partial, d) -> tuple:
    """-> (plan, absent NP or None): the partial caption plus, with absent_p, one absent object."""
    plan, nps = _plan_partial(ctx, objs, d_partial)
    absent = _absent_np(ctx, objs, d) if d.next() < ctx.absent_p else None
    if absent is None:
        return plan, None
    return [[("LIST", plan[0][0][1], {"nps": nps + [absent]})]], absent


def _realize_plan(plan: list, lang: str, spans: bool = True, sentences: bool = False) -> tuple:
    """plan x lang -> (text, spans or None, sentences or None)."""
    if not spans:
        # NOTE: text-only fast path (memoized noun-phrase units); same strings as the pieces path below.
        units, sents = [], ([] if sentences else None)
        for sent in plan:
            su = []
            for frame, variant, kw in sent:
                su.extend(rz.frame_units(frame, lang, variant, **kw))
            if sentences:
                sents.append(rz.join_units(su))
            units.extend(su)
        return rz.join_units(units), None, sents
    pieces, sents = [], ([] if sentences else None)
    for sent in plan:
        sp = []
        for frame, variant, kw in sent:
            sp.extend(rz.frame_pieces(frame, lang, variant, **kw))
        if sentences:
            sents.append(rz.join(sp, False)[0])
        pieces.extend(sp)
    text, sp = rz.join(pieces, spans)
    return text, sp, sents


def _raw(ctx, objs, d) -> tuple:
    """-> (text, spans) of a web-like English caption: opener + slots + noise (+ distractors)."""
    pieces = [(d.pick(_RAW_OPENERS), rz.BOILERPLATE, -1, -1, " ")]
    nps = _groups(ctx, objs, False)
    pieces += rz.list_pieces(lexicon.LANGS["en"], nps) if nps else [("nothing", rz.BOILERPLATE, -1, -1, " ")]
    pieces.append((f"{d.pick(_RAW_NOISE)} {1000 + d.int(9000)}", rz.NOISE, -1, -1, " "))
    if d.next() < ctx.distractor_p:
        for _ in range(1 + d.int(2)):
            pieces.append((d.pick(_DISTRACTORS), rz.NOISE, -1, -1, " "))
    return rz.join(pieces)


def _ptp(ctx, objs, short_plan, d, boxes) -> tuple:
    """-> (text, spans): the short caption + " the block P has a O" (PTP), P = block_index of O's box."""
    text_pieces = []
    for frame, variant, kw in short_plan[0]:
        text_pieces += rz.frame_pieces(frame, "en", variant, **kw)
    if objs:
        o = d.pick(objs)
        p = block_index(boxes[o.slot], ctx.ptp_grid)
        text_pieces += [("the block", rz.BOILERPLATE, -1, -1, " "), (str(p), rz.POSITION, o.slot, p, " "),
                        ("has", rz.BOILERPLATE, -1, -1, " ")]
        text_pieces += rz.np_pieces(lexicon.LANGS["en"], _np(ctx, o, 1))
    return rz.join(text_pieces)


def _spans_array(spans: list) -> np.ndarray:
    """spans -> int32 [48, 5], -1 padded, content spans kept first when over budget."""
    out = np.full((rz.MAX_SPANS, 5), -1, np.int32)
    sp = rz.cap_spans(spans)
    if sp:
        out[:len(sp)] = sp
    return out


# ---------------------------------------------------------------------------------------------- QA
def _area_bin(spec: SceneSpec, slot: int, areas) -> int:
    """slot -> 0 small / 1 medium / 2 large by visible area (or circumradius when no areas are given)."""
    if slot < 0:
        return -1
    if areas is not None:
        a = float(areas[slot])
        return 0 if a < 0.01 else 1 if a < 0.03 else 2
    s = float(spec.scale[slot])
    return 0 if s < 0.10 else 1 if s < 0.145 else 2


_NAME_ORDER = ("shape", "color", "size", "texture", "position")


def _qa_attr(ctx, objs, d, attr):
    """ASK(attr, unique description without attr) -> (frame kwargs, answer, target) or None."""
    if not objs or not ctx.name[attr]:
        return None
    o = d.pick(objs)
    desc = _unique_desc(ctx, objs, o, _NAME_ORDER, drop=(attr,))
    if desc is None:
        return None
    names = {"color": concepts.COLORS, "shape": concepts.SHAPES, "size": concepts.SIZES,
             "texture": concepts.TEXTURES}[attr]
    return ("ASK", {"np": desc, "attr": attr}, names[getattr(o, attr)], o.slot)


def _qa_count(ctx, objs, d):
    """COUNT(bare plural of a random object's color, shape or both) -> count word."""
    if not objs:
        return None
    o = d.pick(objs)
    opts = [k for k, ok in (("color", ctx.name["color"]), ("shape", ctx.name["shape"]),
                            ("both", ctx.name["color"] and ctx.name["shape"])) if ok]
    if not opts:
        return None
    k = d.pick(opts)
    np_ = NP(color=o.color if k in ("color", "both") else None, shape=o.shape if k in ("shape", "both") else None,
             plural=True, slot=o.slot)
    n = sum(_matches(p, np_) for p in objs)
    return ("COUNT", {"np": np_}, lexicon.NUMBER_WORDS_EN[n], -1)


def _qa_position(ctx, objs, d):
    """WHERE(unique description without position) -> position words."""
    if not objs or not ctx.name["position"]:
        return None
    o = d.pick(objs)
    desc = _unique_desc(ctx, objs, o, _NAME_ORDER, drop=("position",))
    if desc is None:
        return None
    return ("WHERE", {"np": desc}, concepts.POSITIONS[o.position], o.slot)


def _qa_existence(ctx, objs, d):
    """EXISTQ(a color shape) -> yes (a present object) or no (an absent combination), 50/50."""
    if d.next() < 0.5 and objs:
        o = d.pick(objs)
        return ("EXISTQ", {"np": NP(count=1, color=o.color if ctx.name["color"] else None,
                                    shape=o.shape if ctx.name["shape"] else None, slot=o.slot)}, "yes", o.slot)
    absent = _absent_np(ctx, objs, d)
    if absent is None:
        return None
    absent = absent._replace(size=None, texture=None)
    if any(_matches(o, absent) for o in objs):
        return None
    return ("EXISTQ", {"np": absent}, "no", -1)


def _qa_relation(ctx, objs, rels, d):
    """RELQ(A, pred, B) between uniquely named objects -> yes (true triple) or no (converse of one)."""
    uniq = _full_unique(ctx, objs)
    cands = sorted((s, p, o) for s, p, o in rels if s in uniq and o in uniq and s != o)
    if not cands:
        return None
    if d.next() < 0.5:
        s, p, o = d.pick(cands)
        return ("RELQ", {"np": uniq[s], "np2": uniq[o], "pred": p}, "yes", s)
    flips = [(s, _CONVERSE[p], o) for s, p, o in cands if p in _CONVERSE and (s, _CONVERSE[p], o) not in rels]
    if not flips:
        return None
    s, p, o = d.pick(flips)
    return ("RELQ", {"np": uniq[s], "np2": uniq[o], "pred": p}, "no", s)


def _qa_compare(ctx, objs, d):
    """COMPARE(more X than Y) over colors (or shapes) with different counts -> yes/no, 50/50."""
    attr, values = ("color", ctx.colors) if ctx.name["color"] else ("shape", ctx.shapes)
    counts = {v: 0 for v in values}
    for o in objs:
        counts[getattr(o, attr)] = counts.get(getattr(o, attr), 0) + 1
    pairs = [(a, b) for a in values for b in values if counts[a] > counts[b]]
    if not pairs:
        return None
    a, b = d.pick(pairs)
    yes = d.next() < 0.5
    if not yes:
        a, b = b, a
    return ("COMPARE", {"np": NP(plural=True, **{attr: a}), "np2": NP(plural=True, **{attr: b})},
            "yes" if yes else "no", -1)


def _qa_two_hop(ctx, objs, rels, d):
    """ASK(color, the object PRED <unique B>) where exactly one object stands in PRED to B -> its color."""
    uniq = _full_unique(ctx, objs)
    by = {}
    for s, p, o in rels:
        if o in uniq and s != o:
            by.setdefault((p, o), []).append(s)
    cands = sorted(k for k, v in by.items() if len(v) == 1)
    if not cands or not ctx.name["color"]:
        return None
    p, o = d.pick(cands)
    s = by[(p, o)][0]
    color = next(x.color for x in objs if x.slot == s)
    return ("ASK", {"np": NP(definite=True, rel=(p, uniq[o])), "attr": "color"}, concepts.COLORS[color], s)


def _answer_space(ctx, qtype: str) -> tuple:
    """QA type -> tuple of possible answers (English)."""
    if qtype in ("existence", "relation", "compare"):
        return ("yes", "no")
    if qtype in ("color", "two_hop"):
        return tuple(concepts.COLORS[i] for i in ctx.colors)
    if qtype == "shape":
        return tuple(concepts.SHAPES[i] for i in ctx.shapes)
    if qtype == "size":
        return tuple(concepts.SIZES[i] for i in ctx.sizes)
    if qtype == "texture":
        return tuple(concepts.TEXTURES[i] for i in ctx.textures)
    if qtype == "position":
        return concepts.POSITIONS
    return lexicon.NUMBER_WORDS_EN[:ctx.max_objects + 1]


def _one_qa(ctx, objs, rels, d, qtype):
    """-> (frame, kwargs, answer, target) or None when the scene cannot support that type."""
    if qtype in ("color", "shape", "size", "texture"):
        return _qa_attr(ctx, objs, d, qtype)
    if qtype == "count":
        return _qa_count(ctx, objs, d)
    if qtype == "position":
        return _qa_position(ctx, objs, d)
    if qtype == "existence":
        return _qa_existence(ctx, objs, d)
    if qtype == "relation":
        return _qa_relation(ctx, objs, rels, d)
    if qtype == "compare":
        return _qa_compare(ctx, objs, d)
    return _qa_two_hop(ctx, objs, rels, d)


def _allowed_variants(ctx, qtype: str, frame: str, heldout_split: bool) -> list:
    """-> paraphrase indices of `frame` usable for `qtype` in this split (held-out ids only in heldout_templates)."""
    base = QA_TYPES.index(qtype) * 8
    return [v for v in range(rz.num_paraphrases(frame, "en")) if ((base + v) in ctx.heldout_tpl) == heldout_split]


def _qa(ctx, spec, objs, rels, split, index, areas, context=False) -> dict:
    """-> qa/* fields: Q questions, types drawn uniformly with fallback to the next type that fits.

    With `qa.heldout_templates`, held-out template ids are used only in split `heldout_templates` (whose questions
    use only them); with `context`, items drawn text-only (`qa.text_only_p`) get the facts in `qa/context`.
    """
    q, c = ctx.qa_per_sample, ctx.mc_choices
    questions, answers, choices_out = [""] * q, [""] * q, [("",) * c] * q
    # NOTE: rows type, template, target, area_bin, answer_index as Python lists; one array at the end.
    ints = [[-1] * q for _ in range(5)]
    types = ctx.qa_types
    held = bool(ctx.heldout_tpl)
    held_split = split == "heldout_templates"
    if held_split:
        if not held:
            raise ValueError("split 'heldout_templates' needs qa.heldout_templates")
        types = tuple(t for t in QA_TYPES if any(x // 8 == QA_TYPES.index(t) for x in ctx.heldout_tpl))
    items = [None] * q
    for i, d in enumerate(_windows(ctx, split, index, "qa", q) if q else []):
        start = d.int(len(types))
        for k in range(len(types)):
            qtype = types[(start + k) % len(types)]
            item = _one_qa(ctx, objs, rels, d, qtype)
            if item is not None and held:
                allowed = _allowed_variants(ctx, qtype, item[0], held_split)
                if not allowed:
                    item = None
            if item is not None:
                break
        else:
            continue
        frame, kw, answer, target = item
        if held:
            variant = allowed[d.int(len(allowed))]
        else:
            variant = d.int(rz.num_paraphrases(frame, "en"))
        items[i] = (qtype, frame, kw, answer)
        question = rz.frame_text(frame, "en", variant, **kw)
        tid = QA_TYPES.index(qtype)
        if c > 0:
            space = [a for a in _answer_space(ctx, qtype) if a != answer]
            picks = [answer]
            while space and len(picks) < c:
                picks.append(space.pop(d.int(len(space))))
            order = sorted(range(len(picks)), key=lambda j: d.next())
            choices = [picks[j] for j in order]
            ints[4][i] = choices.index(answer)
            question += " " + " ".join(f"({_MC_LETTERS[j]}) {w}" for j, w in enumerate(choices))
            choices_out[i] = tuple(choices) + ("",) * (c - len(choices))
        questions[i], answers[i] = question, answer
        ints[0][i], ints[1][i], ints[2][i] = tid, tid * 8 + variant, target
        ints[3][i] = _area_bin(spec, target, areas)
    arr = np.array(ints, np.int32).reshape(5, q)
    res = {"qa/question": tuple(questions), "qa/answer": tuple(answers), "qa/type": arr[0], "qa/template": arr[1],
           "qa/target": arr[2], "qa/area_bin": arr[3]}
    if c > 0:
        res["qa/choices"], res["qa/answer_index"] = tuple(choices_out), arr[4]
    if context:
        res.update(_qa_context(ctx, objs, rels, split, index, items))
    return res


def _qa_context(ctx, objs, rels, split, index, items) -> dict:
    """-> qa/context, qa/needs_image: text-only items (share text_only_p) state the scene's facts in words.

    The context lists every object group with its position (EXIST sentences) and, for relation and two-hop
    items, the one true relation the answer rests on, so a reader of the context alone can answer.
    """
    q = len(items)
    # NOTE: one extra window after the q QA windows: the QA draws above are unchanged by text-only sampling.
    u = stream_uniforms(ctx.seed, split, index, "qa", (q + 1) * _WINDOW)[q * _WINDOW:q * _WINDOW + q].tolist()
    facts = [("EXIST", 0, {"np": np_}) for np_ in _groups(ctx, objs, True)]
    contexts, needs = [""] * q, np.ones(q, bool)
    uniq = None
    for i, item in enumerate(items):
        if item is None or u[i] >= ctx.text_only_p:
            continue
        qtype, frame, kw, answer = item
        extra = []
        if qtype == "relation":
            pred = kw["pred"] if answer == "yes" else _CONVERSE[kw["pred"]]
            extra = [("REL", 0, {"np": kw["np"], "np2": kw["np2"], "pred": pred})]
        elif qtype == "two_hop":
            uniq = _full_unique(ctx, objs) if uniq is None else uniq
            pred, other = kw["np"].rel
            subj = [s for s, p, o in rels if p == pred and o == other.slot and s != o]
            (o,) = [x for x in objs if x.slot == subj[0]]
            extra = [("REL", 0, {"np": _np(ctx, o, None, False, True), "np2": other, "pred": pred})]
        contexts[i] = _realize_plan([[f] for f in facts + extra], "en", False, False)[0]
        needs[i] = False
    return {"qa/context": tuple(contexts), "qa/needs_image": needs}


# ---------------------------------------------------------------------------------------------- POPE, refs
def _pope(ctx, objs, split, index) -> dict:
    """-> pope/*: existence questions about shapes, 50% absent with random/popular/adversarial negatives."""
    p = ctx.pope_per_sample
    qs, ans, kinds = [""] * p, [""] * p, np.full(p, -1, np.int32)
    present = {o.shape for o in objs}
    absent = [s for s in ctx.shapes if s not in present]
    for i, d in enumerate(_windows(ctx, split, index, "pope", p) if p else []):
        variant = 2 + d.int(1)
        if (d.next() < 0.5 or not absent) and objs:
            s, a = d.pick(objs).shape, "yes"
        elif absent:
            kind = d.pick(ctx.pope_negatives)
            kinds[i] = POPE_NEGATIVES.index(kind)
            if kind == "popular":
                s = absent[0]
            elif kind == "adversarial":
                near = [b for a_ in sorted(present) for b in ctx.partners.get(a_, []) if b in absent]
                fam = [b for f in concepts.SHAPE_FAMILIES.values() for b in absent
                       if concepts.SHAPES[b] in f and any(concepts.SHAPES[x] in f for x in present)]
                s = (near or fam or absent)[0] if (near or fam) else d.pick(absent)
            else:
                s = d.pick(absent)
            a = "no"
        else:
            continue
        qs[i], ans[i] = rz.realize("EXISTQ", "en", variant, np=NP(count=1, shape=s)), a
    return {"pope/question": tuple(qs), "pope/answer": tuple(ans), "pope/neg_kind": kinds}


def _refs(ctx, spec, objs, rels, split, index, boxes) -> dict:
    """-> ref/*: minimal unique descriptions (class -> +color -> +size -> +relation) of distinct targets."""
    n = ctx.ref_per_sample
    text, target = [""] * n, np.full(n, -1, np.int32)
    box, kind = np.zeros((n, 4), np.float32), np.full(n, -1, np.int32)
    graph = np.full((n, 4, 3), -1, np.int32)
    if n and objs:
        d = _windows(ctx, split, index, "refs", 1)[0]
        pool = list(objs)
        order = [pool.pop(d.int(len(pool))) for _ in range(len(objs))]
        uniq = _full_unique(ctx, objs)
        j = 0
        for o in order:
            if j >= n:
                break
            desc = _unique_desc(ctx, objs, o, ("shape", "color", "size", "texture"))
            k = 0 if desc is not None and desc.color is None and desc.size is None and desc.texture is None else 1
            if desc is None:
                full = _np(ctx, o, None, False, True)
                rel = sorted((p, b) for s, p, b in rels if s == o.slot and b in uniq and b != o.slot
                             and sum(_matches(x, full) and (x.slot, p, b) in rels for x in objs) == 1)
                if not rel:
                    continue
                p, b = d.pick(rel)
                desc, k = full._replace(rel=(p, uniq[b])), 2
                graph[j, 0] = (o.slot, p, b)
            text[j] = rz.join(rz.np_pieces(lexicon.LANGS["en"], desc))[0]
            target[j], box[j], kind[j] = o.slot, boxes[o.slot], k
            j += 1
    return {"ref/text": tuple(text), "ref/target": target, "ref/box": box, "ref/kind": kind, "ref/graph": graph}


def _swap_attr(ctx, objs, d) -> str:
    """-> short caption with the colors (else shapes) of two objects swapped; "" when no swap changes it."""
    nps = _groups(ctx, objs, False)
    truth = sorted(_key(x) for x in nps)
    for attr in ("color", "shape"):
        pairs = [(i, j) for i in range(len(nps)) for j in range(i + 1, len(nps))
                 if getattr(nps[i], attr) is not None and getattr(nps[i], attr) != getattr(nps[j], attr)]
        while pairs:
            i, j = pairs.pop(d.int(len(pairs)))
            sw = list(nps)
            sw[i] = nps[i]._replace(**{attr: getattr(nps[j], attr)})
            sw[j] = nps[j]._replace(**{attr: getattr(nps[i], attr)})
            if sorted(_key(x) for x in sw) != truth:
                return rz.realize("LIST", "en", d.int(8), nps=sw)
    return ""


# ---------------------------------------------------------------------------------------------- entry point
def _wanted(path: str, fields: tuple) -> bool:
    """is `path` selected by one of the field prefixes?"""
    return any(path == f or path.startswith(f + "/") for f in fields)


def _explicit(path: str, fields: tuple) -> bool:
    """is `path` (or something below it) named exactly, not just through a parent prefix?"""
    return any(f == path or f.startswith(path + "/") for f in fields)


class _Selection(NamedTuple):
    """What one `fields` tuple asks for (computed once per fields tuple)."""

    kinds: tuple          # caption kinds to build
    text: frozenset       # kinds whose captions/<kind> is returned
    spans: frozenset      # kinds whose spans/<kind> is returned
    caption: bool
    sentences: bool
    ml: tuple
    windows: int          # caption-stream windows needed
    other: frozenset      # tags, summary, entities, qa, pope, ref, negatives/swap_attr


_OTHER = ("tags", "summary", "entities", "qa", "pope", "ref", "negatives/swap_attr")
# NOTE: variant groups are selected by their prefix or by any path below it ("contrast/image").
_VARIANTS = ("contrast", "pref", "cf", "conversation")


@functools.lru_cache(maxsize=512)
def _selection(cfg_kinds: tuple, default: str, ml_kind: str, languages: tuple, fields: tuple) -> _Selection:
    """(config caption kinds, default, ml kind, languages, fields) -> _Selection."""
    def chosen(prefix, k):
        path = f"{prefix}/{k}"
        return _wanted(path, fields) and (k in cfg_kinds or _explicit(path, fields))

    text = frozenset(k for k in CAPTION_KINDS if chosen("captions", k))
    spans = frozenset(k for k in CAPTION_KINDS if chosen("spans", k))
    kinds = [k for k in CAPTION_KINDS if k in text or k in spans]
    caption = _wanted("caption", fields)
    other = frozenset([o for o in _OTHER if _wanted(o, fields)]
                      + [v for v in _VARIANTS if _wanted(v, fields) or _explicit(v, fields)]
                      + (["qa/context"] if _explicit("qa/context", fields) or _explicit("qa/needs_image", fields)
                         else []))
    if (caption or "entities" in other) and default not in kinds:
        kinds.append(default)
    sentences = _wanted("captions/sentences", fields)
    if sentences and "long" not in kinds:
        kinds.append("long")
    ml = tuple(lang for lang in languages if _wanted(f"captions_ml/{lang}", fields))
    used = set(kinds) | ({ml_kind} if ml else set())
    if "noisy" in used:
        used.add("partial")
    if "ptp" in used:
        used.add("short")
    if "negatives/swap_attr" in other:
        used.add("swap_attr")
    windows = 1 + max((_CAPTION_WINDOW[k] for k in used), default=-1)
    return _Selection(tuple(kinds), text, spans, caption, sentences, ml, windows, other)


def annotate(world, spec: SceneSpec, relations, split: str, index: int, fields=None, *, boxes=None,
             areas=None) -> dict:
    """(world, SceneSpec, int32 [R,3], split, index, fields) -> {path: str | tuple[str] | np.ndarray} text fields."""
    ctx = _context(world)
    fields = DEFAULT_FIELDS if fields is None else ((fields,) if isinstance(fields, str) else tuple(fields))
    sel = _selection(ctx.kinds, ctx.default, ctx.ml_kind, ctx.languages, fields)
    objs = _objects(spec)
    rels = _rel_set(relations, len(spec.valid))
    n_slots = len(spec.valid)
    out: dict[str, Any] = {}
    u = stream_uniforms(ctx.seed, split, index, "caption", sel.windows * _WINDOW).tolist() if sel.windows else []

    def draws(kind):
        k = _CAPTION_WINDOW[kind]
        return _Draws(u[k * _WINDOW:(k + 1) * _WINDOW])

    plans: dict[str, list] = {}

    def plan(kind):
        if kind not in plans:
            if kind in ("short", "positional"):
                plans[kind] = _plan_short(ctx, objs, draws(kind), kind == "positional")
            elif kind == "long":
                plans[kind] = _plan_long(ctx, objs, rels, draws(kind))
            elif kind == "partial":
                plans[kind] = _plan_partial(ctx, objs, draws(kind))[0]
            elif kind == "noisy":
                plans[kind] = _plan_noisy(ctx, objs, draws("partial"), draws(kind))[0]
        return plans[kind]

    if boxes is None and ("ptp" in sel.kinds or "ref" in sel.other):
        boxes = spec_boxes(spec)
    texts = {}
    for kind in sel.kinds:
        want_spans = kind in sel.spans or (kind == ctx.default and "entities" in sel.other)
        if kind == "raw":
            text, spans = _raw(ctx, objs, draws(kind))
        elif kind == "ptp":
            text, spans = _ptp(ctx, objs, plan("short"), draws(kind), np.asarray(boxes, np.float32))
        else:
            text, spans, sents = _realize_plan(plan(kind), "en", want_spans,
                                               kind == "long" and sel.sentences)
            if sents is not None:
                sents = sents[:n_slots + 2]
                out["captions/sentences"] = tuple(sents) + ("",) * (n_slots + 2 - len(sents))
        texts[kind] = (text, spans)
        if kind in sel.text:
            out[f"captions/{kind}"] = text
        if kind in sel.spans:
            out[f"spans/{kind}"] = _spans_array(spans)
    if sel.caption:
        out["caption"] = texts[ctx.default][0]
    for lang in sel.ml:
        if ctx.ml_kind in ("raw", "ptp"):
            raise ValueError(f"caption.ml_kind={ctx.ml_kind!r} is English-only; use short/positional/long/...")
        if ctx.translation_noise > 0 and lang != "en":
            text, n_replaced, _ = noisy_caption(ctx, plan(ctx.ml_kind), lang, split, index)
            out[f"captions_ml/{lang}"] = text
            out[f"captions_ml_noisy/{lang}"] = np.bool_(n_replaced > 0)
        else:
            out[f"captions_ml/{lang}"] = _realize_plan(plan(ctx.ml_kind), lang, False, False)[0]
    if sel.other:
        _other(ctx, spec, objs, rels, split, index, sel.other, texts, n_slots, boxes, areas, draws, out,
               world=world, fields=fields)
    return out


_NOISE_TYPES = (rz.COUNT, rz.SIZE, rz.COLOR, rz.TEXTURE, rz.SHAPE, rz.POSITION, rz.RELATION)
_NOISE_WINDOW = 256   # uniforms per language (wraps for longer captions)


def _alternatives(ctx, L, typ: int, concept: int, word: str) -> list:
    """(span type, concept id, surface word) -> other surface words of the same category (enabled values)."""
    T = rz._TABLES[L.code]
    if typ == rz.COUNT:
        table, ids = T.num, range(1, ctx.max_objects + 1)
    elif typ == rz.SIZE:
        table, ids = T.size, ctx.sizes
    elif typ == rz.COLOR:
        table, ids = T.color, ctx.colors
    elif typ == rz.TEXTURE:
        table, ids = T.texture, ctx.textures if len(ctx.textures) > 1 else range(len(concepts.TEXTURES))
    elif typ == rz.SHAPE:
        table = T.shape_pl if word == T.shape_pl[concept] and word != T.shape_sg[concept] else T.shape_sg
        ids = ctx.shapes
    elif typ == rz.POSITION:
        table, ids = T.pos, range(len(concepts.POSITIONS))
    else:
        return [w for r in concepts.RELATIONS if (w := L.words["rel:" + r]) and w != word]
    return [table[i] for i in ids if table[i] != word]


def noisy_caption(ctx, plan: list, lang: str, split: str, index: int) -> tuple:
    """(caption plan, lang) -> (text, words replaced, content words): each content word is replaced by another
    word of its category with probability `translation_noise` (RS-M-CLIP), on the `language` stream."""
    L = lexicon.language(lang)
    pieces = [p for sent in plan for frame, variant, kw in sent for p in rz.frame_pieces(frame, lang, variant, **kw)]
    k = concepts.LANGUAGES.index(lang)
    u = stream_uniforms(ctx.seed, split, index, "language", 2 * _NOISE_WINDOW * len(concepts.LANGUAGES))
    u = u[2 * _NOISE_WINDOW * k:2 * _NOISE_WINDOW * (k + 1)].tolist()
    out, n_content, n_replaced = [], 0, 0
    for j, piece in enumerate(pieces):
        text, typ, slot, concept, sep = piece
        if typ in _NOISE_TYPES and concept >= 0:
            n_content += 1
            if u[(2 * j) % len(u)] < ctx.translation_noise:
                alts = _alternatives(ctx, L, typ, concept, text)
                if alts:
                    text = alts[min(int(u[(2 * j + 1) % len(u)] * len(alts)), len(alts) - 1)]
                    n_replaced += 1
        out.append((text, typ, slot, concept, sep))
    return rz.join(out, False)[0], n_replaced, n_content


def _other(ctx, spec, objs, rels, split, index, other, texts, n_slots, boxes, areas, draws, out, world=None,
           fields=()) -> None:
    """Fills tags, summary, entities, qa, pope, ref, negatives and the variant groups into `out`."""
    if "tags" in other:
        tags = [f"{concepts.COLORS[o.color]} {concepts.SHAPES[o.shape]}" for o in objs]
        out["tags"] = tuple(tags) + ("",) * (n_slots - len(tags))
    if "summary" in other:
        out["summary"] = _summary(spec, objs, areas)
    if "entities" in other:
        ents = []
        for s in texts[ctx.default][1]:
            if s[2] == rz.SHAPE and s[4] >= 0 and concepts.SHAPES[s[4]] not in ents:
                ents.append(concepts.SHAPES[s[4]])
        ents = ents[:n_slots]
        out["entities"] = tuple(ents) + ("",) * (n_slots - len(ents))
    if "qa" in other or "qa/context" in other:
        qa = _qa(ctx, spec, objs, rels, split, index, areas,
                 context=ctx.text_only_p > 0 or "qa/context" in other)
        out.update(qa if "qa" in other else {k: qa[k] for k in ("qa/context", "qa/needs_image")})
    if "pope" in other:
        out.update(_pope(ctx, objs, split, index))
    if "ref" in other:
        out.update(_refs(ctx, spec, objs, rels, split, index, np.asarray(boxes, np.float32)))
    if "negatives/swap_attr" in other:
        out["negatives/swap_attr"] = _swap_attr(ctx, objs, draws("swap_attr"))
    if world is not None and other & _VARIANT_SET:
        from vljax.data.world import conversation, variants  # NOTE: local import: both import this module.
        if "contrast" in other:
            out.update(variants.contrast(world, spec, split, index, _sub(fields, "contrast")))
        if "pref" in other:
            out.update(variants.preference(world, ctx, spec, objs, split, index))
        if "cf" in other:
            out.update(variants.counterfactual(world, spec, split, index, _sub(fields, "cf")))
        if "conversation" in other:
            bx = spec_boxes(spec) if boxes is None else boxes
            out.update(conversation.conversation(world, ctx, spec, objs, rels, split, index, bx))


_VARIANT_SET = frozenset(_VARIANTS)


def _sub(fields: tuple, group: str) -> tuple:
    """fields -> the paths naming `group` or below it (the whole group when only a parent prefix is given)."""
    sub = tuple(f for f in fields if f == group or f.startswith(group + "/"))
    return sub or (group,)


_CAPTION_WINDOW = {k: i for i, k in enumerate(CAPTION_KINDS + ("swap_attr",))}


def _summary(spec: SceneSpec, objs: list, areas) -> str:
    """-> shape noun of the main object (largest visible area, else circumradius; ties to the lowest slot)."""
    if not objs:
        return ""
    key = (lambda o: float(areas[o.slot])) if areas is not None else (lambda o: float(spec.scale[o.slot]))
    best = max(objs, key=lambda o: (key(o), -o.slot))
    return concepts.SHAPES[best.shape]


def caption_text(world, spec: SceneSpec, relations, split: str, index: int, kind: str, lang: str = "en") -> str:
    """(scene, caption kind, language) -> that caption realized in `lang` (same plan as captions/<kind>)."""
    lexicon.language(lang)
    if kind in ("raw", "ptp"):
        if lang != "en":
            raise ValueError(f"caption kind {kind!r} is English-only, got lang={lang!r}")
        fields = (f"captions/{kind}",)
        return annotate(world, spec, relations, split, index, fields)[f"captions/{kind}"]
    if kind not in CAPTION_KINDS:
        raise ValueError(f"unknown caption kind {kind!r}; valid: {', '.join(CAPTION_KINDS)}")
    ctx = _context(world)
    objs, rels = _objects(spec), _rel_set(relations, len(spec.valid))
    u = stream_uniforms(ctx.seed, split, index, "caption", len(_CAPTION_WINDOW) * _WINDOW).tolist()

    def draws(k):
        w = _CAPTION_WINDOW[k]
        return _Draws(u[w * _WINDOW:(w + 1) * _WINDOW])

    if kind in ("short", "positional"):
        plan = _plan_short(ctx, objs, draws(kind), kind == "positional")
    elif kind == "long":
        plan = _plan_long(ctx, objs, rels, draws(kind))
    elif kind == "partial":
        plan = _plan_partial(ctx, objs, draws(kind))[0]
    else:
        plan = _plan_noisy(ctx, objs, draws("partial"), draws(kind))[0]
    return _realize_plan(plan, lang, False, False)[0]
