"""Synthetic-world throughput: items/s on one core (WORLD.md principle 6); exits 1 below 50% of a target.

2D rows: each scene asks for image, boxes, objects (always present), short + long captions and 4 QA (the
text fields are produced only when vljax.data.world.annotate is importable; the table says which).
3D rows (through `World`): object3d = 1,024 points + normals + 6 depth views + RGB view + depth pair at
64^2; room = 2,048 scene points + 4 RGB-D views at 64^2 + per-object points, scene graph, text, refs.
Video row: `video` preset clips of 8 frames at 64x64 (frames, boxes, visibility, events, temporal caption).
Rates are CPU time of this process (`time.process_time`), best of 3 rounds.
--extras: opt-in video / audio / surgical fields (no targets), one row each.
Usage: .venv/bin/python benchmarks/world_throughput.py [--seconds 3] [--presets medical64,aerial64] [--extras]
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
TARGETS_3D = {"object3d": 1000.0, "room": 100.0}
TARGET_VIDEO = 250.0
VIDEO = ("video", "captions/temporal")
# NOTE: (row name, preset, config overrides for World.variant, fields); None fields = the preset's defaults.
EXTRAS = (
    ("video + moments", "video", {}, VIDEO + ("moments",)),
    ("video + pair", "video", {}, VIDEO + ("pair",)),
    ("action pairs + contrast", "video", {"video.action_pairs": True, "objects.count": (2, 3)}, VIDEO + ("contrast",)),
    ("appear/disappear + events/time", "video", {"video.events": ("move", "bounce", "appear", "disappear")},
     VIDEO + ("events/time",)),
    ("audio + captions", "video", {"audio.enabled": True}, VIDEO + ("audio", "captions/audio")),
    ("surgical preset", "surgical", {}, None),
)


def rate(w: world.World, seconds: float, fields=FIELDS, chunk: int = 25) -> float:
    """-> best items/s over 3 timed rounds of about `seconds` / 3 each (after a warm-up)."""
    for i in range(min(chunk, 20)):
        w.sample("train", i, fields)
    best, i = 0.0, 1000
    for _ in range(3):
        n, t0 = 0, time.process_time()
        while time.process_time() - t0 < seconds / 3:
            for _ in range(chunk):
                w.sample("train", i, fields)
                i += 1
            n += chunk
        best = max(best, n / (time.process_time() - t0))
    return best


def main() -> int:
    """CLI entry point; returns the exit status."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--presets", default="", help="comma-separated world presets to time alone with their default "
                    "fields (no target), e.g. medical64,aerial64")
    ap.add_argument("--extras", action="store_true", help="time opt-in video / audio / surgical fields instead")
    args = ap.parse_args()
    if args.extras:
        print(f"{'extra':>32} {'clips/s/core':>14}")
        for name, preset, over, fields in EXTRAS:
            w = world.World(world.get_config(preset))
            if over:
                w = w.variant(**over)
            print(f"{name:>32} {rate(w, args.seconds, fields=fields, chunk=10):>14.0f}")
        return 0
    if args.presets:
        print(f"{'preset':>10} {'items/s/core':>14}  fields")
        for name in args.presets.split(","):
            w = world.World(world.get_config(name))
            print(f"{name:>10} {rate(w, args.seconds, fields=None):>14.0f}  {', '.join(w.cfg.fields)}")
        return 0
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
    print(f"{'kind':>10} {'items/s/core':>14} {'target':>8} {'ratio':>6}")
    for kind, target in TARGETS_3D.items():
        w3 = world.World(world.get_config(kind))
        r = rate(w3, args.seconds, fields=None, chunk=25 if kind == "object3d" else 5)
        ratio = r / target
        ok &= ratio >= 0.5
        print(f"{kind:>10} {r:>14.0f} {target:>8.0f} {ratio:>6.2f}")
    wv = world.World(world.get_config("video"))
    r = rate(wv, args.seconds, fields=("video", "captions/temporal"))
    ok &= r / TARGET_VIDEO >= 0.5
    print(f"{'video8x64':>10} {r:>14.0f} {TARGET_VIDEO:>8.0f} {r / TARGET_VIDEO:>6.2f}  clips/s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
