"""Zero-shot classification with prompt-template ensembles (CLIP protocol) on world label tasks."""

from __future__ import annotations

import numpy as np

from vljax.data import tokenizer as tokenizer_lib
from vljax.eval.embed import embed_in_batches, eval_world, overrides_key, round_memo, world_samples


def class_embeddings(exp, params, embed_texts, classes, templates) -> np.ndarray:
    """C classes x T templates -> [C, E]: mean of normalized prompt embeddings, renormalized.

    A class is a name, or a sequence of P phrases for it (`World.attribute_phrases`); its embedding is then the mean
    over all P x T prompts.
    """
    phrases = [(c,) if isinstance(c, str) else tuple(c) for c in classes]
    texts = [t.format(p) for ps in phrases for p in ps for t in templates]
    tokens = tokenizer_lib.tokenize(exp.tokenizer, texts, exp.config.data.max_len)
    emb = embed_in_batches(embed_texts, params, tokens, exp.config.eval_batch_size, exp.mesh)
    emb = emb / np.linalg.norm(emb, axis=-1, keepdims=True)
    ends = np.cumsum([len(ps) * len(templates) for ps in phrases])[:-1]
    emb = np.stack([part.mean(0) for part in np.split(emb, ends)])
    return emb / np.linalg.norm(emb, axis=-1, keepdims=True)


def predict(exp, params, cfg) -> dict[str, tuple[np.ndarray, np.ndarray, tuple[str, ...]]]:
    """cfg as `evaluate` -> {task: (labels int [N], predicted classes int [N], class names)}."""
    world = eval_world(exp, cfg)
    embed_images, embed_texts = exp.encoders
    tasks = tuple(cfg.tasks)
    fields = ("image",) + tuple(f"labels/main_{t}" for t in tasks)

    def scenes():
        samples = world_samples(world, cfg.split, int(cfg.n), fields)
        images = np.stack([s["image"] for s in samples])
        img = embed_in_batches(embed_images, params, images, exp.config.eval_batch_size, exp.mesh)
        return samples, img / np.linalg.norm(img, axis=-1, keepdims=True)

    # NOTE: zeroshot and zeroshot_attr read the same scenes and differ only in their prompts
    samples, img = round_memo(("zeroshot", cfg.split, int(cfg.n), fields, overrides_key(cfg)), scenes)
    out = {}
    marginalize = tuple(cfg.get("marginalize", ()) or ())
    for task in tasks:
        classes = tuple(world.class_names(task, "en"))
        templates = world.templates("en", cfg.get("templates", "ensemble_image"))
        # NOTE: with `marginalize`, each class prompt also names every value of the other listed attributes
        # ("a photo of a medium red {}"), averaged: captions always name them, bare class prompts do not.
        others = tuple(a for a in marginalize if a != task)
        prompts = world.attribute_phrases(task, others, "en") if others else classes
        cls = class_embeddings(exp, params, embed_texts, prompts, templates)
        labels = np.array([s[f"labels/main_{task}"] for s in samples])
        out[task] = (labels, (img @ cls.T).argmax(-1), classes)
    return out


def evaluate(exp, params, cfg) -> dict[str, float]:
    """cfg: split, n, tasks (world label tasks, e.g. 'shape', 'color'), templates kind, world overrides, and optional
    marginalize (attributes, e.g. ('size', 'color', 'shape'): each task's prompts average over the others' values)."""
    out = {
        f"{task}_acc": float((pred == labels).mean()) for task, (labels, pred, _) in predict(exp, params, cfg).items()
    }
    if out:
        out["mean_acc"] = float(np.mean(list(out.values())))
    return out
