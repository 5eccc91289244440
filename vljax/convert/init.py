"""Pretrained initialization from config.init: params of a fresh state replaced by converted ones.

config.init = dict(image='hf:/ckpt/clip', text='', model='')
  image / text: the two-tower image (img_tower, img_proj) or text (txt_tower, txt_proj) subtrees
  model:        the whole param tree
  any other K:  params[K] := the whole converted checkpoint (e.g. llm='hf:/ckpt/qwen2')
Sources: hf:/folder, open_clip:/file.pt, big_vision:/file.npz, vljax:/folder (vljax convert output),
and checkpoint:WORKDIR[@STEP], the params of a vljax training run (for `model`, `image` / `text` from a two-tower run
with the same dims, or any subtree K) (latest or given step; optimizer state not read): stage chaining, e.g. LVLM
align -> full, or a locked text tower taken from another run.
"""

from __future__ import annotations

from typing import Any

import jax

from vljax.convert import common

TOWERS = {"image": ("img_tower", "img_proj"), "text": ("txt_tower", "txt_proj")}
CHECKPOINT = "checkpoint:"


def parse_source(spec: str, field: str) -> tuple[str, str]:
    """'hf:/path' -> ('hf', '/path'); ValueError naming config.init.<field> otherwise."""
    from vljax.convert.cli import SOURCES

    fmt, sep, path = spec.partition(":")
    if not sep or fmt not in SOURCES or not path:
        raise ValueError(f"config.init.{field}={spec!r}: expected '<format>:<path>' with format in {SOURCES} "
                         f"or 'checkpoint:<workdir>[@step]' (a vljax training run)")
    return fmt, path


def parse_checkpoint_source(spec: str, field: str) -> tuple[str, int | None]:
    """'checkpoint:/runs/a@300' -> ('/runs/a', 300); no '@STEP' -> (workdir, None) = the latest step."""
    path = spec[len(CHECKPOINT) :]
    head, sep, tail = path.rpartition("@")
    if sep and tail.isdigit():
        path, step = head, int(tail)
    else:
        step = None
    if not path:
        raise ValueError(f"config.init.{field}={spec!r}: expected 'checkpoint:<workdir>[@step]'")
    return path, step


def load_training_checkpoint(spec: str, params: dict, field: str = "model") -> dict:
    """'checkpoint:WORKDIR[@STEP]' + placed params -> the run's saved params, placed like `params`."""
    from pathlib import Path

    from vljax.train.checkpoint import Checkpointer

    workdir, step = parse_checkpoint_source(spec, field)
    if not (Path(workdir) / "checkpoints").is_dir():
        # NOTE: checked first because the orbax manager would create an empty directory.
        raise FileNotFoundError(f"config.init.{field}={spec!r}: no {workdir}/checkpoints (not a vljax training run)")
    ckpt = Checkpointer(workdir, async_save=False)
    try:
        loaded, _ = ckpt.restore_params(params, step, context=f"config.init.{field}={spec!r}: ")
    finally:
        ckpt.close()
    return loaded


def _mesh_of(params: Any):
    leaf = jax.tree.leaves(params)[0]
    if not isinstance(leaf.sharding, jax.sharding.NamedSharding):
        raise ValueError("load_pretrained needs params placed with NamedShardings (create the state on a mesh)")
    return leaf.sharding.mesh


def _graft(target: dict, loaded: dict, field: str) -> dict:
    """Places `loaded` leaves into `target` (same paths) with target's sharding and dtype; checks shapes."""
    flat_t, flat_l = common.flatten(target), common.flatten(loaded)
    missing = sorted(set(flat_l) - set(flat_t))
    left = sorted(set(flat_t) - set(flat_l))
    if missing or left:
        raise common.ConversionError(
            f"config.init.{field}: checkpoint params {missing[:6]} are not in the model "
            f"and model params {left[:6]} are not in the checkpoint"
        )
    out = {}
    for path, old in flat_t.items():
        new = flat_l[path]
        if new.shape != old.shape:
            raise common.ConversionError(
                f"config.init.{field}: {path} is {list(new.shape)} in the checkpoint but "
                f"{list(old.shape)} in the model (config dims differ?)"
            )
        out[path] = jax.device_put(new.astype(old.dtype), old.sharding)
    return common.unflatten(out)


def load_pretrained(config, params: dict) -> dict:
    """config.init + sharded params -> params with the named parts loaded from checkpoints."""
    from vljax import sharding as shard_lib
    from vljax.convert.cli import load

    spec = config.get("init") or {}
    if not any(spec.values()):
        return params
    mesh = _mesh_of(params)
    rules = shard_lib.rules_from_config(config.get("sharding", {}).get("rules"))
    params = dict(params)
    for field, source in spec.items():
        if not source:
            continue
        if source.startswith(CHECKPOINT):
            if field == "model":
                params = load_training_checkpoint(source, params, field)
            elif field in TOWERS and field not in params and any(k in params for k in TOWERS[field]):
                # NOTE: one tower of another two-tower run with the same dims (LiT-style: load, then freeze
                # it with config.optim.freeze); the run's whole tree is restored, then the tower taken.
                keys = [k for k in TOWERS[field] if k in params]
                loaded = load_training_checkpoint(source, params, field)
                params.update({k: loaded[k] for k in keys})
            elif field in params:
                # NOTE: a whole run's params into one subtree, e.g. PRIOR's frozen text-only reference
                # LM: config.init.reference = 'checkpoint:<text_lm workdir>'.
                params[field] = load_training_checkpoint(source, params[field], field)
            else:
                raise ValueError(f"config.init.{field}={source!r}: the model has no param subtree {field!r}; "
                                 f"top-level keys: {sorted(params)}")
            continue
        fmt, path = parse_source(source, field)
        if field == "model":
            params = _graft(params, load(fmt, path, mesh, rules=rules).params, field)
        elif field in TOWERS:
            keys = TOWERS[field]
            loaded = load(fmt, path, mesh, rules=rules, prefixes=keys).params
            params.update(_graft({k: params[k] for k in keys if k in params}, loaded, field))
        else:
            if field not in params:
                raise common.ConversionError(
                    f"config.init.{field}: the model has no param subtree {field!r}; top-level keys: {sorted(params)}"
                )
            params[field] = _graft(params[field], load(fmt, path, mesh, rules=rules).params, field)
    return params
