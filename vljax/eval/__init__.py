"""Evaluators declared in config.evals ({name: ConfigDict(kind=..., ...)}), run periodically and at the end.

Each evaluator module exposes `evaluate(exp, params, cfg) -> {metric: value}`; results are
prefixed with the evaluator's name, e.g. `zeroshot/shape_acc`, `retrieval/i2t_r1`.
"""
from __future__ import annotations

import difflib
import importlib

EVALUATORS = ("zeroshot", "retrieval", "generation", "finegrained", "prior_probe", "captioning", "vqa", "pope",
              "grounding", "localization")
# NOTE: kinds whose module has another name (captioning lives next to its BLEU / CIDEr-D code).
_MODULES = {"captioning": "caption_metrics"}
_GENERATE = ("build_static", "prompt_ids", "make_generate")
# The method hooks each evaluator calls (vljax/methods/__init__.py documents them); "a|b" = either will do.
# Checked when the config loads (check_evals), so a method that lacks one fails before training, not at the end.
METHOD_HOOKS = {
    "zeroshot": ("encoders",),
    "retrieval": ("encoders",),
    "finegrained": ("score_pairs|encoders",),
    "generation": _GENERATE + ("select_text",),
    "captioning": _GENERATE,
    "vqa": _GENERATE,
    "pope": _GENERATE,
    "grounding": _GENERATE,
    "prior_probe": ("lvlm_logits", "make_example", "select_text") + _GENERATE,
    "localization": (),
}


def check_evals(config, method) -> None:
    """config.evals x a method module -> None; ValueError naming the evaluator for an unknown kind or a method
    hook the evaluator needs and the method lacks."""
    for name, ecfg in config.get("evals", {}).items():
        kind = ecfg.get("kind", name)
        if kind not in EVALUATORS:
            near = difflib.get_close_matches(str(kind), EVALUATORS, n=2)
            raise ValueError(f"config.evals.{name}.kind: unknown evaluator {kind!r}; available: "
                             f"{', '.join(EVALUATORS)}" + (f" (did you mean {', '.join(near)}?)" if near else ""))
        missing = [h.replace("|", " or ") for h in METHOD_HOOKS[kind]
                   if not any(hasattr(method, x) for x in h.split("|"))]
        if missing:
            raise ValueError(f"config.evals.{name} (kind {kind!r}) needs the method hook"
                             f"{'s' if len(missing) > 1 else ''} {', '.join(missing)}, which {method.__name__} "
                             f"lacks (the hooks: vljax/methods/__init__.py)")


def run_evals(exp, params, step: int) -> dict[str, float]:
    """Runs every evaluator in exp.config.evals -> flat {name/metric: value}."""
    from vljax.eval.embed import eval_round

    # NOTE: load_config has checked this already; an Experiment built from a hand-made config has not.
    check_evals(exp.config, exp.method)
    out = {}
    with eval_round():
        for name, ecfg in exp.config.evals.items():
            kind = ecfg.get("kind", name)
            module = importlib.import_module(f"vljax.eval.{_MODULES.get(kind, kind)}")
            for k, v in module.evaluate(exp, params, ecfg).items():
                out[f"{name}/{k}"] = float(v)
    return out
