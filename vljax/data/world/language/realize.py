"""Semantic frames -> text in any language, with character spans (WORLD.md 3.2, 3.8).

A frame (EXIST, LIST, REL, ASK, WHERE, COUNT, EXISTQ, RELQ, COMPARE, GENERIC, ANSWER) is linearized by
a language's template, noun-phrase order and morphology into *pieces* (word, span type, slot, concept
id, glued); `join` turns pieces into the string and its span table. Templates are compiled once at
import, so realization is dict lookups and list appends (no regex on the hot path).
"""
from __future__ import annotations

from typing import NamedTuple

from vljax.data.world import concepts
from vljax.data.world.language import lexicon

# Span types (WORLD.md 3.2).
BOILERPLATE, COUNT, SIZE, COLOR, SHAPE, TEXTURE, POSITION, RELATION, ACTION, SOUND, NOISE, ENTITY = range(12)
MAX_SPANS = 48
ATTRS = ("color", "shape", "size", "texture")


class NP(NamedTuple):
    """A noun phrase: attribute ids (None = unnamed), the slot it denotes and its determiner."""

    count: int | None = None
    size: int | None = None
    color: int | None = None
    texture: int | None = None
    shape: int | None = None
    position: int | None = None
    slot: int = -1
    definite: bool = False
    plural: bool = False          # bare plural ("red circles") when count is None
    rel: tuple | None = None      # (predicate id, NP): "the object to the left of the red circle"


# A piece: (text, span type, slot, concept id, separator before it: " ", "" or "-").
Piece = tuple


def _compile(template: str) -> tuple:
    """template string -> tuple of (kind, value) tokens."""
    out = []
    for tok in template.split():
        if tok in (".", "?", ","):
            out.append(("punct", tok))
        elif tok.startswith("{") and tok.endswith("}"):
            name = tok[1:-1]
            out.append(("slot", name) if name.isupper() or name == "be" else ("word", name))
        else:
            out.append(("lit", tok))
    return tuple(out)


_COMPILED = {code: {f: tuple(_compile(t) for t in ts) for f, ts in L.frames.items()}
             for code, L in lexicon.LANGS.items()}


def num_paraphrases(frame: str, lang: str) -> int:
    """(frame, lang) -> number of paraphrase templates."""
    return len(_COMPILED[lexicon.language(lang).code][frame])


def _word(L: lexicon.Language, key: str, typ: int = BOILERPLATE, slot: int = -1, concept: int = -1) -> list:
    """lexicon key -> pieces (multiword English entries stay one piece)."""
    w = L.words[key]
    return [(w, typ, slot, concept, " ")] if w else []


class _Table(NamedTuple):
    """Per-language word tuples indexed by concept id (precomputed: the hot path is tuple indexing)."""

    num: tuple
    size: tuple
    color: tuple
    texture: tuple
    shape_sg: tuple
    shape_pl: tuple
    object_sg: str
    object_pl: str
    pos: tuple
    the: str
    at: str


def _table(L: lexicon.Language) -> _Table:
    """Language -> _Table."""
    w = L.words
    return _Table(
        num=tuple(w[f"num{i}"] for i in range(lexicon.MAX_NUMBER + 1)),
        size=tuple(w[f"size:{x}"] for x in concepts.SIZES), color=tuple(w[f"color:{x}"] for x in concepts.COLORS),
        texture=tuple(w[f"texture:{x}"] for x in concepts.TEXTURES),
        shape_sg=tuple(L.noun(f"shape:{x}", False) for x in concepts.SHAPES),
        shape_pl=tuple(L.noun(f"shape:{x}", True) for x in concepts.SHAPES),
        object_sg=L.noun("object", False), object_pl=L.noun("object", True),
        pos=tuple(w[f"pos:{x}"] for x in concepts.POSITIONS), the=w["the"], at=w["at"])


_TABLES = {code: _table(L) for code, L in lexicon.LANGS.items()}
_VOWELS = frozenset("aeiou")


def np_pieces(L: lexicon.Language, np: NP) -> list:
    """NP -> pieces in the language's order, with morphology, locative and relative clause."""
    T = _TABLES[L.code]
    plural = np.plural or (np.count is not None and np.count > 1)
    slot = np.slot
    core = []
    for part in L.np_order:
        if part == "det":
            if np.definite:
                if T.the:
                    core.append((T.the, BOILERPLATE, -1, -1, " "))
            elif np.count is not None:
                if L.code == "en" and np.count == 1:
                    core.append(("a", COUNT, slot, 1, " "))
                else:
                    core.append((T.num[np.count], COUNT, slot, np.count, " "))
        elif part == "noun":
            if np.shape is None:
                core.append((T.object_pl if plural else T.object_sg, SHAPE, slot, -1, " "))
            else:
                core.append(((T.shape_pl if plural else T.shape_sg)[np.shape], SHAPE, slot, np.shape, " "))
        else:
            v = np.color if part == "color" else np.size if part == "size" else np.texture
            if v is not None:
                sep = "-" if part in L.suffixes else " "
                if part == "color":
                    core.append((T.color[v], COLOR, slot, v, sep))
                elif part == "size":
                    core.append((T.size[v], SIZE, slot, v, sep))
                else:
                    core.append((T.texture[v], TEXTURE, slot, v, sep))
    if plural and L.plural == "piece":
        core.append((lexicon.PLURAL_PIECE, BOILERPLATE, -1, -1, "-"))
    if L.code == "en" and len(core) > 1 and core[0][0] == "a" and core[0][1] == COUNT \
            and core[1][0][0] in _VOWELS:
        core[0] = ("an",) + core[0][1:]
    if np.position is not None:
        pos = (T.pos[np.position], POSITION, slot, np.position, " ")
        at = (T.at, BOILERPLATE, -1, -1, "-" if L.loc_glue else " ")
        loc = [at, pos] if L.loc[0] == "at" else [pos, at]
        core = loc + core if L.loc_before else core + loc
    if np.rel is not None:
        pred, other = np.rel
        core = core + pred_pieces(L, pred) + np_pieces(L, other)
    return core


def pred_pieces(L: lexicon.Language, pred: int) -> list:
    """predicate id (concepts.RELATIONS) -> pieces."""
    return _word(L, "rel:" + concepts.RELATIONS[pred], RELATION, -1, pred)


def list_pieces(L: lexicon.Language, nps) -> list:
    """[NP] -> pieces of a conjoined list ("a, b and c")."""
    out = []
    n = len(nps)
    for i, np in enumerate(nps):
        if i:
            if L.code == "en" and i < n - 1:
                out.append((",", BOILERPLATE, -1, -1, ""))
            else:
                out.extend(_word(L, "and"))
        out.extend(np_pieces(L, np))
    return out


_ATTRQ = {"color": "color_q", "shape": "shape_q", "size": "size_q", "texture": "texture_q"}


def frame_pieces(frame: str, lang: str, variant: int = 0, *, np: NP | None = None, np2: NP | None = None,
                 nps=None, pred: int | None = None, attr: str | None = None, answer: str | None = None) -> list:
    """One frame with its arguments -> pieces; `variant` picks the paraphrase (mod their number)."""
    L = lexicon.language(lang)
    if frame == "ANSWER":
        return _answer_pieces(L, answer)
    if frame not in _COMPILED[L.code]:
        raise ValueError(f"unknown frame {frame!r}; valid frames: {', '.join(lexicon.FRAMES)}, ANSWER")
    temps = _COMPILED[L.code][frame]
    out = []
    for kind, val in temps[variant % len(temps)]:
        if kind == "punct":
            out.append((val, BOILERPLATE, -1, -1, ""))
        elif kind == "lit":
            out.append((val, BOILERPLATE, -1, -1, " "))
        elif kind == "word":
            out.extend(_word(L, val))
        elif val in ("NP", "NPP"):
            out.extend(np_pieces(L, np))
        elif val in ("NP2", "NPP2"):
            out.extend(np_pieces(L, np2))
        elif val == "NPS":
            out.extend(list_pieces(L, nps))
        elif val == "PRED":
            out.extend(pred_pieces(L, pred))
        elif val == "ATTRQ":
            out.extend(_word(L, _ATTRQ[attr]))
        elif val == "be":
            plural = np.plural or (np.count is not None and np.count > 1)
            out.append(("are" if plural else "is", BOILERPLATE, -1, -1, " "))
    return out


# ---------------------------------------------------------------------------------------------- text-only path
# NOTE: when no spans are wanted, text is built from *units* (separator, text) instead of pieces; a noun
# phrase's unit is memoized per (language, slot-free NP), a small table, so captions cost dict lookups.
# `frame_text(...) == join(frame_pieces(...), False)[0]` for every input (tests/world/test_world_language.py).
_NP_UNITS: dict = {}
_NP_UNITS_MAX = 1 << 17


def _pieces_unit(pieces: list) -> tuple:
    """pieces -> (separator before the first piece, text of all pieces joined)."""
    return pieces[0][4], join(pieces, False)[0]


def np_unit(L: lexicon.Language, np: NP) -> tuple:
    """NP -> (separator, text) of its pieces (words never depend on the slot, so the cache ignores it)."""
    if np.rel is not None:
        return _pieces_unit(np_pieces(L, np))
    key = (L.code, np.count, np.size, np.color, np.texture, np.shape, np.position, np.definite, np.plural)
    unit = _NP_UNITS.get(key)
    if unit is None:
        unit = _pieces_unit(np_pieces(L, np))
        if len(_NP_UNITS) >= _NP_UNITS_MAX:
            _NP_UNITS.clear()
        _NP_UNITS[key] = unit
    return unit


def _word_unit(L: lexicon.Language, key: str, out: list) -> None:
    """lexicon key -> appends its unit (nothing for an empty word), like `_word`."""
    w = L.words[key]
    if w:
        out.append((" ", w))


def frame_units(frame: str, lang: str, variant: int = 0, *, np: NP | None = None, np2: NP | None = None,
                nps=None, pred: int | None = None, attr: str | None = None, answer: str | None = None) -> list:
    """One frame -> [(separator, text)] units: the text-only counterpart of `frame_pieces`."""
    L = lexicon.language(lang)
    out = []
    if frame == "ANSWER":
        _word_unit(L, answer_key(answer), out)
        return out
    if frame not in _COMPILED[L.code]:
        raise ValueError(f"unknown frame {frame!r}; valid frames: {', '.join(lexicon.FRAMES)}, ANSWER")
    temps = _COMPILED[L.code][frame]
    for kind, val in temps[variant % len(temps)]:
        if kind == "punct":
            out.append(("", val))
        elif kind == "lit":
            out.append((" ", val))
        elif kind == "word":
            _word_unit(L, val, out)
        elif val in ("NP", "NPP"):
            out.append(np_unit(L, np))
        elif val in ("NP2", "NPP2"):
            out.append(np_unit(L, np2))
        elif val == "NPS":
            n = len(nps)
            for i, x in enumerate(nps):
                if i:
                    if L.code == "en" and i < n - 1:
                        out.append(("", ","))
                    else:
                        _word_unit(L, "and", out)
                out.append(np_unit(L, x))
        elif val == "PRED":
            _word_unit(L, "rel:" + concepts.RELATIONS[pred], out)
        elif val == "ATTRQ":
            _word_unit(L, _ATTRQ[attr], out)
        elif val == "be":
            plural = np.plural or (np.count is not None and np.count > 1)
            out.append((" ", "are" if plural else "is"))
    return out


def join_units(units) -> str:
    """[(separator, text)] -> text (the first separator is dropped), as `join(pieces, False)`."""
    parts = []
    for sep, text in units:
        parts.append(sep)
        parts.append(text)
    return "".join(parts[1:])


_FRAME_TEXT: dict = {}


def _np_key(np: NP | None):
    """NP -> hashable slot-free key, or False when it holds a relative clause (not memoized)."""
    if np is None:
        return None
    if np.rel is not None:
        return False
    return (np.count, np.size, np.color, np.texture, np.shape, np.position, np.definite, np.plural)


def frame_text(frame: str, lang: str, variant: int = 0, *, np: NP | None = None, np2: NP | None = None,
               nps=None, pred: int | None = None, attr: str | None = None, answer: str | None = None) -> str:
    """frame + arguments -> text in `lang`; equal to `realize` (text-only fast path, memoized without lists)."""
    k1, k2 = _np_key(np), _np_key(np2)
    key = None if nps is not None or k1 is False or k2 is False else (frame, lang, variant, k1, k2, pred, attr,
                                                                        answer)
    text = _FRAME_TEXT.get(key) if key is not None else None
    if text is None:
        text = join_units(frame_units(frame, lang, variant, np=np, np2=np2, nps=nps, pred=pred, attr=attr,
                                      answer=answer))
        if key is not None:
            if len(_FRAME_TEXT) >= _NP_UNITS_MAX:
                _FRAME_TEXT.clear()
            _FRAME_TEXT[key] = text
    return text


def answer_key(answer: str) -> str:
    """English answer ("red", "two", "top left", "yes") -> lexicon key."""
    if answer in ("yes", "no"):
        return answer
    if answer in lexicon.NUMBER_WORDS_EN:
        return f"num{lexicon.NUMBER_WORDS_EN.index(answer)}"
    for prefix, names in (("color", concepts.COLORS), ("shape", concepts.SHAPES), ("size", concepts.SIZES),
                          ("texture", concepts.TEXTURES), ("pos", concepts.POSITIONS)):
        if answer in names:
            return f"{prefix}:{answer}"
    raise ValueError(f"answer {answer!r} is not a world answer word")


def _answer_pieces(L: lexicon.Language, answer: str) -> list:
    """English answer word -> its translation as one piece."""
    return _word(L, answer_key(answer))


def join(pieces, spans: bool = True) -> tuple:
    """pieces -> (text, spans): spans are [start, end, type, slot, concept] lists, boilerplate merged."""
    if not spans:
        parts = []
        for p in pieces:
            parts.append(p[4])
            parts.append(p[0])
        return "".join(parts[1:]), None
    parts, out = [], []
    pos = 0
    for text, typ, slot, concept, sep in pieces:
        if parts:
            parts.append(sep)
            pos += len(sep)
        start = pos
        parts.append(text)
        pos += len(text)
        if text in _PUNCT:
            continue
        if typ == BOILERPLATE and out and out[-1][2] == BOILERPLATE and sep == " " and out[-1][1] == start - 1:
            out[-1][1] = pos
        else:
            out.append([start, pos, typ, slot, concept])
    return "".join(parts), out


_PUNCT = frozenset((".", "?", ","))


def cap_spans(spans, max_spans: int = MAX_SPANS) -> list:
    """spans -> at most max_spans, dropping boilerplate groups first (content spans win)."""
    if len(spans) <= max_spans:
        return spans
    content = [s for s in spans if s[2] != BOILERPLATE]
    if len(content) >= max_spans:
        return content[:max_spans]
    room = max_spans - len(content)
    keep = set(id(s) for s in [s for s in spans if s[2] == BOILERPLATE][:room])
    return [s for s in spans if s[2] != BOILERPLATE or id(s) in keep]


def realize(frame: str, lang: str, variant: int = 0, **args) -> str:
    """frame + arguments -> text in `lang` (see frame_pieces for the arguments)."""
    return join(frame_pieces(frame, lang, variant, **args))[0]
