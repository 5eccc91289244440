"""Bootstrap test of whether two scaling exponents differ: CI of a_A - a_B."""
import dataclasses

import numpy as np

from vljax.scaling.bootstrap import (FitFn, check_level, check_n_boot, percentile_interval,
                                     resample_fits)
from vljax.scaling.fit import fit_power_law
from vljax.scaling.points import as_points


@dataclasses.dataclass(frozen=True)
class ExponentComparison:
    """a_A - a_B on the full data, its percentile CI from [n_boot] resampled differences, and the verdict."""
    diff: float
    ci: tuple[float, float]
    level: float
    significant: bool
    p_value: float
    paired: bool
    diffs: np.ndarray


def compare_exponents(data_a, data_b, fit_fn: FitFn = fit_power_law, *, paired: bool = False,
                      n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> ExponentComparison:
    """(compute [Na], error [Na]) x (compute [Nb], error [Nb]) -> bootstrap CI of a_A - a_B.

    paired=True resamples the same row indices in both sets (rows must correspond, e.g. the same
    model/data configurations trained two ways); otherwise each set is resampled independently.
    The difference is significant when 0 lies outside the CI.
    """
    ca, ea = as_points(*data_a)
    cb, eb = as_points(*data_b)
    check_level(level)
    check_n_boot(n_boot)
    if paired and ca.shape != cb.shape:
        raise ValueError(
            f"paired=True needs data_a and data_b of equal length, got {ca.shape[0]} and {cb.shape[0]}")
    diff = fit_fn(ca, ea).a - fit_fn(cb, eb).a
    rng = np.random.default_rng(seed)
    if paired:
        diffs = resample_fits(
            ca.shape[0], lambda i: fit_fn(ca[i], ea[i]).a - fit_fn(cb[i], eb[i]).a, n_boot, rng)
    else:
        fa = resample_fits(ca.shape[0], lambda i: fit_fn(ca[i], ea[i]).a, n_boot, rng)
        fb = resample_fits(cb.shape[0], lambda i: fit_fn(cb[i], eb[i]).a, n_boot, rng)
        diffs = np.subtract(fa, fb)
    diffs = np.asarray(diffs, dtype=np.float64)
    lo, hi = percentile_interval(diffs, level)
    # NOTE: the two-sided bootstrap p-value is the smallest level-complement whose percentile CI
    # touches 0, so `significant` and `p_value < 1 - level` agree up to percentile interpolation.
    p_value = float(min(1.0, 2.0 * min(np.mean(diffs <= 0.0), np.mean(diffs >= 0.0))))
    return ExponentComparison(diff=float(diff), ci=(lo, hi), level=level,
                              significant=bool(lo > 0.0 or hi < 0.0), p_value=p_value,
                              paired=paired, diffs=diffs)
