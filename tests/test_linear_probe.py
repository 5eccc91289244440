"""experiments/linear_probe.py: the ridge probe separates separable classes and is at chance on noise."""
import importlib.util
from pathlib import Path

import numpy as np

spec = importlib.util.spec_from_file_location(
    "linear_probe", Path(__file__).resolve().parents[1] / "experiments" / "linear_probe.py")
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)


def test_ridge_probe_separable_and_noise():
    rng = np.random.default_rng(0)
    means = rng.normal(size=(4, 16)) * 5
    y_tr, y_te = rng.integers(0, 4, 400), rng.integers(0, 4, 200)
    x_tr, x_te = means[y_tr] + rng.normal(size=(400, 16)), means[y_te] + rng.normal(size=(200, 16))
    assert probe.ridge_probe(x_tr, y_tr, x_te, y_te, 4) > 0.97
    noise = probe.ridge_probe(rng.normal(size=(400, 16)), y_tr, rng.normal(size=(200, 16)), y_te, 4)
    assert noise < 0.45
