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
