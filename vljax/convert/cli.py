"""`vljax convert`: checkpoints from hf / open_clip / big_vision / vljax folders to vljax or hf folders.

vljax convert --from hf --src /ckpt/clip-vit-b32 --dst /out/clip            # -> vljax folder
vljax convert --from open_clip --src ViT-B-32.pt --dst /out/clip --image_heads 12 --text_heads 8
vljax convert --from big_vision --src siglip.npz --dst /out/siglip --dtype bfloat16
vljax convert --from vljax --src /out/clip --to hf --dst /out/clip-hf       # export for transformers
"""

from __future__ import annotations

import argparse
import sys

SOURCES = ("hf", "open_clip", "big_vision", "vljax")
TARGETS = ("vljax", "hf")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Adds the convert flags to a (sub)parser."""
    p.add_argument("--from", dest="src_format", required=True, choices=SOURCES, help="source format")
    p.add_argument("--src", required=True, help="HF folder, open_clip .pt, big_vision .npz or vljax folder")
    p.add_argument("--dst", required=True, help="output folder")
    p.add_argument("--to", dest="dst_format", default="vljax", choices=TARGETS, help="output format")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="param dtype")
    p.add_argument("--arch", default=None, help="HF architecture for --to hf (default: the source's)")
    p.add_argument("--image_heads", type=int, default=None, help="open_clip: vision heads (default width/64)")
    p.add_argument("--text_heads", type=int, default=None, help="open_clip: text heads (default width/64)")


def load(fmt: str, src: str, mesh=None, *, dtype: str = "float32", rules=None, prefixes=None, **overrides):
    """(format, path) -> hf.Converted with sharded params."""
    if fmt == "hf":
        from vljax.convert.hf import load_hf

        return load_hf(src, mesh, dtype=dtype, rules=rules, prefixes=prefixes)
    if fmt == "open_clip":
        from vljax.convert.open_clip import load_open_clip

        return load_open_clip(
            src,
            mesh,
            dtype=dtype,
            rules=rules,
            prefixes=prefixes,
            **{k: v for k, v in overrides.items() if v is not None},
        )
    if fmt == "big_vision":
        from vljax.convert.big_vision import load_big_vision

        return load_big_vision(src, mesh, dtype=dtype, rules=rules, prefixes=prefixes)
    if fmt == "vljax":
        from vljax.convert.store import load_vljax

        return load_vljax(src, mesh, dtype=dtype, rules=rules, prefixes=prefixes)
    raise ValueError(f"format {fmt!r} is not one of {SOURCES}")


def run(args: argparse.Namespace) -> int:
    """Runs one conversion from parsed flags; returns the exit code."""
    from vljax.convert.common import ConversionError

    try:
        conv = load(
            args.src_format, args.src, dtype=args.dtype, image_heads=args.image_heads, text_heads=args.text_heads
        )
        if args.dst_format == "hf":
            from vljax.convert.hf import save_hf

            save_hf(conv.params, conv.model_config, args.arch or conv.arch, args.dst)
        else:
            from vljax.convert.store import save_vljax

            save_vljax(conv, args.dst)
    except (ConversionError, FileNotFoundError) as e:
        print(f"vljax convert: {e}", file=sys.stderr)
        return 2
    print(f"vljax convert: {args.src_format}:{args.src} -> {args.dst_format}:{args.dst} ({conv.arch})")
    return 0
