"""Optimizer from config: AdamW, warmup + cosine, weight-decay mask, clipping, freezing by path regex.

Frozen params (config.optim.freeze: regexes over 'a/b/c' param paths) are routed to
`optax.set_to_zero()` through `optax.multi_transform`, so they get no optimizer state.
"""
from __future__ import annotations

import re
from typing import Any, Callable

import jax
import optax


def param_path(path) -> str:
    """jax key path -> 'a/b/c'."""
    parts = []
    for k in path:
        key = getattr(k, "key", None)
        if key is None:
            key = getattr(k, "name", None)
        if key is None:
            key = getattr(k, "idx", k)
        parts.append(str(key))
    return "/".join(parts)


def path_labels(params: Any, fn: Callable[[str, Any], Any]) -> Any:
    """Maps fn('a/b/c', leaf) over params, returning a tree of labels."""
    return jax.tree_util.tree_map_with_path(lambda p, x: fn(param_path(p), x), params)


def make_schedule(cfg, train_steps: int | None = None) -> optax.Schedule:
    """config.optim -> learning-rate schedule (linear warmup, then cosine / constant / linear decay).

    The schedule spans config.optim.total_steps, or train_steps (config.train.steps) where that is 0: a run can
    stop early on a longer schedule without the two settings moving together.
    """
    steps = int(cfg.get("total_steps", 0) or 0) or int(train_steps or 0)
    if steps <= 0:
        raise ValueError("config.optim.total_steps is 0 (= config.train.steps) and no train.steps was given")
    warmup = int(cfg.get("warmup_steps", 0))
    lr = float(cfg.lr)
    kind = cfg.get("schedule", "cosine")
    end = lr * float(cfg.get("end_lr_factor", 0.0))
    if kind == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup, 1) if warmup else 0, max(steps, warmup + 1), end)
    if kind == "constant":
        return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup]) \
            if warmup else optax.constant_schedule(lr)
    if kind == "linear":
        return optax.join_schedules(
            [optax.linear_schedule(0.0, lr, warmup), optax.linear_schedule(lr, end, max(steps - warmup, 1))], [warmup])
    raise ValueError(f"config.optim.schedule: unknown schedule {kind!r} (cosine, constant, linear)")


def decay_mask(params: Any) -> Any:
    """True for matrices (kernels, embeddings); no decay on biases, norms and scalars."""
    return jax.tree.map(lambda x: x.ndim >= 2, params)


def make_optimizer(cfg, params: Any, train_steps: int | None = None
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """config.optim + params (shapes only) -> (optax transform, lr schedule); train_steps: see make_schedule."""
    schedule = make_schedule(cfg, train_steps)
    name = cfg.get("name", "adamw")
    if name == "adamw":
        inner = optax.adamw(schedule, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999), eps=cfg.get("eps", 1e-8),
                            weight_decay=cfg.get("weight_decay", 0.0), mask=decay_mask)
    elif name == "sgd":
        inner = optax.sgd(schedule, momentum=cfg.get("momentum", 0.9))
    else:
        raise ValueError(f"config.optim.name: unknown optimizer {name!r} (adamw, sgd)")
    parts = []
    if cfg.get("grad_clip_norm", 0.0):
        parts.append(optax.clip_by_global_norm(float(cfg.grad_clip_norm)))
    parts.append(inner)
    tx = optax.chain(*parts)
    freeze = tuple(cfg.get("freeze", ()) or ())
    if freeze:
        # NOTE: a leading '?' marks a pattern optional (a subtree that exists in some settings only,
        # e.g. PRIOR's online reference LM); the others must each match, so a typo is an error.
        patterns = [re.compile(f.removeprefix("?")) for f in freeze]
        labels = path_labels(params, lambda p, _: "frozen" if any(r.search(p) for r in patterns) else "train")
        paths = jax.tree.leaves(path_labels(params, lambda p, _: p))
        unmatched = [f for f, r in zip(freeze, patterns) if not f.startswith("?") and not any(r.search(p) for p in paths)]
        if unmatched:
            raise ValueError(f"config.optim.freeze: {unmatched} match no parameter path")
        if not any(l == "frozen" for l in jax.tree.leaves(labels)):
            return tx, schedule
        tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
    return tx, schedule
