"""Text-only corpora (WORLD.md 3.9): grain sources of strings drawn in the namespace `text/<kind>`.

Scenes come from `world.scene("text/<kind>", i)`, a split name no eval split shares, so no val/test
caption or QA string can leak into a corpus except by chance collision of tiny scenes (checked in tests).
"""
from __future__ import annotations

from vljax.data.world import annotate as ann
from vljax.data.world import concepts
from vljax.data.world.language import lexicon
from vljax.data.world.language import realize as rz
from vljax.data.world.language.realize import NP
from vljax.data.world.rng import stream_uniforms

KINDS = ("captions", "captions_qa", "visual", "reasoning", "broad", "parallel")
CORPUS_SIZE = 1_000_000
_ENGLISH_ONLY = ("visual", "reasoning", "broad")
_TRUTHFUL = ("short", "positional", "long", "partial")
# "broad": a tiny random grammar on non-visual topics (LSBS W / MIR unrelated text).
_SUBJECTS = ("the farmer", "a teacher", "my friend", "the old sailor", "our neighbor", "the baker", "a student")
_VERBS = ("likes", "visits", "writes about", "talks about", "remembers", "forgets", "sells")
_OBJECTS = ("the market", "music", "a long story", "the river town", "old songs", "the weather", "a recipe")
_ADVERBS = ("every morning", "on sunday", "quietly", "after dinner", "with joy", "again")
VISUAL_PREFIX = "imagine"
QA_MARK, ANSWER_MARK = "question:", "answer:"


class TextCorpus:
    """grain RandomAccessDataSource of corpus items (str, or tuple[str] for `parallel`)."""

    def __init__(self, world, kind: str, lang: str = "en", size: int = CORPUS_SIZE):
        if kind not in KINDS:
            raise ValueError(f"unknown text_corpus kind {kind!r}; valid: {', '.join(KINDS)}")
        lexicon.language(lang)
        if kind in _ENGLISH_ONLY and lang != "en":
            raise ValueError(f"text_corpus kind {kind!r} is English-only, got lang={lang!r}")
        self.world, self.kind, self.lang, self.size = world, kind, lang, int(size)
        self.split = f"text/{kind}"

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int):
        index = int(index)
        if not 0 <= index < self.size:
            raise IndexError(f"text_corpus index {index} out of range [0, {self.size})")
        return _ITEM[self.kind](self, index)

    def __repr__(self) -> str:
        return f"TextCorpus(kind={self.kind!r}, lang={self.lang!r}, size={self.size})"


def _scene(c: TextCorpus, i: int):
    """-> (spec, relations) of scene i in the corpus namespace."""
    spec = c.world.scene(c.split, i)
    return spec, c.world.relations(spec)


def _captions(c: TextCorpus, i: int) -> str:
    """-> one truthful caption (kind cycles with i) of a namespace scene."""
    spec, rel = _scene(c, i)
    return ann.caption_text(c.world, spec, rel, c.split, i, _TRUTHFUL[i % len(_TRUTHFUL)], c.lang)


def _captions_qa(c: TextCorpus, i: int) -> str:
    """-> a caption (even i) or a "question: ... answer: ..." line (odd i)."""
    if i % 2 == 0:
        return _captions(c, i)
    spec, rel = _scene(c, i)
    qa = ann.annotate(c.world, spec, rel, c.split, i, ("qa",))
    k = (i // 2) % max(1, len(qa["qa/question"]))
    if not qa["qa/question"] or not qa["qa/question"][k]:
        return _captions(c, i - 1)
    q = qa["qa/question"][k]
    if c.lang != "en":
        return _captions(c, i - 1)
    return f"{QA_MARK} {q} {ANSWER_MARK} {qa['qa/answer'][k]}"


def _visual(c: TextCorpus, i: int) -> str:
    """-> "imagine <long caption>": a scene description without an image."""
    spec, rel = _scene(c, i)
    return f"{VISUAL_PREFIX} " + ann.caption_text(c.world, spec, rel, c.split, i, "long", "en")


def _reasoning(c: TextCorpus, i: int) -> str:
    """-> a counting / comparison word problem over symbolic objects with a worked answer."""
    u = stream_uniforms(int(ann._cfg(c.world).seed), c.split, i, "language", 16).tolist()
    colors = ann._context(c.world).colors
    shape = int(u[0] * 8) % len(concepts.SHAPES)
    a, b = colors[int(u[1] * len(colors))], colors[int(u[2] * len(colors))]
    if a == b:
        b = colors[(colors.index(a) + 1) % len(colors)]
    na, nb = 1 + int(u[3] * 5), 1 + int(u[4] * 5)
    facts = rz.realize("LIST", "en", 0, nps=[NP(count=na, color=a, shape=shape), NP(count=nb, color=b, shape=shape)])
    num = lexicon.NUMBER_WORDS_EN
    if u[5] < 0.5:
        q = rz.realize("COUNT", "en", 0, np=NP(shape=shape, plural=True))
        work = f"{num[na]} plus {num[nb]} is {num[na + nb]}."
        ans = num[na + nb]
    else:
        q = rz.realize("COMPARE", "en", 0, np=NP(color=a, shape=shape, plural=True),
                       np2=NP(color=b, shape=shape, plural=True))
        rel = "more than" if na > nb else "not more than"
        work = f"{num[na]} is {rel} {num[nb]}."
        ans = "yes" if na > nb else "no"
    return f"there are {facts}. {q} {work} {ANSWER_MARK} {ans}"


def _broad(c: TextCorpus, i: int) -> str:
    """-> one or two random-grammar sentences on non-visual topics, sometimes naming an object."""
    u = stream_uniforms(int(ann._cfg(c.world).seed), c.split, i, "language", 16).tolist()
    pick = lambda seq, x: seq[int(x * len(seq)) % len(seq)]
    s = f"{pick(_SUBJECTS, u[0])} {pick(_VERBS, u[1])} {pick(_OBJECTS, u[2])} {pick(_ADVERBS, u[3])}."
    if u[4] < 0.2:
        obj = rz.realize("LIST", "en", 0, nps=[NP(count=1, color=int(u[5] * 10), shape=int(u[6] * 13))])
        s += f" {pick(_SUBJECTS, u[7])} {pick(_VERBS, u[8])} {obj}."
    return s


def _parallel(c: TextCorpus, i: int) -> tuple:
    """-> the same long-caption plan realized in every enabled language (config order)."""
    spec, rel = _scene(c, i)
    langs = tuple(ann._cfg(c.world).languages)
    return tuple(ann.caption_text(c.world, spec, rel, c.split, i, "long", lang) for lang in langs)


_ITEM = {"captions": _captions, "captions_qa": _captions_qa, "visual": _visual, "reasoning": _reasoning,
         "broad": _broad, "parallel": _parallel}
_BROAD_WORDS = frozenset(w for seq in (_SUBJECTS, _VERBS, _OBJECTS) for p in seq for w in p.split()) - frozenset(
    ("the", "a", "about", "old"))


def text_corpus(world, kind: str, lang: str = "en", size: int = CORPUS_SIZE) -> TextCorpus:
    """(world, kind, lang) -> TextCorpus (grain RandomAccessDataSource of str)."""
    return TextCorpus(world, kind, lang, size)


def text_kind(text) -> str:
    """corpus item -> the kind that generated it (rule-based tagger)."""
    if isinstance(text, tuple):
        return "parallel"
    if text.startswith(QA_MARK):
        return "captions_qa"
    if text.startswith(VISUAL_PREFIX + " "):
        return "visual"
    if f" {ANSWER_MARK} " in text:
        return "reasoning"
    if any(w in _BROAD_WORDS for w in text.replace(".", " ").split()):
        return "broad"
    return "captions"
