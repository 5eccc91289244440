"""Binned-minimum (compute-frontier) fit, as in Cherti et al. 2023 (reproducible CLIP scaling laws)."""
import dataclasses

import numpy as np

from vljax.scaling.fit import PowerLawFit, fit_power_law
from vljax.scaling.points import as_points


def frontier_points(compute, error, *, n_bins: int = 5, pad: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """[N] compute x [N] error -> ([K], [K]) bin-centre compute and best error per non-empty bin, K <= n_bins.

    log10(C) is split into n_bins equal-width bins over [min, max + pad] (pad in decades).
    """
    c, e = as_points(compute, error, min_points=1)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    x = np.log10(c)
    lo, hi = float(x.min()), float(x.max()) + pad
    if hi <= lo:
        raise ValueError("compute has a single value and pad=0: the bins have zero width")
    edges = np.linspace(lo, hi, n_bins + 1)
    # NOTE: same convention as numpy.histogram: half-open bins, the last one closed.
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, n_bins - 1)
    centres, best = [], []
    for k in range(n_bins):
        in_bin = idx == k
        if in_bin.any():
            centres.append(0.5 * (edges[k] + edges[k + 1]))
            best.append(float(np.log10(e[in_bin]).min()))
    return 10.0 ** np.asarray(centres), 10.0 ** np.asarray(best)


def fit_frontier(compute, error, *, n_bins: int = 5, pad: float = 0.1, method: str = "ols") -> PowerLawFit:
    """[N] compute x [N] error -> E = b * C^a fitted to the per-bin minimum errors."""
    fc, fe = frontier_points(compute, error, n_bins=n_bins, pad=pad)
    fit = fit_power_law(fc, fe, method=method)
    return dataclasses.replace(fit, method=f"frontier_{method}")
