"""Fine-grained retrieval: rank an image's true caption above captions that differ in one attribute of one object.

For scene i of the split, the true caption lists its objects ("a large red circle and a small blue
star"); each hard negative changes one attribute (color, shape or size) of one described object group
to another enabled value, realized with the same paraphrase template, so only that word differs and
the caption is false for the image. Metrics, per image over its K = 1 + negatives candidates:
  pair_acc          fraction of (image, negative) pairs with score(true) > score(negative)
  pair_acc_<attr>   the same restricted to negatives that changed <attr>
  r1                fraction of images whose true caption ranks first among the K candidates
Scores come from the method's `score_pairs(model, config, params, images, tokens, direction)` hook
when it has one (e.g. FILIP's late interaction), else the cosine of the global embeddings.
"""

from __future__ import annotations

import numpy as np

from vljax import sharding as shard_lib
from vljax.data import tokenizer as tokenizer_lib
from vljax.data.world.language import realize as rz
from vljax.eval.embed import embed_in_batches, eval_world

ATTRS = ("color", "shape", "size")
# NOTE: a scene's images x candidates are scored in chunks of this many images (all-pairs inside a chunk).
CHUNK_IMAGES = 32


def _enabled(world_cfg) -> dict:
    """World config -> {attr: tuple of enabled canonical ids} for the attributes captions may name."""
    from vljax.data.world import concepts

    mention = set(world_cfg.caption.mention)
    sizes = tuple(i for i, s in enumerate(concepts.SIZES) if s in world_cfg.objects.sizes)
    out = {
        "color": tuple(range(int(world_cfg.objects.colors))),
        "shape": tuple(range(int(world_cfg.objects.shapes))),
        "size": sizes,
    }
    return {a: v for a, v in out.items() if a in mention and len(v) > 1}


def _groups(spec, enabled) -> list:
    """SceneSpec -> [NP] of identical (size, color, shape) descriptions with counts, in first-slot order."""
    order, counts = [], {}
    for slot in np.flatnonzero(spec.valid).tolist():
        key = tuple(int(getattr(spec, a)[slot]) if a in enabled else None for a in ("size", "color", "shape"))
        if key not in counts:
            counts[key] = 0
            order.append(key)
        counts[key] += 1
    return [rz.NP(count=counts[k], size=k[0], color=k[1], shape=k[2]) for k in order]


def _key(np_: rz.NP) -> tuple:
    """NP -> (size, color, shape, count): what its words say."""
    return (np_.size, np_.color, np_.shape, np_.count)


def contrast_captions(spec, enabled, attrs, n_neg: int, rng: np.random.Generator) -> tuple:
    """SceneSpec -> (true caption, [negative captions], [changed attr per negative]); fewer negatives if impossible."""
    nps = _groups(spec, enabled)
    variant = int(rng.integers(rz.num_paraphrases("LIST", "en")))
    truth = rz.realize("LIST", "en", variant, nps=nps)
    truth_keys = sorted(map(_key, nps), key=repr)
    # NOTE: every (group, attr, new value) edit, shuffled, then taken round-robin over attributes so
    # an image's negatives change different attributes whenever it can.
    edits = {a: [] for a in attrs if a in enabled}
    for g, np_ in enumerate(nps):
        for a in edits:
            edits[a].extend((g, a, v) for v in enabled[a] if v != getattr(np_, a))
    for a in edits:
        rng.shuffle(edits[a])
    negs, changed, seen = [], [], {truth}
    order = list(edits)
    rng.shuffle(order)
    while len(negs) < n_neg and any(edits.values()):
        for a in order:
            while edits[a] and len(negs) < n_neg:
                g, _, v = edits[a].pop()
                sw = list(nps)
                sw[g] = nps[g]._replace(**{a: v})
                text = rz.realize("LIST", "en", variant, nps=sw)
                if sorted(map(_key, sw), key=repr) != truth_keys and text not in seen:
                    seen.add(text)
                    negs.append(text)
                    changed.append(a)
                    break
    return truth, negs, changed


def build_split(world, split: str, n: int, n_neg: int, attrs=ATTRS, seed: int = 0) -> dict:
    """-> dict(images uint8 [M, H, W, 3], captions [M][1 + n_neg] (true first), changed [M][n_neg], index [M]).

    Scenes that cannot give n_neg distinct false captions are skipped (M <= n).
    """
    unknown = sorted(set(attrs) - set(ATTRS))
    if unknown:
        raise ValueError(f"finegrained attrs: unknown {unknown}; valid: {ATTRS}")
    enabled = _enabled(world.cfg)
    images, captions, changed, index = [], [], [], []
    for i in range(n):
        spec = world.scene(split, i)
        truth, negs, attr = contrast_captions(spec, enabled, attrs, n_neg, np.random.default_rng([seed, i]))
        if len(negs) < n_neg:
            continue
        images.append(world.render(spec)["image"])
        captions.append([truth] + negs)
        changed.append(attr)
        index.append(i)
    if not images:
        raise ValueError(f"finegrained: no scene of split {split!r} gives {n_neg} negatives; use 2+ objects")
    return dict(images=np.stack(images), captions=captions, changed=changed, index=np.array(index))


def _pad_rows(x: np.ndarray, multiple: int) -> np.ndarray:
    """[N, ...] -> [ceil(N / multiple) * multiple, ...] by repeating the last row."""
    pad = -len(x) % multiple
    return np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]) if pad else x


def candidate_scores(exp, params, images: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """uint8 [M, H, W, 3] x int [M, K, L] candidates -> [M, K] scores of each image with its own candidates."""
    m, k, seq = tokens.shape
    method = exp.method
    if hasattr(method, "score_pairs"):
        div = shard_lib.batch_size_divisor(exp.mesh)
        chunk = max(div, CHUNK_IMAGES // div * div)
        fn = exp.pair_scorer("i2t")
        img_p, tok_p = _pad_rows(images, chunk), _pad_rows(tokens, chunk)
        out = []
        for s in range(0, len(img_p), chunk):
            sc = np.asarray(fn(params, img_p[s : s + chunk], tok_p[s : s + chunk].reshape(chunk * k, seq)), np.float32)
            # NOTE: all-pairs inside the chunk, then keep each image's own K candidates (block diagonal).
            rows = np.arange(chunk)
            out.append(sc.reshape(chunk, chunk, k)[rows, rows])
        return np.concatenate(out)[:m]
    embed_images, embed_texts = exp.encoders
    img = embed_in_batches(embed_images, params, images, exp.config.eval_batch_size, exp.mesh)
    txt = embed_in_batches(embed_texts, params, tokens.reshape(m * k, seq), exp.config.eval_batch_size, exp.mesh)
    img = img / np.linalg.norm(img, axis=-1, keepdims=True)
    txt = txt / np.linalg.norm(txt, axis=-1, keepdims=True)
    return np.einsum("me,mke->mk", img, txt.reshape(m, k, -1))


def metrics_from_scores(scores: np.ndarray, changed) -> dict[str, float]:
    """[M, K] scores (true caption in column 0) x [M][K-1] changed attrs -> pair_acc, pair_acc_<attr>, r1."""
    wins = scores[:, :1] > scores[:, 1:]
    out = {"pair_acc": float(wins.mean()), "r1": float(wins.all(axis=1).mean())}
    attr = np.array(changed, dtype=object)
    for a in ATTRS:
        sel = attr == a
        if sel.any():
            out[f"pair_acc_{a}"] = float(wins[sel].mean())
    out["chance_r1"] = 1.0 / scores.shape[1]
    return out


def evaluate(exp, params, cfg) -> dict[str, float]:
    """cfg: split, n, negatives, attrs, world_overrides -> pair_acc, pair_acc_<attr>, r1, n_images."""
    world = eval_world(exp, cfg)
    split = build_split(
        world,
        cfg.split,
        int(cfg.n),
        int(cfg.get("negatives", 3)),
        tuple(cfg.get("attrs", ATTRS)),
        seed=int(cfg.get("seed", 0)),
    )
    flat = [c for caps in split["captions"] for c in caps]
    tokens = tokenizer_lib.tokenize(exp.tokenizer, flat, exp.config.data.max_len)
    tokens = tokens.reshape(len(split["captions"]), -1, tokens.shape[-1])
    scores = candidate_scores(exp, params, split["images"], tokens)
    out = metrics_from_scores(scores, split["changed"])
    out["n_images"] = float(len(scores))
    return out
