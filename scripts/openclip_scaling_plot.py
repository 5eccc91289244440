#!/usr/bin/env python3
"""Fits the OpenCLIP ImageNet zero-shot scaling laws (Cherti et al. 2023) and plots them with bootstrap bands.

  .venv/bin/python scripts/openclip_scaling_plot.py [--data_dir ../shared/data/openclip_scaling]
      [--out docs/img/openclip_imagenet_scaling.png] [--n_boot 2000] [--level 0.9] [--seed 0]
"""
import argparse
import functools
from pathlib import Path

from vljax.scaling import (FitSeries, bootstrap_fit, compare_exponents, fit_frontier,
                           fit_openclip_imagenet, frontier_points, load_zeroshot_points, plot_fits)
from vljax.scaling.openclip import LAION_UPSTREAMS, WIT_UPSTREAMS

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    """Prints the fits, their CIs and a LAION-2B vs LAION-80M exponent comparison; writes the PNG."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", type=Path, default=ROOT.parent / "shared" / "data" / "openclip_scaling")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "openclip_imagenet_scaling.png")
    parser.add_argument("--n_boot", type=int, default=2000)
    parser.add_argument("--level", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    fits = fit_openclip_imagenet(args.data_dir)
    laion = load_zeroshot_points(args.data_dir, LAION_UPSTREAMS)
    wit = load_zeroshot_points(args.data_dir, WIT_UPSTREAMS)
    frontier = functools.partial(fit_frontier, n_bins=5, pad=0.1)
    # NOTE: only LAION gets a band: resampling WIT's 3 points with replacement is not a meaningful bootstrap.
    boot = bootstrap_fit(*laion, frontier, n_boot=args.n_boot, level=args.level, seed=args.seed)
    assert boot.fit == fits["openclip_laion"]
    for name, fit in fits.items():
        print(f"{name:15s} E = {fit.b:.2f} * C^{fit.a:.2f}  (a={fit.a:.4f}, b={fit.b:.4f}, "
              f"n={fit.n_points}, rmse_log10={fit.rmse_log10:.4f})")
    pct = f"{100 * args.level:.0f}%"
    print(f"openclip_laion  {pct} bootstrap CI (n_boot={args.n_boot}, seed={args.seed}): "
          f"a in [{boot.interval('a')[0]:.4f}, {boot.interval('a')[1]:.4f}], "
          f"b in [{boot.interval('b')[0]:.3f}, {boot.interval('b')[1]:.3f}]")

    big = load_zeroshot_points(args.data_dir, "LAION-2B")
    small = load_zeroshot_points(args.data_dir, "LAION-80M")
    cmp = compare_exponents(big, small, frontier, n_boot=args.n_boot, level=args.level, seed=args.seed)
    print(f"a(LAION-2B) - a(LAION-80M) = {cmp.diff:.4f}, {pct} CI [{cmp.ci[0]:.4f}, {cmp.ci[1]:.4f}], "
          f"significant={cmp.significant}, p={cmp.p_value:.3f}")

    out = plot_fits(
        args.out,
        [FitSeries("OpenCLIP (LAION)", *laion, fits["openclip_laion"], boot,
                   highlight=frontier_points(*laion, n_bins=5, pad=0.1)),
         FitSeries("OpenAI CLIP (WIT)", *wit, fits["openai_wit"])],
        title="ImageNet zero-shot top-1 error vs compute (Cherti et al. 2023 data)",
        xlabel="total compute C [GMACs]", ylabel="error E = 1 - top-1", extend=2.0)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
