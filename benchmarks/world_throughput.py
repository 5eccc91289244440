"""Synthetic-world throughput: scenes/s on one core (WORLD.md principle 6); exits 1 below 50% of a target.

Each scene asks for image, boxes, objects (always present), short + long captions and 4 QA (the text
fields are produced only when vljax.data.world.annotate is importable; the table says which).
Usage: .venv/bin/python benchmarks/world_throughput.py [--seconds 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

# NOTE: one process, one core: keep BLAS / XLA from spreading over other cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from vljax.data import world  # noqa: E402

TARGETS = {64: 2000.0, 224: 250.0}
FIELDS = ("image", "boxes", "captions/short", "captions/long", "qa")


def rate(w: world.World, seconds: float) -> float:
    """-> best scenes/s over 3 timed rounds of about `seconds` / 3 each (after a warm-up)."""
    for i in range(20):
        w.sample("train", i, FIELDS)
    best, i = 0.0, 1000
    for _ in range(3):
        n, t0 = 0, time.process_time()
        while time.process_time() - t0 < seconds / 3:
            for _ in range(25):
                w.sample("train", i, FIELDS)
                i += 1
            n += 25
        best = max(best, n / (time.process_time() - t0))
    return best


def main() -> int:
    """CLI entry point; returns the exit status."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        base = world.World(world.get_config("image64"))
    has_text = base._annotate is not None
    ok = True
    print(f"{'resolution':>10} {'scenes/s/core':>14} {'target':>8} {'ratio':>6}  text={'yes' if has_text else 'no'}")
    for res, target in TARGETS.items():
        r = rate(base.variant(resolution=res) if res != 64 else base, args.seconds)
        ratio = r / target
        ok &= ratio >= 0.5
        print(f"{res:>10} {r:>14.0f} {target:>8.0f} {ratio:>6.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
