"""PRIOR vs NTP scaling study: runs configs/prior.py's `scaling` sweep and fits E = b * C^a per loss.

    python experiments/prior_scaling.py --root runs/prior_scaling --reference runs/prior_ref [--parallel 2]

E = 1 - teacher-forced slot accuracy on the counter-prior split (image-dependent tokens where the
language prior is wrong), C = train FLOPs (analytic, 3 x forward per example) x samples seen. The
sweep crosses LM size (xs, s, m) with training steps (150, 300, 600) for both losses; the report
(ROOT/report.md, ROOT/scaling.png) holds the fits, bootstrap CIs of each exponent and a bootstrap
test of their difference. Resumable: finished points are skipped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

METRIC = "prior_probe/counter_prior/slot_acc"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="runs/prior_scaling")
    ap.add_argument("--reference", default="runs/prior_ref",
                    help="workdir of the text-only reference LM (configs/prior.py:reference); trained if missing")
    ap.add_argument("--config", default="configs/prior.py:tiny")
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--metric", default=METRIC)
    ap.add_argument("--report_only", action="store_true", help="do not train; report what ROOT holds")
    ap.add_argument("--rule", default=None, help="prior rule instead of configs/prior.py's, e.g. 'color=red -> shape=circle'")
    args = ap.parse_args(argv)

    from vljax.experiments.report import write_sweep_report
    from vljax.experiments.sweep import run_sweep

    if not args.report_only:
        ensure_reference(args.reference, rule_overrides(args.rule))
        run_sweep(args.config, "scaling", args.root, parallel=args.parallel,
                  cli_overrides=[f"--config.init.reference=checkpoint:{Path(args.reference).resolve()}"]
                  + rule_overrides(args.rule))
    path = write_sweep_report(args.root, group_by="override.prior.variant", metric=args.metric)
    text = path.read_text()
    start = text.find("## Scaling fits")
    end = text.find("## Compute frontier")
    print(text[start:end].strip())
    print(f"\nfull report: {path}")
    return 0


def rule_overrides(rule: str | None) -> list[str]:
    """A prior rule -> the config override that sets it (world data, so the reference must match)."""
    return [] if not rule else [f"--config.data.world.prior.rules=({rule!r},)"]


def ensure_reference(workdir: str, overrides: list[str] = ()) -> None:
    """Trains configs/prior.py:reference (+ overrides) into workdir unless it already holds a finished run."""
    from vljax.config import load_config
    from vljax.train.loop import train_and_evaluate

    if (Path(workdir) / "results.json").exists():
        return
    print(f"[prior] training the reference LM into {workdir}", flush=True)
    train_and_evaluate(load_config("configs/prior.py:reference", list(overrides)), workdir)


if __name__ == "__main__":
    sys.exit(main())
