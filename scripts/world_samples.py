"""Writes docs/img/world_*.png: grids of world samples with their captions, and prints the field table.

Usage: .venv/bin/python scripts/world_samples.py [--out docs/img] [--table]
"""
from __future__ import annotations

import argparse
import os
import textwrap
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vljax.data import world  # noqa: E402
from vljax.data.world import concepts  # noqa: E402


def describe(ex: dict) -> str:
    """Sample -> its short caption, or a ground-truth listing when the language module is absent."""
    for key in ("captions/short", "caption"):
        if isinstance(ex.get(key), str) and ex[key]:
            return ex[key]
    parts = []
    for k in np.flatnonzero(ex["objects/valid"]):
        parts.append(f"{concepts.SIZES[ex['objects/size'][k]]} {concepts.COLORS[ex['objects/color'][k]]} "
                     f"{concepts.TEXTURES[ex['objects/texture'][k]]} {concepts.SHAPES[ex['objects/shape'][k]]}")
    return "; ".join(parts)


def grid(w: world.World, split: str, n: int, path: str, title: str,
         fields=("image", "boxes", "captions/short")) -> None:
    """Renders n samples of `split` in a grid with captions below each image."""
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 4.2 * rows))
    for k, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if k >= n:
            continue
        ex = w.sample(split, k, fields=fields)
        ax.imshow(ex["image"], interpolation="nearest")
        ax.set_title("\n".join(textwrap.wrap(describe(ex), 34)[:6]), fontsize=7, y=-0.02, va="top")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def strips(rows: list, path: str, title: str) -> None:
    """rows of (label, uint8 [T,H,W,3] clip) -> one figure, a row of frames per clip, label on the left."""
    t_n = max(len(v) for _, v in rows)
    fig, axes = plt.subplots(len(rows), t_n, figsize=(1.3 * t_n, 1.5 * len(rows)), squeeze=False)
    for (label, clip), row in zip(rows, axes):
        for t, ax in enumerate(row):
            ax.axis("off")
            if t < len(clip):
                ax.imshow(clip[t], interpolation="nearest")
        row[0].set_title("\n".join(textwrap.wrap(label, 60)[:2]), fontsize=7, loc="left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def video_strips(out: str) -> None:
    """Writes world_surgical.png (one surgical clip per level) and world_pairs.png (UniVid pair/* tasks)."""
    surg = world.World(world.get_config("surgical"))
    rows, levels = [], set()
    for i in range(64):
        ex = surg.sample("train", i, ("video", "caption"))
        lvl = int(ex["clip/level"])
        if ex["flags/is_surgical_content"] and lvl not in levels:
            levels.add(lvl)
            rows.append((f"[{('phase', 'step', 'task')[lvl]}, train {i}] {ex['caption']}", ex["video"]))
    strips(sorted(rows), os.path.join(out, "world_surgical.png"), "surgical preset: one clip per caption level")
    vid = world.World(world.get_config("video")).variant(**{"video.frames": 5})
    rows, tasks = [], set()
    for i in range(40):
        ex = vid.sample("train", i, ("pair",))
        if ex["pair/task"] not in tasks:
            tasks.add(ex["pair/task"])
            rows += [(f"pair/{ex['pair/task']} source (train {i})", ex["pair/source"]),
                     (f"pair/{ex['pair/task']} target", ex["pair/target"])]
    strips(rows, os.path.join(out, "world_pairs.png"), "UniVid pair/* (5 frames, 64 px)")


def field_table(w: world.World, fields) -> str:
    """-> markdown table of every field of `w.spec(fields)`."""
    lines = ["| path | dtype | shape |", "|---|---|---|"]
    for k, (shape, dtype) in sorted(w.spec(fields).items()):
        name = "str" if dtype is str else np.dtype(dtype).name
        lines.append(f"| `{k}` | {name} | {list(shape)} |")
    return "\n".join(lines)


def main() -> None:
    """CLI entry point."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/img")
    ap.add_argument("--table", action="store_true", help="print the field table of image64")
    args = ap.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)
    os.makedirs(args.out, exist_ok=True)
    base = world.World(world.get_config("image64"))
    grid(base, "train", 8, os.path.join(args.out, "world_image64.png"), "image64, split train")
    rich = base.variant(**{"resolution": 128, "objects.textures": ("solid", "striped", "dotted", "checkered",
                                                                   "ringed", "noisy", "outlined"),
                           "objects.shapes": 13, "objects.rotation": True, "marks.kind": "any",
                           "background": "gradient", "layout.mode": "free", "layout.max_overlap": 0.2,
                           "objects.count": (3, 6)})
    grid(rich, "train", 8, os.path.join(args.out, "world_rich128.png"),
         "128 px: 13 shapes, textures, marks, rotation, free layout, gradient")
    for preset in ("medical64", "aerial64"):
        # NOTE: domain worlds show `caption` (medical: the report; aerial: the scene caption).
        grid(world.World(world.get_config(preset)), "train", 8, os.path.join(args.out, f"world_{preset}.png"),
             f"{preset}, split train", fields=("image", "caption"))
    styles = [base.variant(style=s, background="color") for s in concepts.STYLES]
    fig, axes = plt.subplots(1, len(styles), figsize=(3 * len(styles), 3.2))
    for ax, s, w in zip(axes, concepts.STYLES, styles):
        ax.imshow(w.sample("val", 3, fields=("image",))["image"], interpolation="nearest")
        ax.set_title(s, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "world_styles.png"), dpi=100)
    plt.close(fig)
    video_strips(args.out)
    if args.table:
        print(field_table(base, ("image", "boxes", "masks", "instance_map")))


if __name__ == "__main__":
    main()
