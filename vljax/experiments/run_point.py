"""Trains one sweep point: `python -m vljax.experiments.run_point ROOT/<id>/point.json` (used by sweep.py)."""
from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """point.json path -> trains (resuming) in its directory; exit code 0 when results.json was written, 128 + the
    signal number when a signal stopped it with a checkpoint (the sweep then counts it incomplete, not failed)."""
    import json

    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -m vljax.experiments.run_point ROOT/<id>/point.json", file=sys.stderr)
        return 2
    path = Path(argv[0])
    point = json.loads(path.read_text())
    from vljax.experiments.sweep import point_config
    from vljax.train import loop

    try:
        loop.train_and_evaluate(point_config(point), path.parent)
    except loop.Preempted as e:
        print(f"[vljax] {e}", flush=True)
        return e.exit_code
    return 0 if (path.parent / "results.json").exists() else 1


if __name__ == "__main__":
    sys.exit(main())
