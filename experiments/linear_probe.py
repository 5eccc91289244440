"""Linear probe of a trained two-tower's image embedding on world attributes (shape, color).

  python experiments/linear_probe.py --config configs/clip.py:tiny --workdir runs/demo [--per_class] [--config.k=v ...]

Embeds single-object scenes (train split for fitting, test split for scoring) with the newest
checkpoint in --workdir and fits a ridge-regularized least-squares one-vs-all classifier per
attribute; prints test accuracy. Tells whether an attribute is missing from the image tower or
only from the image-text alignment (compare with zero-shot accuracy).
"""
from __future__ import annotations

import argparse

import numpy as np


def ridge_predict(x_train, y_train, x_test, num_classes: int, ridge: float = 1e-2) -> np.ndarray:
    """[N, D] train features + int labels, [M, D] test features -> int [M] one-vs-all least-squares predictions."""
    a = np.c_[x_train, np.ones(len(x_train))]
    w = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ np.eye(num_classes)[y_train])
    return (np.c_[x_test, np.ones(len(x_test))] @ w).argmax(1)


def ridge_probe(x_train, y_train, x_test, y_test, num_classes: int, ridge: float = 1e-2) -> float:
    """[N, D] features + int labels -> test accuracy of a one-vs-all least-squares probe."""
    return float((ridge_predict(x_train, y_train, x_test, num_classes, ridge) == y_test).mean())


def main(argv=None):
    from vljax.config import parse_cli

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--n_train", type=int, default=1500)
    p.add_argument("--n_test", type=int, default=500)
    p.add_argument("--per_class", action="store_true", help="also print each class's recall")
    args, overrides = parse_cli(p, argv)

    import flax.linen as nn
    import jax

    from vljax.config import load_config
    from vljax.data.world import World
    from vljax.eval.embed import embed_in_batches
    from vljax.train.loop import restore_latest

    cfg = load_config(args.config, overrides)
    exp, params, step = restore_latest(cfg, args.workdir)
    embed_images, _ = exp.encoders
    wcfg = cfg.data.world.copy_and_resolve_references()
    wcfg.objects.count = (1, 1)
    world = World(wcfg)
    tasks = ("shape", "color")

    def features(split, n):
        samples = [world.sample(split, i, fields=("image",) + tuple(f"labels/main_{t}" for t in tasks))
                   for i in range(n)]
        with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
            x = embed_in_batches(embed_images, params, np.stack([s["image"] for s in samples]),
                                 cfg.eval_batch_size, exp.mesh)
        return x, {t: np.array([s[f"labels/main_{t}"] for s in samples]) for t in tasks}

    x_tr, y_tr = features("train", args.n_train)
    x_te, y_te = features("test", args.n_test)
    print(f"checkpoint step {step}: linear probe on the image embedding ({args.n_train} train / {args.n_test} test)")
    for t in tasks:
        pred = ridge_predict(x_tr, y_tr[t], x_te, world.num_classes(f"main_{t}"))
        print(f"  {t:<6} {(pred == y_te[t]).mean():.3f}")
        if args.per_class:
            recall = [f"{c} {(pred == y_te[t])[y_te[t] == k].mean():.3f}" for k, c in enumerate(world.class_names(t))]
            print("    recall: " + ", ".join(recall))


if __name__ == "__main__":
    main()
