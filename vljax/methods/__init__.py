"""Methods: one module per paper, `vljax/methods/<name>.py`, selected by `config.method`.

The trainer never knows which method runs; a method never touches the loop. This list is the interface: the
trainer, the evaluators and the sweep tools call nothing else (an analysis script about one method may).

Required (checked when the config loads):
  build(config, vocab_size) -> flax module
  init_params(model, config, rng) -> params (boxed with logical axis names)
  make_loss(model, config, mesh) -> loss_fn(params, batch, rng) -> (scalar loss, metrics dict)
      batch: the global batch (dict of arrays sharded over the mesh's batch axes); mesh: for shard_map losses
  data_spec(config) -> dict(fields=(world fields to render), text_fields={sample key: batch key} (tokenized),
                            keep=(sample keys copied as arrays))

Optional, each used by the part named after it:
  check_config(config) -> None        config loading (vljax.config.validate): raise ValueError naming the key
  make_example(sample, tokenizer, config) -> dict of arrays
                                      the data pipeline: replaces the generic tokenize-and-keep builder
                                      (e.g. prompt + answer with a label mask)
  PACKABLE = True                     the data pipeline: the loss takes packed rows (config.data.pack)
  train_flops_per_example(config) -> float
                                      MFU (vljax.train.flops); else XLA's count of the compiled step
  forward_flops_per_example(config) -> float
                                      sweep compute accounting (vljax.experiments.sweep); else the two-tower count
  encoders(model, config) -> (embed_images(params, uint8 [B, H, W, 3]) -> [B, E],
                              embed_texts(params, int [B, L]) -> [B, E])
                                      zeroshot, retrieval, finegrained evaluators
  score_pairs(model, config, params, images, tokens, direction) -> [N, M]
                                      retrieval / finegrained: pair scores that are not a dot product (FILIP)
  build_static(config), prompt_ids(tokenizer, prompt, n_image, image_token_id),
  make_generate(model, config, *, max_new_tokens, num_beams), select_text(sample, task)
                                      generative evaluators (generation, captioning, vqa, pope, grounding)
  CAPTION_PROMPT = "..."              captioning evaluator: the prompt (default "describe the image .")
  lvlm_logits(model, params, images, tokens) -> [B, T, V]
                                      prior_probe evaluator (which also generates: the generative hooks)
Which evaluators run is declared in the config (`config.evals`, the method's defaults in configs/<name>.py);
vljax.eval.METHOD_HOOKS lists the hooks each needs, and a config naming an evaluator whose hooks the method lacks
fails at load.
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
