"""Zero-shot classification with prompt-template ensembles (CLIP protocol) on world label tasks."""

from __future__ import annotations

import numpy as np

from vljax.data import tokenizer as tokenizer_lib
from vljax.eval.embed import embed_in_batches, eval_world, world_samples


def class_embeddings(exp, params, embed_texts, classes, templates) -> np.ndarray:
    """C class names x T templates -> [C, E]: mean of normalized template embeddings, renormalized."""
    texts = [t.format(c) for c in classes for t in templates]
    tokens = tokenizer_lib.tokenize(exp.tokenizer, texts, exp.config.data.max_len)
    emb = embed_in_batches(embed_texts, params, tokens, exp.config.eval_batch_size, exp.mesh)
    emb = emb / np.linalg.norm(emb, axis=-1, keepdims=True)
    emb = emb.reshape(len(classes), len(templates), -1).mean(1)
    return emb / np.linalg.norm(emb, axis=-1, keepdims=True)


def predict(exp, params, cfg) -> dict[str, tuple[np.ndarray, np.ndarray, tuple[str, ...]]]:
    """cfg as `evaluate` -> {task: (labels int [N], predicted classes int [N], class names)}."""
    world = eval_world(exp, cfg)
    embed_images, embed_texts = exp.encoders
    tasks = tuple(cfg.tasks)
    fields = ("image",) + tuple(f"labels/main_{t}" for t in tasks)
    samples = world_samples(world, cfg.split, int(cfg.n), fields)
    images = np.stack([s["image"] for s in samples])
    img = embed_in_batches(embed_images, params, images, exp.config.eval_batch_size, exp.mesh)
    img = img / np.linalg.norm(img, axis=-1, keepdims=True)
    out = {}
    for task in tasks:
        classes = tuple(world.class_names(task, "en"))
        templates = world.templates("en", cfg.get("templates", "ensemble_image"))
        cls = class_embeddings(exp, params, embed_texts, classes, templates)
        labels = np.array([s[f"labels/main_{task}"] for s in samples])
        out[task] = (labels, (img @ cls.T).argmax(-1), classes)
    return out


def evaluate(exp, params, cfg) -> dict[str, float]:
    """cfg: split, n, tasks (world label tasks, e.g. 'shape', 'color'), templates kind, world overrides."""
    out = {
        f"{task}_acc": float((pred == labels).mean()) for task, (labels, pred, _) in predict(exp, params, cfg).items()
    }
    if out:
        out["mean_acc"] = float(np.mean(list(out.values())))
    return out
