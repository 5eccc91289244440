"""Trains one sweep point: `python -m vljax.experiments.run_point ROOT/<id>/point.json` (used by sweep.py)."""
from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """point.json path -> trains (resuming) in its directory; exit code 0 when results.json was written."""
    import json

    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -m vljax.experiments.run_point ROOT/<id>/point.json", file=sys.stderr)
        return 2
    path = Path(argv[0])
    point = json.loads(path.read_text())
    from vljax.experiments.sweep import point_config
    from vljax.train import loop

    loop.train_and_evaluate(point_config(point), path.parent)
    return 0 if (path.parent / "results.json").exists() else 1


if __name__ == "__main__":
    sys.exit(main())
