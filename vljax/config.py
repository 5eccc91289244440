"""Config helpers: load `configs/<name>.py:<preset>`, apply `--config.a.b=value` overrides, validate.

An unknown override key, a value of the wrong type, a value outside its choices (dtype, attention
implementation, ...), a non-positive step or batch count and a `config.init` source that is not
there fail before any compute, with a message that names the key (and the nearest valid keys).
"""
from __future__ import annotations

import ast
import difflib
import importlib.util
import numbers
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable

import ml_collections
import numpy as np


class ConfigError(ValueError):
    """A bad config file, preset, override key or value."""


def load_module(path: str | Path) -> ModuleType:
    """Imports a config file by path (configs are Python, as in big_vision)."""
    path = Path(path)
    if not path.exists():
        known = sorted(str(p) for p in Path("configs").glob("*.py"))
        raise ConfigError(f"config file not found: {path}"
                          + (f"; config files here: {', '.join(known)}" if known else ""))
    if not path.is_file() or path.suffix != ".py":
        raise ConfigError(f"config {path}: expected a Python config file (configs/<name>.py[:preset])")
    name = f"vljax_config_{path.stem}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path} has no get_config(arg)")
    return module


def split_spec(spec: str) -> tuple[str, str | None]:
    """'configs/clip.py:tiny' -> ('configs/clip.py', 'tiny')."""
    path, _, arg = spec.partition(":")
    return path, (arg or None)


def parse_cli(parser, argv: Iterable[str] | None = None):
    """argparse parser + argv (default sys.argv[1:]) -> (parsed args, the --config.a.b=v overrides).

    The overrides are split off before argparse, which cannot express the dotted keys.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    rest, overrides, i = [], [], 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("--config."):
            rest.append(a)
        elif "=" not in a and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            # NOTE: '--config.key value', the other form absl's config flags accept.
            overrides.append(f"{a}={argv[i + 1]}")
            i += 1
        else:
            overrides.append(a)
        i += 1
    return parser.parse_args(rest), overrides


def load_config(spec: str, overrides: Iterable[str] = (), *, check_paths: bool = True) -> ml_collections.ConfigDict:
    """'configs/clip.py:tiny' (+ 'a.b=value' overrides) -> validated ConfigDict.

    check_paths=False skips the existence checks of config.init's sources (sweep bookkeeping re-reads old points).
    """
    path, arg = split_spec(spec)
    module = load_module(path)
    presets = getattr(module, "PRESETS", None)
    if arg is not None and presets is not None and arg not in presets:
        near = difflib.get_close_matches(arg, presets, n=3)
        raise ConfigError(f"unknown preset {arg!r} for {path}; valid: {', '.join(presets)}"
                          + (f" (did you mean {', '.join(near)}?)" if near else ""))
    cfg = module.get_config(arg) if arg is not None else module.get_config()
    cfg.config_spec = spec
    apply_overrides(cfg, overrides)
    validate(cfg, check_paths=check_paths)
    return cfg


def _choices() -> dict[str, tuple[str, ...]]:
    """Dotted key -> its valid string values (imported here: these modules import jax)."""
    from vljax.models.text_encoder import TEXT_POOLS
    from vljax.models.two_tower import PIXEL_NORMS
    from vljax.nn.attention import ATTENTION_IMPLS
    from vljax.nn.dtypes import DTYPES
    from vljax.nn.transformer import REMAT_POLICIES

    return {"model.dtype": tuple(DTYPES), "model.attention_impl": ATTENTION_IMPLS,
            "model.remat": ("none", *REMAT_POLICIES),
            "model.pixel_norm": PIXEL_NORMS, "model.text.pool": TEXT_POOLS}


# NOTE: counts a run cannot do without; eval_every and warmup may be 0.
_AT_LEAST = {"train.steps": 1, "train.batch_size": 1, "train.grad_accum_steps": 1, "train.log_every": 1,
             "checkpoint.every": 1, "checkpoint.keep": 1, "eval_batch_size": 1, "eval_every": 0,
             "optim.warmup_steps": 0, "optim.total_steps": 0}


def _get(cfg: ml_collections.ConfigDict, key: str, default: Any = None) -> Any:
    node = cfg
    for part in key.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            return default
        node = node[part]
    return node


def validate(cfg: ml_collections.ConfigDict, *, check_paths: bool = True) -> None:
    """Checks the values load_config can check without building anything; raises ConfigError naming the key.

    Keys a config does not have are skipped (configs differ between methods).
    """
    for key, valid in _choices().items():
        value = _get(cfg, key)
        if value is not None and value not in valid:
            near = difflib.get_close_matches(str(value), valid, n=2, cutoff=0.5)
            raise ConfigError(f"config.{key}={value!r} is not one of {', '.join(valid)}"
                              + (f" (did you mean {', '.join(near)}?)" if near else ""))
    for key, low in _AT_LEAST.items():
        value = _get(cfg, key)
        if value is not None and not (isinstance(value, int) and value >= low):
            raise ConfigError(f"config.{key}={value!r}: must be an integer >= {low}")
    init = _get(cfg, "init")
    for field, source in (init.items() if isinstance(init, ml_collections.ConfigDict) else ()):
        if source:
            _check_init_source(f"init.{field}", str(source), check_paths)
    _check_patch_size(cfg)
    if _get(cfg, "method") is not None:
        _check_method(cfg)


def _check_patch_size(cfg: ml_collections.ConfigDict) -> None:
    """A ViT tower's patch size (explicit, or its variant's: 'B/16') divides the images it gets (the world's
    resolution); the model would refuse it only when built, in the training process. Checks model.image and the
    LVLMs' model.vision."""
    from vljax.models.vit import vit_config

    size = _get(cfg, "data.world.resolution")
    for key in ("model.image", "model.vision"):
        tower = _get(cfg, key)
        if not isinstance(tower, ml_collections.ConfigDict) or tower.get("arch", "vit") != "vit" or not size:
            continue
        patch = tower.get("patch_size")
        if patch is None and tower.get("variant"):
            try:
                patch = vit_config(str(tower.variant)).get("patch_size")
            except ValueError as e:
                raise ConfigError(f"config.{key}.variant: {e}") from None
        if patch is None:
            continue
        patch = (patch,) if isinstance(patch, int) else tuple(patch)
        if len(patch) not in (1, 2) or not all(isinstance(x, int) and x > 0 for x in patch):
            raise ConfigError(f"config.{key}.patch_size={patch}: expected one or two positive ints")
        ph, pw = patch * 2 if len(patch) == 1 else patch
        if size % ph or size % pw:
            raise ConfigError(f"config.{key}.patch_size={(ph, pw)} does not divide the {size}x{size} images "
                              f"(config.data.world.resolution)")


def _check_method(cfg: ml_collections.ConfigDict) -> None:
    """config.method names a method module; its own check_config hook and the evaluators' hook needs pass."""
    from vljax import methods
    from vljax.eval import check_evals

    try:
        module = methods.get_method(str(cfg.method))
    except (ValueError, TypeError) as e:  # NOTE: TypeError: the module lacks a required function
        raise ConfigError(str(e)) from None
    try:
        if hasattr(module, "check_config"):
            module.check_config(cfg)
        check_evals(cfg, module)
    except ValueError as e:  # NOTE: only the hook's verdict; a bug in the hook keeps its traceback
        raise ConfigError(str(e)) from None


def _check_init_source(key: str, source: str, check_paths: bool) -> None:
    """config.init.<field> = '<format>:<path>' | 'checkpoint:<workdir>[@step]': a known format (the parsers
    load_pretrained uses), a path that is there (unless check_paths=False)."""
    from vljax.convert.init import CHECKPOINT, parse_checkpoint_source, parse_source

    field = key.removeprefix("init.")
    try:
        if source.startswith(CHECKPOINT):
            path = Path(parse_checkpoint_source(source, field)[0]) / "checkpoints"
        else:
            path = Path(parse_source(source, field)[1])
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if check_paths and not path.exists():
        what = " (not a vljax training run)" if source.startswith(CHECKPOINT) else ""
        raise ConfigError(f"config.{key}={source!r}: {path} does not exist{what}")


def _flat_values(tree: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dict (a config as JSON) -> {dotted leaf key: value}."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat_values(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _as_json(cfg) -> dict:
    import json

    return json.loads(cfg.to_json_best_effort()) if isinstance(cfg, ml_collections.ConfigDict) else cfg


def config_changes(old, new, *, skip: Iterable[str] = ()) -> list[tuple[str, Any, Any]]:
    """Two configs (ConfigDicts or their JSON dicts, e.g. a workdir's config.json) -> sorted [(key, old, new)] of
    the leaves that differ (a key only one side has: None on the other); values as JSON gives them."""
    a, b = _flat_values(_as_json(old)), _flat_values(_as_json(new))
    skip = set(skip)
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if k not in skip and a.get(k) != b.get(k)]


def override_args(cfg) -> list[str]:
    """A config loaded from its `config_spec` (a ConfigDict, or its JSON as a workdir's config.json holds it) -> the
    `--config.key=value` arguments that rebuild it from the spec's preset (CLI and sweep overrides alike), in the
    form apply_overrides parses back. Keys the config file has gained since are left at their defaults."""
    spec = cfg["config_spec"]
    base = load_config(spec, check_paths=False)
    base_values, values = _flat_values(_as_json(base)), _flat_values(_as_json(cfg))
    args = []
    for key, _, value in config_changes(base_values, values, skip=("config_spec",)):
        if key not in values:
            continue
        if key not in base_values:
            raise ConfigError(f"config key {key!r} is no longer in {spec}")
        text = value if isinstance(value, str) and isinstance(base_values[key], str) else repr(value)
        args.append(f"--config.{key}={text}")
    return args


def flat_keys(cfg: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """All dotted leaf keys of a ConfigDict (sections included as prefixes)."""
    keys = []
    for k, v in cfg.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, ml_collections.ConfigDict):
            keys.extend(flat_keys(v, full + "."))
    return keys


def _parse_value(text: str, current: Any, key: str) -> Any:
    """Parses an override string into the type of the current value; raises naming the key."""
    if isinstance(current, bool):
        low = text.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ConfigError(f"--config.{key}: expected a bool, got {text!r}")
    if isinstance(current, str) or current is None:
        if current is None:
            try:
                return ast.literal_eval(text)
            except (ValueError, SyntaxError):
                return text
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ConfigError(f"--config.{key}: cannot parse {text!r} as {type(current).__name__}") from None
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(current, (tuple, list)) and isinstance(value, (tuple, list)):
        return type(current)(value)
    if isinstance(current, (tuple, list)) and not isinstance(value, (tuple, list)):
        return type(current)((value,))
    if type(value) is not type(current):
        raise ConfigError(f"--config.{key}: expected {type(current).__name__}, got {text!r} "
                          f"({type(value).__name__})")
    return value


def _parent_of(cfg: ml_collections.ConfigDict, key: str, valid: list[str]) -> tuple[Any, str]:
    """'a.b.c' -> (cfg.a.b, 'c'); an unknown key raises ConfigError naming the nearest valid keys."""
    if key not in valid:
        near = difflib.get_close_matches(key, valid, n=3, cutoff=0.5)
        raise ConfigError(f"unknown config key {key!r}"
                          + (f"; nearest valid keys: {', '.join(near)}" if near else ""))
    parent = cfg
    *path, leaf = key.split(".")
    for p in path:
        parent = parent[p]
    return parent, leaf


def apply_overrides(cfg: ml_collections.ConfigDict, overrides: Iterable[str]) -> None:
    """Applies 'a.b=value' strings in place; unknown keys and wrong types raise ConfigError."""
    valid = flat_keys(cfg)
    for item in overrides:
        item = item.removeprefix("--config.").removeprefix("config.")
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value")
        key, text = item.split("=", 1)
        parent, leaf = _parent_of(cfg, key, valid)
        current = parent[leaf]
        if isinstance(current, ml_collections.ConfigDict):
            raise ConfigError(f"--config.{key} is a section; set one of its keys instead")
        with cfg.ignore_type():
            parent[leaf] = _parse_value(text, current, key)


def _coerce(value: Any, current: Any, key: str) -> Any:
    """A Python value for a key (a sweep point's) -> the value in the current value's type: int -> float, numpy
    numbers -> Python ones, list <-> tuple; a number for a tuple key is kept (e.g. patch_size=16); another type
    raises naming the key."""
    if current is None or isinstance(current, ml_collections.ConfigDict):
        return value
    is_int = lambda v: isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))
    if isinstance(current, (tuple, list)):
        return type(current)(value) if isinstance(value, (tuple, list)) else value
    if isinstance(current, bool) and isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(current, int) and not isinstance(current, bool) and is_int(value):
        return int(value)
    if isinstance(current, float) and isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(current, str) and isinstance(value, str):
        return value
    raise ConfigError(f"config.{key}={value!r}: expected {type(current).__name__}, got {type(value).__name__}")


def set_overrides(cfg: ml_collections.ConfigDict, overrides: dict[str, Any]) -> None:
    """Applies a {dotted key: python value} dict (sweeps) in place, with the same key and type checks as the CLI."""
    valid = flat_keys(cfg)
    for key, value in overrides.items():
        parent, leaf = _parent_of(cfg, key, valid)
        with cfg.ignore_type():
            parent[leaf] = _coerce(value, parent[leaf], key)
