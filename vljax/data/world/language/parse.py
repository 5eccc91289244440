"""Text -> meaning: the inverse of the frame realizer, in every language (WORLD.md 3.8, 5.1 `parse`).

The parser is lexicon-driven and frame-agnostic: it tags tokens by longest match against the
language's table, chunks maximal runs of noun-phrase words into mentions, attaches locatives by the
language's order parameter, reads one predicate per sentence as a relation between its first two noun
phrases, and names the frame from its cue words. Unknown words (web noise, distractors) are skipped.
Values are English concept names; the xb homonym parses to "circle|ring".
"""
from __future__ import annotations

from typing import NamedTuple

from vljax.data.world import concepts
from vljax.data.world.language import lexicon
from vljax.data.world.language.tokenize import words as tokenize

# A mention: (count, size, color, texture, shape, position); None where the text does not say.
Mention = tuple


class Parsed(NamedTuple):
    """Meaning of a text: mentions, relations (subject, predicate, object) and a bare answer."""

    mentions: list
    relations: list
    answer: str | None
    frames: list = []


_NP_CATS = frozenset(("num", "det", "size", "color", "texture", "shape", "pl", "glue"))
_SLOT = {"num": 0, "det": 0, "size": 1, "color": 2, "texture": 3, "shape": 4}
_PART = {"num": "det", "det": "det", "size": "size", "color": "color", "texture": "texture", "shape": "noun"}
_ORDER = {code: {part: i for i, part in enumerate(L.np_order)} for code, L in lexicon.LANGS.items()}
_ANSWER_CATS = frozenset(("num", "size", "color", "texture", "shape", "pos", "yesno"))


def _entries(L: lexicon.Language) -> dict:
    """Language -> {token tuple: (category, value)} with plural nouns and the xb homonym merged."""
    table = {}

    def add(surface: str, cat: str, val):
        key = tuple(tokenize(surface))
        if not key:
            return
        old = table.get(key)
        if old is not None and old != (cat, val):
            if old[0] == cat == "shape":
                val = "|".join(sorted(set(old[1].split("|")) | {val}))
            else:
                raise AssertionError(f"{L.code}: word {surface!r} is both {old} and {(cat, val)}")
        table[key] = (cat, val)

    for i in range(lexicon.MAX_NUMBER + 1):
        add(L.words[f"num{i}"], "num", i)
    if L.code == "en":
        add("a", "num", 1)
        add("an", "num", 1)
    for cat, names in (("size", concepts.SIZES), ("color", concepts.COLORS), ("texture", concepts.TEXTURES),
                       ("pos", concepts.POSITIONS), ("rel", concepts.RELATIONS)):
        key = "pos" if cat == "pos" else cat[:3] if cat == "rel" else cat
        for name in names:
            add(L.words[f"{key}:{name}"], cat, name)
    for name in concepts.SHAPES:
        for plural in (False, True):
            add(L.noun(f"shape:{name}", plural), "shape", name)
    for plural in (False, True):
        add(L.noun("object", plural), "shape", None)
    add(L.words["the"], "det", None)
    add(L.words["at"], "at", None)
    for attr in ("color", "shape", "size", "texture"):
        add(L.words[f"{attr}_q"], "attrq", attr)
    for cue in ("what", "where", "how_many", "more", "than", "q"):
        add(L.words[cue], "cue", cue)
    add(L.words["yes"], "yesno", "yes")
    add(L.words["no"], "yesno", "no")
    if L.plural == "piece":
        add(lexicon.PLURAL_PIECE, "pl", None)
    for surface, key in L.aliases.items():
        add(surface, "cue", key)
    # NOTE: function words last, so a clash with a content word above raises instead of shadowing it.
    for key in ("exist", "see", "is", "appears", "picture", "with", "image", "of", "here", "found", "visible"):
        add(L.words[key], "func", key)
    table[("-",)] = ("glue", None)
    return table


_TABLES = {code: _entries(L) for code, L in lexicon.LANGS.items()}
_MAXLEN = {code: max(len(k) for k in t) for code, t in _TABLES.items()}


def tag(text: str, lang: str = "en") -> list:
    """str -> [(token(s), category, value)] by longest match; unknown words get category None."""
    lexicon.language(lang)
    table, maxlen = _TABLES[lang], _MAXLEN[lang]
    toks = tokenize(text)
    out, i = [], 0
    while i < len(toks):
        for n in range(min(maxlen, len(toks) - i), 0, -1):
            hit = table.get(tuple(toks[i:i + n]))
            if hit is not None:
                out.append((" ".join(toks[i:i + n]), hit[0], hit[1]))
                i += n
                break
        else:
            tok = toks[i]
            out.append((tok, "end" if tok in (".", "?", "!") else None, None))
            i += 1
    return out


def _chunks(tags: list, loc_before: bool, order: dict) -> tuple:
    """tags of one sentence -> (noun phrases as 6-lists, relation predicate or None, cues)."""
    pred, cues = None, []
    cur, has_content = None, False
    items = []  # ("np", list) | ("pos", name)

    def close():
        nonlocal cur, has_content, last
        if cur is not None and has_content:
            items.append(("np", cur))
        cur, has_content, last = None, False, -1

    last = -1
    for _, cat, val in tags:
        if cat in _NP_CATS:
            if cat in ("pl", "glue"):
                continue
            # NOTE: a part at or before the last one in the language's NP order starts a new noun phrase.
            rank = order[_PART[cat]]
            if cur is None or rank <= last:
                close()
                cur = [None] * 7  # count, size, color, texture, shape, position, noun seen
            last = rank
            if cat == "det":
                continue
            if cat == "shape":
                cur[6] = True
            if cat != "num":
                has_content = True
            cur[_SLOT[cat]] = val
            continue
        close()
        if cat == "pos":
            items.append(("pos", val))
        elif cat == "rel":
            pred = val
        elif cat in ("cue", "attrq"):
            cues.append((cat, val))
    close()
    # NOTE: attach each locative to its noun phrase by the language's order parameter.
    for k, (kind, val) in enumerate(items):
        if kind != "pos":
            continue
        rng = range(k + 1, len(items)) if loc_before else range(k - 1, -1, -1)
        for j in rng:
            if items[j][0] == "np":
                items[j][1][5] = val
                break
    nps = [v for kind, v in items if kind == "np"]
    return nps, pred, cues


def _mention(np: list) -> Mention:
    """7-list chunk -> mention tuple."""
    return tuple(np[:6])


def parse(text: str, lang: str = "en") -> Parsed:
    """str -> Parsed(mentions, relations, answer, frames): the meaning of any realized frame."""
    L = lexicon.language(lang)
    tags = tag(text, lang)
    content = [t for t in tags if t[1] not in ("end", "glue") and t[0] not in (",",)]
    if len(content) == 1 and content[0][1] in _ANSWER_CATS:
        cat, val = content[0][1], content[0][2]
        ans = lexicon.NUMBER_WORDS_EN[val] if cat == "num" else val
        return Parsed([], [], ans, ["ANSWER"])
    mentions, relations, frames = [], [], []
    sentence = []
    for t in tags + [("", "end", None)]:
        if t[1] != "end":
            sentence.append(t)
            continue
        if sentence:
            question = t[0] == "?"
            nps, pred, cues = _chunks(sentence, L.loc_before, _ORDER[L.code])
            cue_set = {v for c, v in cues if c == "cue"}
            attrq = [v for c, v in cues if c == "attrq"]
            if pred is not None and len(nps) >= 2:
                relations.append((_mention(nps[0]), pred, _mention(nps[1])))
                nps = nps[2:]
            frames.append(_frame_name(cue_set, attrq, pred, question, bool(nps) or bool(relations)))
            mentions.extend(_mention(n) for n in nps)
        sentence = []
    return Parsed(mentions, relations, None, frames)


def _frame_name(cues: set, attrq: list, pred, question: bool, has_np: bool) -> str:
    """cue words of a sentence -> frame name."""
    if "how_many" in cues:
        return "COUNT"
    if "more" in cues or "than" in cues:
        return "COMPARE"
    if attrq:
        return f"ASK:{attrq[0]}"
    if "where" in cues:
        return "WHERE"
    if pred is not None:
        return "RELQ" if question else "REL"
    if question:
        return "EXISTQ"
    return "EXIST" if has_np else "GENERIC"
