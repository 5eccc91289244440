"""experiments/clip_shape_diagnosis.py: every variant trains, probes and lands in the closing table."""
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--config.data.world.resolution=32", "--config.model.image.width=32", "--config.model.image.depth=1",
         "--config.model.image.num_heads=2", "--config.model.image.mlp_dim=64", "--config.model.text.width=32",
         "--config.model.text.depth=1", "--config.model.text.num_heads=2", "--config.model.text.mlp_dim=64",
         "--config.model.embed_dim=16", "--config.train.batch_size=16"]


VARIANTS = ("text", "frozen_text", "class_codes", "supervised", "text_shape_negatives", "pretrained_text",
            "pretrained_frozen_text", "supervised_cnn", "text_cnn")


def test_all_variants_run_and_report(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "clip_shape_diagnosis.py"), "--steps", "4", "--eval_every", "2",
         "--n_train", "64", "--n_probe", "48", "--n_test", "32", "--pretrain_text_steps", "2",
         "--variants", ",".join(VARIANTS), "--config.optim.warmup_steps=1"] + SMALL,
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in out.stdout.splitlines() if line.startswith("| ") and "step" not in line]
    assert [(r[0].strip(), int(r[1])) for r in rows] == [
        (v, s) for v in VARIANTS for s in (2, 4)]
    by = {(r[0].strip(), int(r[1])): r for r in rows}
    for r in rows:
        assert 0.0 <= float(r[3]) <= 1.0 and 0.0 <= float(r[4]) <= 1.0
    # The frozen text tower's prompt embeddings do not move; the trained one's do.
    assert by[("frozen_text", 2)][5:7] == by[("frozen_text", 4)][5:7]
    assert by[("text", 2)][5:7] != by[("text", 4)][5:7]
    assert by[("class_codes", 2)][5].strip() == "-"
    # Same init and CLIP steps as `text`; only the text pre-training differs.
    assert by[("pretrained_text", 2)][5:7] != by[("text", 2)][5:7]
    assert by[("pretrained_frozen_text", 2)][5:7] == by[("pretrained_frozen_text", 4)][5:7]
    assert out.stdout.count("pretrained text: text tower trained 2 steps") == 2
    # The reference CNN is a different tower from the same labels: its loss differs from the ViT head's.
    assert by[("supervised_cnn", 4)][2] != by[("supervised", 4)][2] and by[("supervised_cnn", 4)][5].strip() == "-"
    # CLIP with the CNN as image tower: same text tower init as `text`, different image side, so a different loss.
    assert by[("text_cnn", 2)][2] != by[("text", 2)][2] and by[("text_cnn", 2)][5].strip() != "-"


def test_unknown_variant_is_an_error():
    out = subprocess.run([sys.executable, str(ROOT / "experiments" / "clip_shape_diagnosis.py"), "--variants", "txt"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "unknown variants ['txt']" in out.stderr


def test_shape_swapped_changes_only_the_shape_word():
    import importlib.util

    import numpy as np

    spec = importlib.util.spec_from_file_location("diag", ROOT / "experiments" / "clip_shape_diagnosis.py")
    diag = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(diag)
    names = ("circle", "square", "star")
    caps = ["a medium red circle", "a picture of a large blue star.", "a square"]
    out = diag.shape_swapped(caps, [0, 2, 1], names, np.random.default_rng(0))
    for c, o, k in zip(caps, out, [0, 2, 1]):
        cw, ow = c.split(" "), o.split(" ")
        diff = [i for i in range(len(cw)) if cw[i] != ow[i]]
        assert len(cw) == len(ow) and len(diff) == 1
        assert ow[diff[0]].rstrip(".") in names and ow[diff[0]].rstrip(".") != names[k]
    assert out[1].endswith(".")
    with pytest.raises(ValueError, match="shape word"):
        diag.shape_swapped(["a red circle and a circle"], [0], names, np.random.default_rng(0))
