"""Retrieval metrics: recall@k with duplicate captions, and chunked scoring through a method's score_pairs hook."""
import types

import numpy as np

from vljax.eval import retrieval


def test_recall_at_k_counts_duplicate_captions_as_hits():
    sim = np.array([[0.9, 0.1, 0.5], [0.8, 0.2, 0.1], [0.1, 0.3, 0.2]])
    texts = np.array(["a", "b", "a"], dtype=object)
    same = texts[:, None] == texts[None, :]
    r = retrieval.recall_at_k(sim, same, ks=(1, 2))
    # row 0 -> col 0 ("a") hit; row 1 -> col 0 ("a") miss at 1, col 1 ("b") at 2; row 2 -> col 1 miss, col 2 hit at 2
    assert r[1] == 1 / 3 and r[2] == 1.0


def test_pairwise_scores_chunks_match_direct():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(37, 4, 4, 3), dtype=np.uint8)  # not a multiple of the chunk
    tokens = rng.integers(1, 9, size=(11, 5)).astype(np.int32)
    w = rng.normal(size=(48, 5)).astype(np.float32)

    def score_pairs(model, config, params, im, tk, direction="i2t"):
        feats = im.reshape(im.shape[0], -1).astype(np.float32) @ params
        return feats @ tk.astype(np.float32).T * (1.0 if direction == "i2t" else -1.0)

    # stands in for Experiment.pair_scorer (the jitted score_pairs hook)
    scorer = lambda direction: lambda p, im, tk: score_pairs(None, None, p, im, tk, direction=direction)
    exp = types.SimpleNamespace(pair_scorer=scorer)
    got = retrieval.pairwise_scores(exp, w, images, tokens, "i2t")
    want = (images.reshape(37, -1).astype(np.float32) @ w) @ tokens.astype(np.float32).T
    # f32 sums of ~50 products of size ~1e3: compare at 1e-5 of the largest score (cancellation otherwise).
    tol = 1e-5 * float(np.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)
    np.testing.assert_allclose(retrieval.pairwise_scores(exp, w, images, tokens, "t2i"), -want, rtol=0, atol=tol)
