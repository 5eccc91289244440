"""Image <-> text retrieval: R@1/5/10 in both directions on a world eval split.

NOTE: a discrete world repeats descriptions (two scenes can both be "a red circle"); a
retrieved item counts as correct when its caption string equals the query's, the
standard treatment of duplicate captions (as in COCO's 5 captions per image).
"""
from __future__ import annotations

import numpy as np

from vljax.data import tokenizer as tokenizer_lib
from vljax.eval.embed import embed_in_batches, world_samples

KS = (1, 5, 10)
# NOTE: methods with a `score_pairs` hook (e.g. FILIP's late interaction) are scored image-chunk
# by image-chunk against all texts, so the [chunk, N, Nv, Nt] tile stays small.
CHUNK_IMAGES = 32


def recall_at_k(sim: np.ndarray, same: np.ndarray, ks=KS) -> dict[int, float]:
    """sim [Nq, Nc], same [Nq, Nc] bool (correct pairs) -> {k: fraction of queries with a hit in top k}."""
    order = np.argsort(-sim, axis=1, kind="stable")
    hits = np.take_along_axis(same, order, axis=1)
    return {k: float(hits[:, :k].any(1).mean()) for k in ks}


def pairwise_scores(exp, params, images: np.ndarray, tokens: np.ndarray, direction: str) -> np.ndarray:
    """uint8 [N, H, W, 3] x int [M, L] -> [N, M] scores from the method's own `score_pairs` hook."""
    fn = exp.pair_scorer(direction)
    out = []
    for s in range(0, len(images), CHUNK_IMAGES):
        chunk = images[s : s + CHUNK_IMAGES]
        pad = CHUNK_IMAGES - len(chunk)
        if pad:  # one compiled shape for every chunk
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
        out.append(np.asarray(fn(params, chunk, tokens), np.float32)[: CHUNK_IMAGES - pad])
    return np.concatenate(out)


def evaluate(exp, params, cfg) -> dict[str, float]:
    """cfg: split, n, caption (sample key) -> i2t_r{1,5,10}, t2i_r{1,5,10} (method's score_pairs when present)."""
    embed_images, embed_texts = exp.encoders
    key = cfg.get("caption", "caption")
    samples = world_samples(exp.world, cfg.split, int(cfg.n), ("image", key))
    images = np.stack([s["image"] for s in samples])
    texts = [s[key] for s in samples]
    tokens = tokenizer_lib.tokenize(exp.tokenizer, texts, exp.config.data.max_len)
    if hasattr(exp.method, "score_pairs"):
        sim_i2t = pairwise_scores(exp, params, images, tokens, "i2t")
        sim_t2i = pairwise_scores(exp, params, images, tokens, "t2i")
    else:
        img = embed_in_batches(embed_images, params, images, exp.config.eval_batch_size, exp.mesh)
        txt = embed_in_batches(embed_texts, params, tokens, exp.config.eval_batch_size, exp.mesh)
        img = img / np.linalg.norm(img, axis=-1, keepdims=True)
        txt = txt / np.linalg.norm(txt, axis=-1, keepdims=True)
        sim_i2t = sim_t2i = img @ txt.T
    arr = np.array(texts, dtype=object)
    same = arr[:, None] == arr[None, :]
    out = {}
    for k, v in recall_at_k(sim_i2t, same).items():
        out[f"i2t_r{k}"] = v
    for k, v in recall_at_k(sim_t2i.T, same.T).items():
        out[f"t2i_r{k}"] = v
    out["unique_caption_frac"] = float(len(set(texts)) / len(texts))
    return out
