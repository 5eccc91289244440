"""ToMe in the ViT: forward throughput at several r, and world zero-shot accuracy with merging.

  python benchmarks/token_merging.py                          # throughput + accuracy (a few minutes on CPU)
  python benchmarks/token_merging.py --skip_accuracy --res 224 --patch 16 --width 384 --depth 12 --heads 6
  python benchmarks/token_merging.py --from_workdir runs/demo [--config configs/clip.py:tiny] [--config.k=v ...]

Default: a throughput table (schedule, r, tokens left, images/s, x r=0), then a tiny CLIP trained for --steps with
each r in --acc_rs (zero-shot mean accuracy, delta vs r=0). --schedule takes a comma-separated list (constant,
decreasing, increasing): each r > 0 gets one row per schedule. The forwards of all rows are compiled first and
timed in interleaved rounds, so a load change on a shared machine hits every row alike.

--from_workdir: ToMe's off-the-shelf setting. The newest checkpoint of an already trained two-tower run (trained
without merging; --config and --config.* overrides as it was trained) is evaluated with merging switched on at
each r in --acc_rs, no retraining, and the forward throughput of an image tower with the same dims (the
checkpoint's ViT dims, stem and resolution replace --width/--depth/--heads/--patch/--res) is timed at the same r, so
speed and accuracy in one row belong to one model.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import interleaved_ms
from vljax.config import load_config, parse_cli
from vljax.experiments.flops import vit_dims, vit_merges, vit_tokens
from vljax.kernels.token_merging import SCHEDULES
from vljax.models.vit import ViT
from vljax.train import loop


def rows_of(args, rs: str) -> list[tuple[str, int]]:
    """--schedule a,b x rates "0,4" -> [(schedule, r)]: r = 0 (no merging, no schedule) once, first."""
    schedules = [s for s in args.schedule.split(",") if s]
    unknown = [s for s in schedules if s not in SCHEDULES]
    if unknown or not schedules:
        raise SystemExit(f"--schedule: unknown {unknown or schedules}; choose from {SCHEDULES}")
    rates = [int(x) for x in rs.split(",")]
    return [("-", 0)] * (0 in rates) + [(s, r) for s in schedules for r in rates if r]


def merging(r: int, schedule: str) -> dict | None:
    """-> the ViT's token_merging setting for a table row (None at r = 0)."""
    return dict(r=r, schedule=schedule) if r else None


def throughput(args, rows: list[tuple[str, int]]) -> dict[tuple[str, int], tuple[float, int]]:
    """-> {(schedule, r): (images/s of the jitted forward, tokens after the last block)}.

    Every row's forward is compiled first, then timed in `iters` interleaved rounds (one call per row per round),
    so a load change on a shared machine hits every row alike; a row keeps its best round.
    """
    kw = dict(
        width=args.width,
        depth=args.depth,
        num_heads=args.heads,
        mlp_dim=args.mlp_dim or 4 * args.width,
        patch_size=(args.patch, args.patch),
        image_size=args.res,
        pool=args.pool,
        stem=getattr(args, "stem", "patch"),
        stem_channels=getattr(args, "stem_channels", ()),
        attention_impl=args.attention_impl,
    )
    kw["dtype"] = jnp.dtype(args.dtype)
    images = jax.random.normal(jax.random.key(0), (args.batch, args.res, args.res, 3)).astype(kw["dtype"])
    # NOTE: merging adds no parameters, so one set serves every row.
    params = jax.jit(ViT(**kw).init)(jax.random.key(1), images[:1])  # jitted: an eager init compiles op by op
    calls, left = {}, {}
    n = vit_tokens(args.res, args.patch, args.pool)
    for schedule, r in rows:
        model = ViT(**kw, token_merging=merging(r, schedule))
        fwd = jax.jit(model.apply)
        calls[(schedule, r)] = functools.partial(fwd, params, images)
        # NOTE: compiled here, one row at a time, so a run cut short by a time limit shows how far it got.
        jax.block_until_ready(calls[(schedule, r)]())
        print(f"# compiled schedule={schedule} r={r}", file=sys.stderr, flush=True)
        plan = vit_merges(merging(r, schedule), args.res, args.patch, args.depth, args.pool)
        left[(schedule, r)] = n - sum(plan) - (args.pool == "cls")
    # NOTE: best round, not the median: on a shared CPU the other jobs only ever add time.
    ms = interleaved_ms(calls, args.iters, stat=np.min, warmup=False)  # each call ran once above
    return {row: (1e3 * args.batch / ms[row], left[row]) for row in rows}


def zeroshot_accuracy(args, schedule: str, r: int) -> float:
    """Trains the tiny CLIP preset (shortened) with merging at r -> world zero-shot mean accuracy."""
    cfg = load_config(
        "configs/clip.py:tiny",
        [
            f"--config.train.steps={args.steps}",
            f"--config.train.batch_size={args.train_batch}",
            "--config.optim.warmup_steps=30",
            "--config.checkpoint.every=100000",
            "--config.train.log_every=50",
            "--config.data.num_threads=1",
            "--config.evals.zeroshot.n=512",
        ],
    )
    del cfg.evals["retrieval"]
    if r:
        cfg.model.image.token_merging = ml_collections.ConfigDict(merging(r, schedule))
    with tempfile.TemporaryDirectory() as workdir:
        res = loop.train_and_evaluate(cfg, workdir)
    return res["zeroshot/mean_acc"]


def off_the_shelf(args, overrides: list[str]) -> None:
    """--from_workdir: one trained checkpoint evaluated with ToMe at each r -> a table of speed and accuracy."""
    cfg = load_config(args.config, overrides)
    img = cfg.model.image
    dims = vit_dims(dict(img))
    args.width, args.depth, args.heads, args.mlp_dim = dims["width"], dims["depth"], dims["num_heads"], dims["mlp_dim"]
    patch = dims["patch_size"]
    args.patch = patch if isinstance(patch, int) else int(patch[0])
    args.res, args.pool = int(cfg.data.world.resolution), img.get("pool", "gap")
    args.stem, args.stem_channels = img.get("stem", "patch"), tuple(img.get("stem_channels", ()) or ())
    n = (args.res // args.patch) ** 2
    print(
        f"# {args.config} checkpoint in {args.from_workdir}: ViT width={args.width} depth={args.depth} "
        f"heads={args.heads} mlp={args.mlp_dim} {args.res}px/{args.patch} ({n} tokens) pool={args.pool}; "
        f"ToMe switched on at evaluation only (no retraining), schedule={args.schedule}; "
        f"fwd images/s at batch {args.batch}, {args.dtype}, backend={jax.default_backend()}"
    )
    tasks = tuple(cfg.evals.zeroshot.tasks) if "zeroshot" in cfg.evals else ()
    rows = rows_of(args, args.acc_rs)
    results = {}
    for schedule, r in rows:
        tm = merging(r, schedule)
        cfg.model.image.token_merging = ml_collections.ConfigDict(tm) if tm else None
        results[(schedule, r)] = loop.evaluate_latest(cfg, args.from_workdir, write_results=False)
        print(f"# evaluated schedule={schedule} r={r}", file=sys.stderr, flush=True)
    speed = throughput(args, rows)
    head = "| schedule | r | tokens left | fwd images/s | x r=0 | " + " | ".join(f"zero-shot {t}" for t in tasks)
    head += " | zero-shot mean | delta (points) | R@1 i->t / t->i |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    base, acc0 = speed[rows[0]][0], results[rows[0]].get("zeroshot/mean_acc", float("nan"))
    for row in rows:
        res, (ips, left) = results[row], speed[row]
        acc = res.get("zeroshot/mean_acc", float("nan"))
        per_task = " | ".join(f"{res.get(f'zeroshot/{t}_acc', float('nan')):.3f}" for t in tasks)
        r1 = f"{res.get('retrieval/i2t_r1', float('nan')):.3f} / {res.get('retrieval/t2i_r1', float('nan')):.3f}"
        print(
            f"| {row[0]} | {row[1]} | {left} | {ips:.1f} | {ips / base:.2f} | {per_task} | {acc:.3f} "
            f"| {100 * (acc - acc0):+.1f} | {r1} |",
            flush=True,
        )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--res", type=int, default=64)
    p.add_argument("--patch", type=int, default=8)
    p.add_argument("--width", type=int, default=192)
    p.add_argument("--depth", type=int, default=12)
    p.add_argument("--heads", type=int, default=3)
    p.add_argument("--mlp_dim", type=int, default=0, help="0 = 4 x width")
    p.add_argument("--pool", default="gap")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument(
        "--schedule", default="constant", help=f"merge schedules, comma-separated, each row per schedule: {SCHEDULES}"
    )
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="compute dtype of the ViT")
    p.add_argument("--rs", default="0,2,3,4", help="merge rates for the throughput rows")
    # NOTE: merged blocks add the log-size bias (proportional attention), which keeps them on the XLA
    # attention path; 'xla' everywhere makes r = 0 comparable ('auto' would give r = 0 cuDNN on a GPU).
    p.add_argument("--attention_impl", default="xla", choices=("auto", "xla", "cudnn"))
    p.add_argument(
        "--acc_rs", default="0,8,16", help="merge rates trained for accuracy (tiny CLIP: 64 tokens, 3 blocks)"
    )
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--train_batch", type=int, default=64)
    p.add_argument("--skip_accuracy", action="store_true")
    p.add_argument("--from_workdir", default="", help="evaluate this trained run with ToMe at each --acc_rs")
    p.add_argument("--config", default="configs/clip.py:tiny", help="the config --from_workdir was trained with")
    args, overrides = parse_cli(p)
    if overrides and not args.from_workdir:
        p.error("--config.* overrides only apply with --from_workdir")
    if args.from_workdir:
        off_the_shelf(args, overrides)
        return

    print(
        f"# ViT width={args.width} depth={args.depth} heads={args.heads} {args.res}px/{args.patch} "
        f"batch={args.batch} schedule={args.schedule} dtype={args.dtype} attention={args.attention_impl} "
        f"backend={jax.default_backend()}"
    )
    rows = rows_of(args, args.rs)
    speed = throughput(args, rows)
    print("| schedule | r | tokens left | fwd images/s | x first row |")
    print("|---|---|---|---|---|")
    for row in rows:
        ips, left = speed[row]
        print(f"| {row[0]} | {row[1]} | {left} | {ips:.1f} | {ips / speed[rows[0]][0]:.2f} |", flush=True)
    if args.skip_accuracy:
        return
    print(f"\n# tiny CLIP (configs/clip.py:tiny, {args.steps} steps, batch {args.train_batch}) with ToMe in the ViT")
    print("| schedule | r | zero-shot mean acc | delta vs first row (points) |")
    print("|---|---|---|---|")
    acc0 = None
    for schedule, r in rows_of(args, args.acc_rs):
        acc = zeroshot_accuracy(args, schedule, r)
        acc0 = acc if acc0 is None else acc0
        print(f"| {schedule} | {r} | {acc:.4f} | {100 * (acc - acc0):+.1f} |", flush=True)


if __name__ == "__main__":
    main()
