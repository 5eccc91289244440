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

import json
import logging
from pathlib import Path
from typing import Any

import jax
import numpy as np

from vljax.convert import common

TOWERS = {"image": ("img_tower", "img_proj"), "text": ("txt_tower", "txt_proj")}
CHECKPOINT = "checkpoint:"
log = logging.getLogger(__name__)


def checkpoint_pixel_norm(fmt: str, path: str) -> str | None:
    """Converted source -> the `config.model.pixel_norm` its image tower was trained with, or None if unknown.

    hf: from the folder's preprocessor_config.json (CLIP's mean / std -> 'clip', 0.5 / 0.5 -> 'none').
    open_clip: 'clip' (OpenAI's towers and open_clip's own use CLIP's mean / std). big_vision: 'none'
    (SigLIP's [-1, 1] pixels). vljax folders and training runs carry no preprocessing record: None.
    """
    from vljax.models.two_tower import CLIP_PIXEL_MEAN, CLIP_PIXEL_STD

    if fmt == "open_clip":
        return "clip"
    if fmt == "big_vision":
        return "none"
    if fmt != "hf":
        return None
    file = Path(path) / "preprocessor_config.json"
    try:
        pre = json.loads(file.read_text())
        mean, std = (np.asarray(pre[k], np.float64) for k in ("image_mean", "image_std"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for kind, (m, s) in {"clip": (CLIP_PIXEL_MEAN, CLIP_PIXEL_STD), "none": ((0.5,) * 3, (0.5,) * 3)}.items():
        if mean.shape == std.shape == (3,) and np.allclose(mean, m, atol=1e-3) and np.allclose(std, s, atol=1e-3):
            return kind
    return None


def check_pixel_norm(config, field: str, fmt: str, path: str) -> None:
    """Logs a warning when an image tower is loaded under a pixel_norm other than its checkpoint's.

    A mismatch trains and evaluates without error but feeds the tower pixels on another scale, which costs
    accuracy silently (docs/pretrained.md, Images).
    """
    model = config.get("model") or {}
    if field not in ("image", "model") or "pixel_norm" not in model:
        return
    expected = checkpoint_pixel_norm(fmt, path)
    if expected is not None and expected != model.pixel_norm:
        log.warning("config.init.%s=%s:%s: this checkpoint's image tower expects config.model.pixel_norm=%r, the "
                    "config has %r; set --config.model.pixel_norm=%s unless the change is meant",
                    field, fmt, path, expected, model.pixel_norm, expected)


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
        check_pixel_norm(config, field, fmt, path)
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
