"""VQA soft accuracy with the official answer normalization (VQA challenge `vqaEval.py`), and the world evaluator.

normalize_answer(a): newlines/tabs -> spaces, strip; punctuation: each of ; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !
    is deleted when it touches a space (or the answer has a digit,digit comma), else replaced by a space; periods
    not next to a digit are deleted; lowercase, split on whitespace; number words none/zero..ten -> digits;
    articles a/an/the dropped; contractions without apostrophe restored ("dont" -> "don't"); joined by one space.

vqa_accuracy(pred, answers) with the (usually 10) human answers h_1..h_m, all normalized:
    acc = (1/m) sum_j min(1, #{l != j : h_l == pred} / 3)
i.e. min(#humans that said pred / 3, 1) averaged over the m leave-one-out subsets of m - 1 humans (10 choose 9).
NOTE: the official script normalizes only when the humans disagree (a quirk); here both sides are always
normalized, as lmms-eval / LAVIS do, so "Two" and "2" match even against unanimous references.

World evaluator (`evaluate`): greedy decoding of the world's `qa/*` items; the world has one unambiguous answer per
question, counted as `humans` (default 10) identical human answers, so the soft score of an item is 1 when the
normalized prediction equals the normalized answer and 0 otherwise.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from vljax.data.world.annotate import QA_TYPES
from vljax.eval import generation
from vljax.eval.embed import world_samples

_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at",
    "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've",
    "someone'dve": "someone'd've", "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas",
    "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}  # fmt: skip
_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
            "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = frozenset(("a", "an", "the"))
_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")


def _punctuation(text: str) -> str:
    """The official processPunctuation (its decisions look at the *input* text, not the partly cleaned one)."""
    out = text
    digit_comma = _COMMA_STRIP.search(text) is not None
    for p in _PUNCT:
        if p + " " in text or " " + p in text or digit_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    # NOTE: the official call is `periodStrip.sub("", outText, re.UNICODE)`, i.e. count=32 replacements at most.
    return _PERIOD_STRIP.sub("", out, count=32)


def _digits_articles(text: str) -> str:
    """The official processDigitArticle: lowercase, number words -> digits, drop articles, restore contractions."""
    words = [_NUMBERS.get(w, w) for w in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


def normalize_answer(text: str) -> str:
    """Answer string -> its official VQA normal form (see the module docstring)."""
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return _digits_articles(_punctuation(text))


def vqa_accuracy(pred: str, answers: Sequence[str]) -> float:
    """Prediction + m >= 2 human answers -> mean over leave-one-out subsets of min(1, matches / 3)."""
    if len(answers) < 2:
        raise ValueError(f"vqa_accuracy needs >= 2 human answers (leave-one-out), got {len(answers)}")
    p = normalize_answer(pred)
    hits = np.array([normalize_answer(a) == p for a in answers], float)
    total = hits.sum()
    return float(np.mean(np.minimum(1.0, (total - hits) / 3.0)))


def score(preds: Sequence[str], answers: Sequence[Sequence[str]], types: Sequence[int]) -> dict[str, float]:
    """Predictions, human answers per item, QA type ids -> {accuracy, accuracy/<type>}."""
    acc = np.array([vqa_accuracy(p, a) for p, a in zip(preds, answers)])
    types = np.asarray(types)
    out = {"accuracy": float(acc.mean())}
    for t in np.unique(types):
        out[f"accuracy/{QA_TYPES[int(t)]}"] = float(acc[types == t].mean())
    return out


def evaluate(exp, params, cfg) -> dict[str, float]:
    """cfg: split, n (scenes; 0 = skip), max_new_tokens, humans (10) -> {accuracy, accuracy/<type>}.

    Every `qa/*` item of the first n scenes is asked (not one per scene like `generation`).
    """
    n = int(cfg.get("n", 0))
    if n <= 0:
        return {}
    samples = world_samples(exp.world, cfg.get("split", "test"), n, ("image", "qa"))
    prompts, images, answers, types = [], [], [], []
    humans = int(cfg.get("humans", 10))
    for s in samples:
        for q, a, t in zip(s["qa/question"], s["qa/answer"], np.asarray(s["qa/type"]).tolist()):
            if q:
                prompts.append(str(q))
                images.append(s["image"])
                answers.append([str(a)] * humans)
                types.append(int(t))
    preds = generation.generate_texts(exp, params, cfg, prompts, np.stack(images))
    return score(preds, answers, types)
