"""Sharded embedding of eval images / texts: host arrays -> global batches -> jitted encoder -> host [N, E]."""
from __future__ import annotations

import contextlib
import contextvars
import json
from collections.abc import Callable, Hashable, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils

from vljax import sharding as shard_lib


def embed_in_batches(fn: Callable, params, arrays: np.ndarray, batch_size: int, mesh) -> np.ndarray:
    """[N, ...] host array (same on every host) -> [N, E] host embeddings, computed sharded in batches.

    NOTE: the last batch is padded up to the batch size so one compiled shape serves all.
    """
    n = len(arrays)
    div = shard_lib.batch_size_divisor(mesh)
    batch_size = max(div, batch_size // div * div)
    pc, pi = jax.process_count(), jax.process_index()
    jfn = jax.jit(fn)
    outs = []
    for start in range(0, n, batch_size):
        chunk = arrays[start:start + batch_size]
        pad = batch_size - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
        local = chunk.reshape(pc, batch_size // pc, *chunk.shape[1:])[pi]
        g = shard_lib.host_to_global({"x": local}, mesh)["x"]
        out = jfn(params, g)
        out = multihost_utils.process_allgather(out, tiled=True) if pc > 1 else np.asarray(out)
        outs.append(np.asarray(out, np.float32)[: batch_size - pad])
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


# NOTE: one dict per `run_evals` round (same params throughout), so evaluators that read the same scenes (zeroshot
# and zeroshot_attr) render and embed them once; None outside a round, where nothing is kept.
_ROUND_MEMO: contextvars.ContextVar[dict | None] = contextvars.ContextVar("vljax_eval_round_memo", default=None)


@contextlib.contextmanager
def eval_round():
    """Scope in which `round_memo` keeps results: one round of evaluators on fixed params."""
    token = _ROUND_MEMO.set({})
    try:
        yield
    finally:
        _ROUND_MEMO.reset(token)


def round_memo(key: Hashable, compute: Callable):
    """compute() once per `eval_round` for equal keys; outside a round, compute() every call."""
    memo = _ROUND_MEMO.get()
    if memo is None:
        return compute()
    if key not in memo:
        memo[key] = compute()
    return memo[key]


def overrides_key(cfg) -> str:
    """An evaluator config's `world_overrides` as a canonical string (a memo key part)."""
    overrides = cfg.get("world_overrides")
    overrides = overrides.to_dict() if hasattr(overrides, "to_dict") else dict(overrides or {})
    return json.dumps(overrides, sort_keys=True, default=str)


def world_samples(world, split: str, n: int, fields: Sequence[str]) -> list[dict]:
    """The first n samples of a world split (eval splits are fixed, unshuffled)."""
    size = world.split_size(split)
    if n > size:
        raise ValueError(f"eval asks for {n} samples but split {split!r} has {size}")
    return [world.sample(split, i, fields=tuple(fields)) for i in range(n)]


def eval_world(exp, cfg):
    """exp.world, or a World with the evaluator's `world_overrides` (nested dict) applied to the training world."""
    overrides = cfg.get("world_overrides")
    if not overrides:
        return exp.world
    from vljax.data.world import World

    flat = {}

    def walk(d, prefix):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                flat[f"{prefix}{k}"] = v

    walk(overrides.to_dict() if hasattr(overrides, "to_dict") else dict(overrides), "")
    wcfg = exp.config.data.world.copy_and_resolve_references()
    wcfg.update_from_flattened_dict(flat)
    return World(wcfg)
