"""BLEU / CIDEr-D equal the COCO caption toolkit (pycocoevalcap) and hand-computed values."""

import math

import numpy as np
import pytest

from vljax.eval import caption_metrics as cm

VOCAB = "a an the red blue green circle square small large left right of is on near two".split()


def _fixture(seed: int, n_images: int = 20):
    """-> (hyps, refs): random captions from a small vocab, 1-5 refs each, some hyps copied from a reference."""
    rng = np.random.default_rng(seed)

    def sentence():
        return " ".join(rng.choice(VOCAB, size=int(rng.integers(1, 10))))

    refs = [[sentence() for _ in range(int(rng.integers(1, 6)))] for _ in range(n_images)]
    hyps = []
    for i, rs in enumerate(refs):
        if i % 4 == 0:
            hyps.append(rs[int(rng.integers(len(rs)))])  # exact match
        elif i % 4 == 1:
            words = rs[0].split()
            hyps.append(" ".join(words[: max(1, len(words) - 2)] + list(rng.choice(VOCAB, size=2))))  # near match
        else:
            hyps.append(sentence())
    return hyps, refs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_pycocoevalcap(seed):
    bleu_mod = pytest.importorskip("pycocoevalcap.bleu.bleu")
    cider_mod = pytest.importorskip("pycocoevalcap.cider.cider")
    hyps, refs = _fixture(seed)
    gts = {i: list(r) for i, r in enumerate(refs)}
    res = {i: [h] for i, h in enumerate(hyps)}
    want_bleu, _ = bleu_mod.Bleu(4).compute_score(gts, res, verbose=0)
    want_cider, want_per_image = cider_mod.Cider().compute_score(gts, res)
    got_bleu = cm.bleu(hyps, refs)
    got_cider, got_per_image = cm.cider_d(hyps, refs)
    np.testing.assert_allclose(got_bleu, want_bleu, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got_cider, want_cider, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got_per_image, want_per_image, rtol=0, atol=1e-6)
    assert 0 < got_bleu[3] < 1 and got_cider > 0  # NOTE: the fixture is neither trivial nor perfect.


def test_bleu_hand_computed():
    # hyp "the cat sat" vs ref "the cat sat down": p1 = 3/3, p2 = 2/2, p3 = 1/1, no 4-grams (p4 = 1e-15 / 1e-9).
    # c = 3, r = 4 -> BP = exp(1 - 4/3).
    got = cm.bleu(["the cat sat"], [["the cat sat down"]])
    bp = math.exp(1 - 4 / 3)
    assert got[0] == pytest.approx(bp, abs=1e-9)
    assert got[2] == pytest.approx(bp, abs=1e-9)
    assert got[3] == pytest.approx(bp * (1e-15 / 1e-9) ** 0.25, rel=1e-6)
    # clipping: "the the the" vs "the cat": 1 of 3 unigrams counts; closest ref length 2 < 3 -> no penalty.
    assert cm.bleu(["the the the"], [["the cat"]])[0] == pytest.approx(1 / 3, abs=1e-9)
    # closest reference length with ties going to the shorter: hyp of 3 words, refs of 2 and 4 words -> r = 2.
    b = cm.bleu(["a b c"], [["a b", "a b c d"]])
    assert b[0] == pytest.approx(1.0, abs=1e-9)


def test_cider_hand_computed():
    # 2 images, each hyp equal to its single ref, no shared n-grams: unigram and bigram cosines are 1, there are
    # no 3- or 4-grams (cosine 0), no length penalty -> 10 * (1 + 1 + 0 + 0) / 4.
    score, per = cm.cider_d(["red circle", "blue square"], [["red circle"], ["blue square"]])
    assert score == pytest.approx(5.0, abs=1e-9)
    np.testing.assert_allclose(per, [5.0, 5.0])
    # an n-gram in every image's refs has idf = log(2) - log(2) = 0, so "a" adds nothing to either side and
    # the cosines stay 1; a hyp that only shares "a" with its ref scores 0.
    _, per = cm.cider_d(["a red", "a blue"], [["a red"], ["a blue"]])
    np.testing.assert_allclose(per, [5.0, 5.0])
    _, per = cm.cider_d(["a green", "a blue"], [["a red"], ["a blue"]])
    assert per[0] == pytest.approx(0.0, abs=1e-12)
    # Gaussian length penalty: hyp "x y" vs ref "x y w v", every n-gram in one image's refs (weight log 2).
    # unigram cosine 2 / (sqrt(2) * 2), bigram 1 / sqrt(3); bigram counts 1 vs 3 -> delta 2.
    _, per = cm.cider_d(["x y", "q"], [["x y w v"], ["q"]])
    vr1 = math.log(2) * np.ones(4)  # ref unigrams x y w v
    cos1 = 2 * math.log(2) ** 2 / (math.sqrt(2) * math.log(2) * np.linalg.norm(vr1))
    cos2 = math.log(2) ** 2 / (math.log(2) * math.sqrt(3) * math.log(2))  # bigram "x y" of 3 ref bigrams
    penalty = math.exp(-((1 - 3) ** 2) / (2 * 36))
    assert per[0] == pytest.approx(10 * (cos1 + cos2) * penalty / 4, abs=1e-9)


def test_ptb_tokenize_and_errors():
    assert cm.ptb_tokenize("A Dog's ball, on the (red) mat.") == "a dog 's ball on the red mat"
    assert cm.ptb_tokenize("Don't stop -- ok?!") == "do n't stop ok"
    with pytest.raises(ValueError, match="reference"):
        cm.bleu(["a"], [[]])
    with pytest.raises(ValueError, match="hypotheses"):
        cm.cider_d(["a", "b"], [["a"]])
