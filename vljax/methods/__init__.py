"""Methods: one module per paper, `vljax/methods/<name>.py`, selected by `config.method`.

A method module provides:
  build(config) -> flax module
  init_params(model, config, rng) -> params (boxed with logical axis names)
  make_loss(model, config, mesh) -> loss_fn(params, batch, rng) -> (scalar loss, metrics dict)
  data_spec(config) -> dict(text_fields={sample key: batch key}, keep=(sample keys copied as arrays))
  encoders(model, config) -> (embed_images(params, images) -> [B, E], embed_texts(params, tokens) -> [B, E])
  EVALS: default evaluator names
  make_example(sample, tokenizer, config) -> dict of arrays (optional: replaces the generic
      tokenize-and-keep example builder, e.g. prompt + answer with a label mask)
The trainer never knows which method runs; a method never touches the loop.
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil
from types import ModuleType

REQUIRED = ("build", "init_params", "make_loss", "data_spec")


def available() -> list[str]:
    """Names of the method modules in this package."""
    import vljax.methods as pkg

    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))


def get_method(name: str) -> ModuleType:
    """'clip' -> vljax.methods.clip (checked for the method interface)."""
    names = available()
    if name not in names:
        near = difflib.get_close_matches(name, names, n=3)
        raise ValueError(f"config.method: unknown method {name!r}; available: {', '.join(names)}"
                         + (f" (did you mean {', '.join(near)}?)" if near else ""))
    module = importlib.import_module(f"vljax.methods.{name}")
    missing = [f for f in REQUIRED if not hasattr(module, f)]
    if missing:
        raise TypeError(f"vljax/methods/{name}.py lacks {', '.join(missing)}")
    return module
