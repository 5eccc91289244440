"""Captioning metrics as in the COCO caption toolkit (pycocoevalcap): corpus BLEU-1..4 and CIDEr-D.

Inputs are pre-tokenized strings (tokens separated by whitespace): `hyps[i]` is the one candidate for image i,
`refs[i]` its references (>= 1). `ptb_tokenize` is a Java-free stand-in for the toolkit's Stanford PTB tokenizer.

BLEU (`bleu`, the toolkit's `BleuScorer.compute_score(option="closest")`), corpus level:
    c_k = sum_i sum_{g in k-grams(h_i)} min(count_h_i(g), max_r count_r(g))     clipped k-gram matches
    t_k = sum_i max(0, |h_i| - k + 1)                                             candidate k-grams
    p_k = (c_k + 1e-15) / (t_k + 1e-9)                                            the toolkit's smoothing
    c = sum_i |h_i|,  r = sum_i r_i,  r_i = the reference length closest to |h_i| (ties -> the shorter)
    BP = exp(1 - r / c') with c' / r = (c + 1e-15) / (r + 1e-9) when that ratio is < 1, else 1
    BLEU-n = BP * (p_1 * ... * p_n) ** (1 / n)

CIDEr-D (`cider_d`, the toolkit's `CiderScorer`, sigma = 6), with N images and k-grams k = 1..4:
    df(g) = number of images whose reference set contains g;  idf(g) = log(N) - log(max(1, df(g)))
    v_k(s)[g] = count_s(g) * idf(g)  (raw counts, k-grams of length k only)
    sim_k(h, r) = sum_g min(v_k(h)[g], v_k(r)[g]) * v_k(r)[g] / (|v_k(h)| |v_k(r)|)   (clipped; 0 if a norm is 0)
                  * exp(-(l(h) - l(r))^2 / (2 sigma^2)),  l(s) = number of bigrams = max(0, |s| - 1)
    CIDEr-D(i) = 10 * mean_k (1 / |refs_i|) sum_r sim_k(h_i, r);   corpus CIDEr-D = mean_i CIDEr-D(i)
NOTE: l(s) counts bigrams, not words, exactly like the toolkit (its `counts2vec` adds term frequencies of n == 1,
i.e. 2-grams); the difference equals the word-count difference unless a side is empty, where the cosine is 0.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence

import numpy as np

# NOTE: the toolkit drops these PTB tokens after tokenizing; brackets and quotes come out of the Java
# tokenizer as -LRB- / `` ... tokens that are dropped too, so every one of these characters simply disappears.
_PUNCT = re.compile(r"[.?!,:;\-\"`()\[\]{}]")
_CLITIC = re.compile(r"(n't|'s|'re|'ve|'ll|'d|'m)\b")
_CLITICS = frozenset(("n't", "'s", "'re", "'ve", "'ll", "'d", "'m"))


def ptb_tokenize(text: str) -> str:
    """Caption -> lowercase tokens joined by single spaces, punctuation removed (PTB-like, no Java).

    Clitics are split off like the PTB tokenizer does ("dog's" -> "dog 's", "don't" -> "do n't"); other
    apostrophes survive only inside a word ("o'clock").
    """
    text = _CLITIC.sub(r" \1", text.lower().replace("\n", " "))
    words = (w if w in _CLITICS else w.strip("'") for w in _PUNCT.sub(" ", text).split())
    return " ".join(w for w in words if w)


def _ngrams(words: Sequence[str], n: int) -> Counter:
    """tokens -> Counter of every k-gram (tuple) for k = 1..n."""
    counts = Counter()
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            counts[tuple(words[i : i + k])] += 1
    return counts


def _check(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> None:
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} reference sets")
    if not hyps:
        raise ValueError("caption metrics need at least one image")
    for i, r in enumerate(refs):
        if isinstance(r, str) or len(r) == 0:
            raise ValueError(f"refs[{i}] must be a non-empty list of reference strings, got {r!r}")


def bleu(hyps: Sequence[str], refs: Sequence[Sequence[str]], n: int = 4) -> list[float]:
    """Corpus BLEU-1..n (closest reference length, toolkit smoothing) -> [BLEU-1, ..., BLEU-n]."""
    _check(hyps, refs)
    small, tiny = 1e-9, 1e-15
    correct, guess = [0] * n, [0] * n
    testlen = reflen = 0
    for hyp, rs in zip(hyps, refs):
        words = hyp.split()
        counts = _ngrams(words, n)
        maxref = Counter()
        lens = []
        for r in rs:
            rw = r.split()
            lens.append(len(rw))
            for g, c in _ngrams(rw, n).items():
                maxref[g] = max(maxref[g], c)
        testlen += len(words)
        reflen += min((abs(length - len(words)), length) for length in lens)[1]
        for k in range(n):
            guess[k] += max(0, len(words) - k)
        for g, c in counts.items():
            correct[len(g) - 1] += min(maxref.get(g, 0), c)
    out, prod = [], 1.0
    for k in range(n):
        prod *= (correct[k] + tiny) / (guess[k] + small)
        out.append(prod ** (1.0 / (k + 1)))
    ratio = (testlen + tiny) / (reflen + small)
    if ratio < 1:
        out = [b * math.exp(1 - 1 / ratio) for b in out]
    return out


def _tfidf(counts: Counter, idf: dict, log_n: float, n: int):
    """n-gram counts -> (per-k {g: tf * idf}, per-k L2 norms [n], bigram count)."""
    vec = [{} for _ in range(n)]
    norm = np.zeros(n)
    for g, tf in counts.items():
        k = len(g) - 1
        vec[k][g] = float(tf) * (log_n - idf.get(g, 0.0))
        norm[k] += vec[k][g] ** 2
    return vec, np.sqrt(norm), sum(tf for g, tf in counts.items() if len(g) == 2)


def cider_d(hyps: Sequence[str], refs: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0):
    """CIDEr-D over a corpus -> (corpus score, float64 [num_images] per-image scores)."""
    _check(hyps, refs)
    ref_counts = [[_ngrams(r.split(), n) for r in rs] for rs in refs]
    df = Counter()
    for rcs in ref_counts:
        df.update(set(g for rc in rcs for g in rc))
    log_df = {g: math.log(max(1.0, d)) for g, d in df.items()}
    log_n = math.log(float(len(hyps)))
    scores = np.zeros(len(hyps))
    for i, (hyp, rcs) in enumerate(zip(hyps, ref_counts)):
        vh, nh, lh = _tfidf(_ngrams(hyp.split(), n), log_df, log_n, n)
        total = np.zeros(n)
        for rc in rcs:
            vr, nr, lr = _tfidf(rc, log_df, log_n, n)
            penalty = math.exp(-((lh - lr) ** 2) / (2 * sigma**2))
            for k in range(n):
                # NOTE: clipping min(h, r) * r is what makes it CIDEr-D (a repeated n-gram cannot out-score r).
                val = sum(min(w, vr[k].get(g, 0.0)) * vr[k].get(g, 0.0) for g, w in vh[k].items())
                if nh[k] != 0 and nr[k] != 0:
                    val /= nh[k] * nr[k]
                total[k] += val * penalty
        scores[i] = 10.0 * total.mean() / len(rcs)
    return float(scores.mean()), scores


def evaluate(exp, params, cfg) -> dict[str, float]:
    """Evaluator kind `captioning`. cfg: split, n (images; 0 = skip), refs (caption kinds used as references,
    default ("short",)), max_new_tokens -> {bleu1..bleu4, cider}.

    Every image is captioned from the method's caption prompt; references are the world's `captions/<kind>`
    for each kind in cfg.refs (several kinds = several references per image). Both sides go through
    `ptb_tokenize`.
    """
    from vljax.eval import generation
    from vljax.eval.embed import world_samples

    n = int(cfg.get("n", 0))
    if n <= 0:
        return {}
    kinds = tuple(cfg.get("refs", ("short",)))
    if not kinds:
        raise ValueError("config.evals.<captioning>.refs must name at least one caption kind")
    samples = world_samples(exp.world, cfg.get("split", "test"), n, ("image",) + tuple(f"captions/{k}" for k in kinds))
    for k in kinds:
        if f"captions/{k}" not in samples[0]:
            raise ValueError(f"config.evals.<captioning>.refs: the world returns no captions/{k} "
                             f"(enable it in config.data.world.caption.kinds)")
    prompt = getattr(exp.method, "CAPTION_PROMPT", "describe the image .")
    texts = generation.generate_texts(exp, params, cfg, [prompt] * n, np.stack([s["image"] for s in samples]))
    hyps = [ptb_tokenize(t) for t in texts]
    refs = [[ptb_tokenize(str(s[f"captions/{k}"])) for k in kinds] for s in samples]
    out = {f"bleu{k + 1}": v for k, v in enumerate(bleu(hyps, refs))}
    out["cider"] = cider_d(hyps, refs)[0]
    return out
