"""Config helpers: load `configs/<name>.py:<preset>`, apply `--config.a.b=value` overrides, validate.

An unknown override key or a value of the wrong type fails before any compute, with a
message that names the key and the nearest valid keys.
"""
from __future__ import annotations

import ast
import difflib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable

import ml_collections


class ConfigError(ValueError):
    """A bad config file, preset, override key or value."""


def load_module(path: str | Path) -> ModuleType:
    """Imports a config file by path (configs are Python, as in big_vision)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
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
    rest = [a for a in argv if not a.startswith("--config.")]
    return parser.parse_args(rest), [a for a in argv if a.startswith("--config.")]


def load_config(spec: str, overrides: Iterable[str] = ()) -> ml_collections.ConfigDict:
    """'configs/clip.py:tiny' (+ 'a.b=value' overrides) -> validated ConfigDict."""
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
    return cfg


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


def set_overrides(cfg: ml_collections.ConfigDict, overrides: dict[str, Any]) -> None:
    """Applies a {dotted key: python value} dict (sweeps) in place, with the same key checks."""
    valid = flat_keys(cfg)
    for key, value in overrides.items():
        parent, leaf = _parent_of(cfg, key, valid)
        with cfg.ignore_type():
            parent[leaf] = value
