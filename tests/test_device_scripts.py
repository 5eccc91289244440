"""The device-validation scripts stay runnable on CPU (they only run for real on a lent GPU)."""

import importlib.util
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_kernel_check_passes_in_interpret_mode(capsys):
    spec = importlib.util.spec_from_file_location("kernel_check", ROOT / "benchmarks" / "kernel_check.py")
    kernel_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kernel_check)
    assert kernel_check.main(["--sizes", "small", "--dtypes", "float32"]) == 0
    out = capsys.readouterr().out
    assert "all checks passed" in out and "| late_interaction | 8x13x9x20 | float32 | dv | pallas |" in out


def test_device_checks_script_parses():
    subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "device_checks.sh")], check=True)
