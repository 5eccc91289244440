"""Evaluators declared in config.evals ({name: ConfigDict(kind=..., ...)}), run periodically and at the end.

Each evaluator module exposes `evaluate(exp, params, cfg) -> {metric: value}`; results are
prefixed with the evaluator's name, e.g. `zeroshot/shape_acc`, `retrieval/i2t_r1`.
"""
from __future__ import annotations

import importlib

EVALUATORS = ("zeroshot", "retrieval", "generation", "finegrained", "prior_probe", "captioning", "vqa", "pope",
              "grounding", "localization")
# NOTE: kinds whose module has another name (captioning lives next to its BLEU / CIDEr-D code).
_MODULES = {"captioning": "caption_metrics"}


def run_evals(exp, params, step: int) -> dict[str, float]:
    """Runs every evaluator in exp.config.evals -> flat {name/metric: value}."""
    from vljax.eval.embed import eval_round

    out = {}
    with eval_round():
        for name, ecfg in exp.config.evals.items():
            kind = ecfg.get("kind", name)
            if kind not in EVALUATORS:
                raise ValueError(f"config.evals.{name}.kind: unknown evaluator {kind!r}; available: {EVALUATORS}")
            module = importlib.import_module(f"vljax.eval.{_MODULES.get(kind, kind)}")
            for k, v in module.evaluate(exp, params, ecfg).items():
                out[f"{name}/{k}"] = float(v)
    return out
