"""Pretrained initialization from config.init: params of a fresh state replaced by converted ones.

config.init = dict(image='hf:/ckpt/clip', text='', model='')
  image / text: the two-tower image (img_tower, img_proj) or text (txt_tower, txt_proj) subtrees
  model:        the whole param tree
  any other K:  params[K] := the whole converted checkpoint (e.g. llm='hf:/ckpt/qwen2')
Sources: hf:/folder, open_clip:/file.pt, big_vision:/file.npz, vljax:/folder (vljax convert output).
"""

from __future__ import annotations

from typing import Any

import jax

from vljax.convert import common

TOWERS = {"image": ("img_tower", "img_proj"), "text": ("txt_tower", "txt_proj")}


def parse_source(spec: str, field: str) -> tuple[str, str]:
    """'hf:/path' -> ('hf', '/path'); ValueError naming config.init.<field> otherwise."""
    from vljax.convert.cli import SOURCES

    fmt, sep, path = spec.partition(":")
    if not sep or fmt not in SOURCES or not path:
        raise ValueError(f"config.init.{field}={spec!r}: expected '<format>:<path>' with format in {SOURCES}")
    return fmt, path


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
