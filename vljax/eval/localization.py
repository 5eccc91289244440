"""Word -> patch localization of a two-tower model's projected tokens (FILIP's word-patch alignment as a metric).

For each test scene, every caption word that names a color or a shape (world spans of type 3 / 4) picks the
image patch whose projected token has the highest dot product with the word's projected token. It is a hit
when that patch touches a visible pixel of an object with the named color (or shape) in the instance map.
Per word, chance is the share of patches touching such an object (a uniformly random patch):

    acc, acc_color, acc_shape   hit rates over words (and per word type)
    chance                      mean chance over the same words
    n_words                     words scored
    background                  share of words whose best patch touches no object at all (bg_chance: the
                                same for a uniformly random patch)
    top_patch_share             share of words whose best patch is the single most common patch index
                                (a global "register"-like patch shows up as a share far above 1 / patches)

Needs the word-level world tokenizer (token j + 1 is word j after BOS: spans map to tokens) and patch
tokens on the full grid (no token merging). Tokens are the model's own (`TwoTower.encode_image/text` with
`return_tokens=True`), so CLIP, SigLIP and FILIP are scored the same way.
"""

from __future__ import annotations

import numpy as np

from vljax.data import tokenizer as tokenizer_lib
from vljax.data.world.language.tokenize import word_spans
from vljax.eval.embed import embed_in_batches, eval_world, world_samples
from vljax.methods.clip import preprocess_images
from vljax.models.two_tower import TwoTower

SPAN_TYPES = {3: "color", 4: "shape"}


def word_targets(text: str, spans: np.ndarray, max_len: int) -> list[tuple[int, str, int]]:
    """Caption + spans [S, 5] -> [(token index, 'color'|'shape', concept id)] for words inside max_len."""
    out = []
    valid = spans[spans[:, 0] >= 0]
    for j, (start, _) in enumerate(word_spans(text)):
        token = j + 1  # NOTE: position 0 is BOS.
        if token >= max_len - 1:  # NOTE: the last kept position holds EOS.
            break
        hit = valid[(valid[:, 0] <= start) & (start < valid[:, 1])]
        if len(hit) and int(hit[0, 2]) in SPAN_TYPES:
            out.append((token, SPAN_TYPES[int(hit[0, 2])], int(hit[0, 4])))
    return out


def patch_touch(instance_map: np.ndarray, objects: np.ndarray, grid: int) -> np.ndarray:
    """int [H, W] slot map x bool [O] objects of interest -> bool [grid * grid] patches touching any of them."""
    h, w = instance_map.shape
    ph, pw = h // grid, w // grid
    inside = np.isin(instance_map, np.flatnonzero(objects))
    return inside[: ph * grid, : pw * grid].reshape(grid, ph, grid, pw).any(axis=(1, 3)).reshape(-1)


def evaluate(exp, params, cfg) -> dict[str, float]:
    """cfg: split, n, world_overrides -> acc, acc_color, acc_shape, chance, n_words."""
    world = eval_world(exp, cfg)
    kind = str(world.cfg.caption.default)
    fields = ("image", "caption", f"spans/{kind}", "instance_map", "objects/color", "objects/shape", "objects/valid")
    samples = world_samples(world, cfg.split, int(cfg.n), fields)
    max_len = int(exp.config.data.max_len)
    texts = [str(s["caption"]) for s in samples]
    if len(word_spans(texts[0])) != len(exp.tokenizer.encode(texts[0])):
        raise ValueError("localization eval needs the word-level world tokenizer (config.data.tokenizer)")
    model = exp.model
    patches = embed_in_batches(
        lambda p, x: model.apply({"params": p}, preprocess_images(x), return_tokens=True,
                                 method=TwoTower.encode_image)[1],
        params, np.stack([s["image"] for s in samples]), exp.config.eval_batch_size, exp.mesh)
    words = embed_in_batches(
        lambda p, x: model.apply({"params": p}, x, return_tokens=True, method=TwoTower.encode_text)[1],
        params, tokenizer_lib.tokenize(exp.tokenizer, texts, max_len), exp.config.eval_batch_size, exp.mesh)
    return score_words(samples, texts, patches, words, kind, max_len)


def score_words(samples, texts, patches: np.ndarray, words: np.ndarray, kind: str, max_len: int) -> dict[str, float]:
    """World samples, captions, patch tokens [M, G*G, E], word tokens [M, L, E] -> the metrics of `evaluate`."""
    grid = int(round(np.sqrt(patches.shape[1])))
    if grid * grid != patches.shape[1]:
        raise ValueError(f"localization eval needs the full patch grid; got {patches.shape[1]} tokens "
                         "(token merging on?)")
    hits = {"color": [], "shape": []}
    chance, background, bg_chance, best_patches = [], [], [], []
    for b, s in enumerate(samples):
        any_object = patch_touch(np.asarray(s["instance_map"]), np.asarray(s["objects/valid"]), grid)
        for token, what, concept in word_targets(texts[b], np.asarray(s[f"spans/{kind}"]), max_len):
            objects = np.asarray(s["objects/valid"]) & (np.asarray(s[f"objects/{what}"]) == concept)
            touch = patch_touch(np.asarray(s["instance_map"]), objects, grid)
            if not touch.any():  # NOTE: a fully occluded object cannot be localized; not scored.
                continue
            best = int(np.argmax(patches[b] @ words[b, token]))
            hits[what].append(bool(touch[best]))
            chance.append(float(touch.mean()))
            background.append(not any_object[best])
            bg_chance.append(float(1.0 - any_object.mean()))
            best_patches.append(best)
    every = hits["color"] + hits["shape"]
    if not every:
        raise ValueError("localization eval: no color or shape word found in the captions")
    out = {"acc": float(np.mean(every)), "chance": float(np.mean(chance)), "n_words": float(len(every)),
           "background": float(np.mean(background)), "bg_chance": float(np.mean(bg_chance)),
           "top_patch_share": float(np.bincount(best_patches).max() / len(best_patches))}
    out.update({f"acc_{k}": float(np.mean(v)) for k, v in hits.items() if v})
    return out
