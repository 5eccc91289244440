"""FILIP vs CLIP at equal compute on the world's fine-grained split (../shared/methods/filip.md), over seeds.

    python experiments/filip_vs_clip.py --root runs/filip_vs_clip [--parallel 2] [--report_only | --dry_run]
    python experiments/filip_vs_clip.py --sweep pad_mask --root runs/filip_pad_mask   # the card's ablation

Runs the `vs_clip` sweep of configs/filip.py (method clip | filip x seeds 0-4; finished points are skipped)
with the small shared setup below: same towers (ViT 2x64 on 32 px / 8-px patches = 16 tokens, text 2x64),
d = 32, batch 64, 300 steps, 2-3 objects per scene. The only difference between the two arms is the
loss (global-embedding InfoNCE vs token-wise late interaction) and how `finegrained` / `retrieval` score
pairs (cosine of pooled embeddings vs late interaction). Prints mean +- standard error over seeds and the
per-seed paired difference FILIP - CLIP (the seed sets the init; data order is the same for both arms), and
each arm's analytic training FLOPs per example: equal steps, batch and towers, but FILIP's step does more work
(token projections and the token-wise similarity).
Both arms also get the word -> patch localization eval (vljax/eval/localization.py). `--sweep pad_mask`
runs FILIP with padding tokens masked (the default) or put into the text mask, the card's ablation, and
prints masked - unmasked.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SETUP = [
    "--config.data.world.resolution=32", "--config.data.max_len=16", "--config.data.world.objects.count=(2, 3)",
    "--config.model.image.width=64", "--config.model.image.depth=2", "--config.model.image.num_heads=2",
    "--config.model.image.mlp_dim=128", "--config.model.text.width=64", "--config.model.text.depth=2",
    "--config.model.text.num_heads=2", "--config.model.text.mlp_dim=128", "--config.model.embed_dim=32",
    "--config.train.batch_size=64", "--config.train.steps=300", "--config.optim.warmup_steps=30",
    "--config.checkpoint.every=100000", "--config.data.num_threads=1", "--config.evals.zeroshot.n=256",
    "--config.evals.retrieval.n=256", "--config.evals.finegrained.n=256",
]
METRICS = (
    "finegrained/pair_acc", "finegrained/pair_acc_color", "finegrained/pair_acc_shape", "finegrained/pair_acc_size",
    "finegrained/r1", "retrieval/i2t_r1", "retrieval/t2i_r1", "zeroshot/mean_acc", "localization/acc",
    "localization/chance", "train_time_s",
)
# NOTE: sweep -> (override that names an arm, arm shown as "a", arm shown as "b"); paired diffs are a - b.
ARMS = {"vs_clip": ("method", "filip", "clip"), "pad_mask": ("model.filip.mask_padding", "True", "False")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="runs/filip_vs_clip")
    ap.add_argument("--config", default="configs/filip.py:tiny")
    ap.add_argument("--sweep", default="vs_clip", choices=sorted(ARMS))
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--report_only", action="store_true")
    ap.add_argument("--dry_run", action="store_true",
                    help="plan the points (point.json) and print each arm's analytic FLOPs; train nothing")
    ap.add_argument("--bidirectional_text", action="store_true",
                    help="text tower without the causal mask (FILIP's default before session 5; the 300-step tables "
                         "in docs/METHODS.md were made so)")
    args = ap.parse_args(argv)

    from vljax.experiments.report import paired_seed_diffs, seed_table
    from vljax.experiments.sweep import collect, run_sweep

    root = Path(args.root)
    key, a, b = ARMS[args.sweep]
    if not args.report_only:
        setup = SETUP + (["--config.model.text.causal=False"] if args.bidirectional_text else [])
        planned = run_sweep(args.config, args.sweep, root, parallel=args.parallel, cli_overrides=setup,
                            plan_only=args.dry_run)
        if args.dry_run:
            print(flops_line(_by_arm(planned, key), a, b))
            return 0
    rows = [r for r in collect(root) if r["status"] == "finished"] if root.exists() else []
    if not rows:
        print(f"no finished runs under {root}", file=sys.stderr)
        return 1
    groups = _by_arm(rows, key)
    metrics = tuple(m for m in METRICS if any(m in r for r in rows))
    print(seed_table(groups, metrics))
    print()
    print(paired_seed_diffs(groups, a, b, metrics))
    print(flops_line(groups, a, b))
    return 0


def _by_arm(rows: list[dict], key: str) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(str(r.get(f"override.{key}")), []).append(r)
    return groups


def flops_line(groups: dict[str, list[dict]], a: str, b: str) -> str:
    """-> one line: each arm's analytic training FLOPs per example (the sweep table's column) and their ratio."""
    per = {arm: float(groups[arm][0]["train_flops_per_example"]) for arm in (a, b) if groups.get(arm)}
    text = ", ".join(f"{arm} {v / 1e6:.1f} MFLOPs" for arm, v in per.items())
    ratio = f" ({a} / {b} = {per[a] / per[b]:.2f})" if len(per) == 2 else ""
    return f"training FLOPs per example (analytic, the sweep's train_flops_per_example): {text}{ratio}"


if __name__ == "__main__":
    sys.exit(main())
