"""PRIOR's small-scale reproduction (../shared/methods/prior.md) on the world, with the card's ablations.

    python experiments/prior_repro.py --root runs/prior_repro --reference runs/prior_ref [--parallel 2]

Steps (each resumable; finished runs are skipped):
  1. the text-only reference LM (configs/prior.py:reference) unless --reference holds a finished run;
  2. NTP vs PRIOR, seeds 0-2, identical lr / batch / data order  (sweep `repro`   -> ROOT/repro);
  3. ablations (seeds 0-1): inverted weights w = P_r, multipliers shuffled inside each caption (`ablations` -> ROOT/ablations);
  4. NTP (seeds 0-1) with lr x (PRIOR's mean multiplier on slot tokens), separating "reweighting" from "a larger step"
     (-> ROOT/lr_matched; the factor is read from the PRIOR runs' logged `prior/mult_slot`).
Prints one table: mean +- standard error over seeds of the probe metrics (vljax/eval/prior_probe.py), and the
per-seed paired difference PRIOR - NTP.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

METRICS = (
    "in_prior/slot_acc",
    "counter_prior/slot_acc",
    "in_prior/color_acc",
    "counter_prior/color_acc",
    "counter_prior/size_acc",
    "counter_prior/shape_acc",
    "counter_prior/halluc_tf",
    "counter_prior/halluc_greedy",
    "in_prior/pair_precision",
    "counter_prior/pair_precision",
    "counter_prior/nll_slot",
    "counter_prior/nll_noise",
)


def _rows(root: Path) -> list[dict]:
    from vljax.experiments.sweep import collect

    return [r for r in collect(root) if r["status"] == "finished"] if root.exists() else []


def mean_slot_multiplier(root: Path) -> float:
    """Mean over PRIOR runs of the last logged `prior/mult_slot` (metrics.jsonl)."""
    vals = []
    for point in root.glob("*/point.json"):
        if json.loads(point.read_text()).get("overrides", {}).get("prior.variant") != "prior":
            continue
        lines = [json.loads(x) for x in (point.parent / "metrics.jsonl").read_text().splitlines() if x.strip()]
        vals += [x["prior/mult_slot"] for x in lines[-3:] if "prior/mult_slot" in x]
    if not vals:
        raise RuntimeError(f"no PRIOR run with logged prior/mult_slot under {root}")
    return float(np.mean(vals))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="runs/prior_repro")
    ap.add_argument("--reference", default="runs/prior_ref")
    ap.add_argument("--config", default="configs/prior.py:tiny")
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--skip", nargs="*", default=(), choices=("ablations", "lr_matched"),
                    help="parts not to run (their finished points are still reported)")
    ap.add_argument("--report_only", action="store_true")
    ap.add_argument("--rule", default=None, help="prior rule instead of configs/prior.py's, e.g. 'color=red -> shape=circle'")
    args = ap.parse_args(argv)

    from prior_scaling import ensure_reference, rule_overrides  # NOTE: the sibling script (run from any cwd)
    from vljax.experiments.report import paired_seed_diffs, seed_table
    from vljax.experiments.sweep import run_sweep

    root = Path(args.root)
    rule = rule_overrides(args.rule)
    ref = [f"--config.init.reference=checkpoint:{Path(args.reference).resolve()}"] + rule
    if not args.report_only:
        ensure_reference(args.reference, rule)
        run_sweep(args.config, "repro", root / "repro", parallel=args.parallel, cli_overrides=ref)
        if "ablations" not in args.skip:
            run_sweep(args.config, "ablations", root / "ablations", parallel=args.parallel, cli_overrides=ref)
        if "lr_matched" not in args.skip:
            from vljax.config import load_config

            scale = mean_slot_multiplier(root / "repro")
            lr = float(load_config(args.config).optim.lr) * scale
            print(f"[prior] lr-matched NTP: lr x {scale:.3f} = {lr:.3g}", flush=True)
            spec = args.config + "_ntp"  # NOTE: the preset's NTP twin, e.g. tiny -> tiny_ntp
            run_sweep(spec, "seeds2", root / "lr_matched", parallel=args.parallel, cli_overrides=[f"--config.optim.lr={lr}"] + rule)
    groups: dict[str, list[dict]] = {}
    for r in _rows(root / "repro"):
        groups.setdefault(str(r.get("override.prior.variant")), []).append(r)
    for r in _rows(root / "ablations"):
        groups.setdefault(str(r.get("override.prior.variant")), []).append(r)
    if _rows(root / "lr_matched"):
        groups["ntp (lr-matched)"] = _rows(root / "lr_matched")
    print(seed_table(groups, METRICS, prefix="prior_probe/"))
    print()
    print(paired_seed_diffs(groups, "prior", "ntp", METRICS, prefix="prior_probe/"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
