"""experiments/zeroshot_confusion.py and vljax.eval.zeroshot.predict: the confusion matrix agrees with `vljax eval`."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tests.test_train_loop import SMALL
from vljax.config import load_config
from vljax.train import loop

spec = importlib.util.spec_from_file_location(
    "zeroshot_confusion", Path(__file__).resolve().parents[1] / "experiments" / "zeroshot_confusion.py"
)
zc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(zc)
OVERRIDES = [*SMALL, "--config.train.steps=2"]


def test_confusion_counts_and_table():
    m = zc.confusion(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2]), 3)
    np.testing.assert_array_equal(m, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    table = zc.format_confusion(m, ("circle", "square", "hexagon")).splitlines()
    assert table[0].split()[-1] == "recall" and table[3].split()[-1] == "0.667"  # hexagon: 2 of 3


def test_confusion_script_matches_eval(tmp_path, capsys):
    workdir = tmp_path / "run"
    results = loop.train_and_evaluate(load_config("configs/clip.py:tiny", OVERRIDES), workdir)
    preds = zc.main(["--config", "configs/clip.py:tiny", "--workdir", str(workdir), *OVERRIDES])
    for task in ("shape", "color"):
        labels, pred, classes = preds[task]
        assert len(labels) == 32 and pred.max() < len(classes)
        assert float((pred == labels).mean()) == results[f"zeroshot/{task}_acc"]
    assert "zero-shot shape, accuracy" in capsys.readouterr().out
    with pytest.raises(SystemExit, match=r"config\.evals\.retrieval is not a zero-shot eval.*\['zeroshot'\]"):
        zc.main(["--config", "configs/clip.py:tiny", "--workdir", str(workdir), "--eval", "retrieval", *OVERRIDES])
