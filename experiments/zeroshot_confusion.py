"""Zero-shot confusion matrices of a trained two-tower on world label tasks: which classes it mixes up.

  python experiments/zeroshot_confusion.py --config configs/clip.py:tiny_resnet --workdir runs/demo [--eval zeroshot]
                                           [--config.k=v ...]

Restores the newest checkpoint in --workdir and runs the config's zero-shot eval (`config.evals.<--eval>`: the
same scenes, prompts and templates as `vljax eval`), then prints per task the accuracy, a confusion matrix
(rows: true class, columns: predicted) and each class's recall. Read with experiments/linear_probe.py: a class the
probe separates but zero-shot confuses is lost on the text side.
"""

from __future__ import annotations

import argparse

import numpy as np


def confusion(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """int [N] true, int [N] predicted -> int [C, C] counts, rows = true class."""
    out = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(out, (labels, pred), 1)
    return out


def format_confusion(matrix: np.ndarray, classes) -> str:
    """[C, C] counts + class names -> a text table with each row's recall."""
    short = [c[:6] for c in classes]
    width = max(len(c) for c in classes)
    lines = [" " * width + "".join(f"{c:>7}" for c in short) + "  recall"]
    for i, (name, row) in enumerate(zip(classes, matrix)):
        recall = row[i] / max(1, row.sum())
        lines.append(f"{name:>{width}}" + "".join(f"{v:>7d}" for v in row) + f"  {recall:6.3f}")
    return "\n".join(lines)


def main(argv=None):
    from vljax.config import parse_cli

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--eval", default="zeroshot", help="name of the zero-shot eval in config.evals")
    args, overrides = parse_cli(p, argv)

    import flax.linen as nn
    import jax

    from vljax.config import load_config
    from vljax.eval import zeroshot
    from vljax.train.loop import restore_latest

    cfg = load_config(args.config, overrides)
    if args.eval not in cfg.evals or cfg.evals[args.eval].get("kind") != "zeroshot":
        names = [k for k, v in cfg.evals.items() if v.get("kind") == "zeroshot"]
        raise SystemExit(f"config.evals.{args.eval} is not a zero-shot eval; zero-shot evals here: {names}")
    exp, params, step = restore_latest(cfg, args.workdir)
    with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
        preds = zeroshot.predict(exp, params, cfg.evals[args.eval])
    for task, (labels, pred, classes) in preds.items():
        print(
            f"checkpoint step {step}: zero-shot {task}, accuracy {(pred == labels).mean():.3f} ({len(labels)} scenes)"
        )
        print(format_confusion(confusion(labels, pred, len(classes)), classes))
    return preds


if __name__ == "__main__":
    main()
