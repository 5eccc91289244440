"""Word-level vocabulary of the enabled languages (WORLD.md 3.8): every word any realizer can emit.

Order is deterministic: special tokens (pad 0, bos 1, eos 2, unk 3, ...), punctuation and digits, then
each language's words sorted. Tokenization lowercases and splits punctuation and digits off.
"""
from __future__ import annotations

from vljax.data.world import annotate as ann
from vljax.data.world.language import corpus, lexicon, templates
from vljax.data.world.language import realize as rz
from vljax.data.world.language.tokenize import DIGITS, PUNCT
from vljax.data.world.language.tokenize import words as tokenize

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>", "<image>", "<video>", "<audio>", "<user>", "<assistant>", "<sep>")
PAD, BOS, EOS, UNK = 0, 1, 2, 3


def language_words(lang: str) -> set:
    """language -> set of every token its realizers, templates and class names can emit."""
    L = lexicon.language(lang)
    out = set()
    for w in L.words.values():
        out.update(tokenize(w))
    T = rz._TABLES[lang]
    for seq in (T.shape_pl, (T.object_pl,)):
        for w in seq:
            out.update(tokenize(w))
    for temps in L.frames.values():
        for t in temps:
            out.update(tokenize(" ".join(_frame_literals(t))))
    out = {w for w in out if w not in ("{", "}") and not w.isupper()}
    for kind in templates.KINDS:
        for t in templates.templates(lang, kind):
            out.update(tokenize(t.replace("{}", " ")))
    if L.plural == "piece":
        out.add(lexicon.PLURAL_PIECE)
    if lang == "en":
        out.update(("a", "an", "is", "are", "block", "has", "nothing", "plus", "not"))
        out.update(tokenize(" ".join(ann._RAW_OPENERS + ann._RAW_NOISE + ann._DISTRACTORS)))
        out.update(ann._MC_LETTERS)
        out.update(tokenize(" ".join(corpus._SUBJECTS + corpus._VERBS + corpus._OBJECTS + corpus._ADVERBS)))
        out.update(tokenize(f"{corpus.VISUAL_PREFIX} {corpus.QA_MARK} {corpus.ANSWER_MARK}"))
        for task in ("shape", "color", "size", "texture", "color_shape"):
            for name, phrases in templates.descriptors(task).items():
                out.update(tokenize(name + " " + " ".join(phrases)))
    return {w for w in out if w not in PUNCT and w not in DIGITS}


def _frame_literals(template: str) -> list:
    """template -> its literal (non-placeholder) tokens."""
    return [t for t in template.split() if not t.startswith("{")]


class Vocab:
    """Closed word vocabulary: `ids(text)` / `words(ids)`; unknown words map to <unk> (id 3)."""

    def __init__(self, languages=("en",)):
        words = list(SPECIALS) + sorted(PUNCT) + sorted(DIGITS)
        seen = set(words)
        for lang in languages:
            for w in sorted(language_words(lang)):
                if w not in seen:
                    seen.add(w)
                    words.append(w)
        self.languages = tuple(languages)
        self._words = tuple(words)
        self._index = {w: i for i, w in enumerate(words)}

    def __len__(self) -> int:
        return len(self._words)

    def ids(self, text: str) -> list:
        """str -> list[int] word ids (no bos/eos)."""
        get = self._index.get
        return [get(w, UNK) for w in tokenize(text)]

    def words(self, ids) -> list:
        """ids -> list[str] tokens."""
        return [self._words[int(i)] for i in ids]

    def index(self, word: str) -> int:
        """word -> id (UNK when absent)."""
        return self._index.get(word, UNK)
