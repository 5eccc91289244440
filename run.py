#!/usr/bin/env python3
"""Self-contained entry point for a fresh machine with only python3.

  python3 run.py demo   # creates .venv, installs pinned deps, trains + evaluates CLIP (tiny ResNet) on the world
  python3 run.py test   # same set-up, then the default test suite (not the `slow` tests)

Anything after the command is passed on (to `vljax train` for demo, to pytest for test).
"""
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"


def _stamp() -> str:
    h = hashlib.sha256()
    # NOTE: the checkout's location too: a .venv copied with the tree still points its editable install and
    # console scripts at the old place, so a moved or copied checkout reinstalls itself.
    h.update(str(ROOT).encode())
    for name in ("setup.py", "constraints.txt"):
        h.update((ROOT / name).read_bytes())
    return h.hexdigest()


def ensure_env() -> None:
    """Creates .venv and installs vljax[dev] with the pinned constraints, once per lock change."""
    stamp_file = VENV / ".vljax-installed"
    if stamp_file.exists() and stamp_file.read_text() == _stamp():
        return
    if not PY.exists():
        print("[run.py] creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("[run.py] installing pinned dependencies (first run only; a few minutes)", flush=True)
    pip = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.check_call(pip + ["-c", str(ROOT / "constraints.txt"), "-e", f"{ROOT}[dev]"])
    stamp_file.write_text(_stamp())


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("demo", "test", "setup"):
        print(__doc__)
        return 2
    cmd, rest = sys.argv[1], sys.argv[2:]
    ensure_env()
    env = dict(os.environ)
    if cmd == "setup":
        return 0
    if cmd == "demo":
        args = [str(PY), "-m", "vljax.main", "train", "--config", "configs/clip.py:tiny_resnet",
                "--workdir", "runs/demo"] + rest
    else:
        args = [str(PY), "-m", "pytest", "-q", "-n", os.environ.get("VLJAX_TEST_WORKERS", "2")] + rest
    rc = subprocess.call(args, cwd=ROOT, env=env)
    if cmd == "test" and rc == 5:
        print("[run.py] pytest collected no tests: failing on purpose", flush=True)
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
