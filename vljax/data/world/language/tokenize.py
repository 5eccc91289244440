"""Word tokenization shared by the parser and the vocabulary: lowercase, punctuation and digits split off."""
from __future__ import annotations

PUNCT = frozenset(".,?!;:()[]\"'-/")
DIGITS = frozenset("0123456789")


def words(text: str) -> list:
    """str -> list of lowercase word tokens; punctuation marks and digits become tokens of their own."""
    out = []
    for chunk in text.lower().split():
        cur = []
        for ch in chunk:
            if ch in PUNCT or ch in DIGITS:
                if cur:
                    out.append("".join(cur))
                    cur = []
                out.append(ch)
            else:
                cur.append(ch)
        if cur:
            out.append("".join(cur))
    return out


def word_spans(text: str) -> list:
    """str -> [(char start, char end)] of each token of `words(text)`, in order (same splitting rules).

    Lets token-level code look up the world's character spans (`spans/<kind>`) for each word id.
    """
    out, pos = [], 0
    for chunk in text.split():
        start = text.index(chunk, pos)
        pos = start + len(chunk)
        cur = None
        for k, ch in enumerate(chunk):
            if ch in PUNCT or ch in DIGITS:
                if cur is not None:
                    out.append((start + cur, start + k))
                    cur = None
                out.append((start + k, start + k + 1))
            elif cur is None:
                cur = k
        if cur is not None:
            out.append((start + cur, start + len(chunk)))
    return out
