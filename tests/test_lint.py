"""The tree passes pyflakes (ruff's F rules): no unused imports or variables, no undefined names."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATHS = ("vljax", "tests", "benchmarks", "experiments", "configs", "tpu_scripts", "run.py", "setup.py")


def test_no_pyflakes_errors():
    # NOTE: ruff comes with the dev extra (`python3 run.py test` installs it); only the F rules are checked, the
    # style rules are `ruff format`'s job (ruff.toml).
    cmd = [sys.executable, "-m", "ruff", "check", "--select", "F", "--no-cache", "--output-format", "concise"]
    out = subprocess.run(cmd + [p for p in PATHS if (ROOT / p).exists()], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, f"ruff check --select F found:\n{out.stdout}{out.stderr}"
