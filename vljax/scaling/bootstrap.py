"""Seeded nonparametric bootstrap of scaling-law fits: percentile CIs and prediction bands."""
import dataclasses
from typing import Callable

import numpy as np

from vljax.scaling.fit import PowerLawFit, fit_power_law
from vljax.scaling.points import as_points

FitFn = Callable[[np.ndarray, np.ndarray], PowerLawFit]

# NOTE: a resample can be degenerate (e.g. every draw at one compute value); such draws are
# redrawn, and this many redraws per requested sample means the data cannot support the fit.
_MAX_REDRAWS_PER_SAMPLE = 20


def check_level(level: float) -> None:
    """Raises ValueError unless 0 < level < 1."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def check_n_boot(n_boot: int) -> None:
    """Raises ValueError unless n_boot >= 2."""
    if int(n_boot) != n_boot or n_boot < 2:
        raise ValueError(f"n_boot must be an integer >= 2, got {n_boot}")


def percentile_interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    """[S] samples -> (lo, hi) central percentile interval holding `level` of the mass."""
    tail = 50.0 * (1.0 - level)
    lo, hi = np.percentile(samples, [tail, 100.0 - tail])
    return float(lo), float(hi)


def resample_fits(n_points: int, fit_indices: Callable[[np.ndarray], object], n_boot: int,
                  rng: np.random.Generator) -> list:
    """n_points, ([N] indices -> fit) -> n_boot fits on index resamples drawn with replacement."""
    out, redraws = [], 0
    while len(out) < n_boot:
        idx = rng.integers(0, n_points, size=n_points)
        try:
            out.append(fit_indices(idx))
        except ValueError:
            redraws += 1
            if redraws > _MAX_REDRAWS_PER_SAMPLE * n_boot:
                raise RuntimeError(
                    f"{redraws} bootstrap resamples of {n_points} points could not be fitted; "
                    "too few distinct points for this fit") from None
    return out


@dataclasses.dataclass(frozen=True)
class BootstrapResult:
    """Full-data fit plus [n_boot] resampled coefficients a, b, e at a CI level."""
    fit: PowerLawFit
    a: np.ndarray
    b: np.ndarray
    e: np.ndarray
    level: float

    def interval(self, name: str) -> tuple[float, float]:
        """'a' | 'b' | 'e' -> (lo, hi) percentile CI of that coefficient."""
        if name not in ("a", "b", "e"):
            raise ValueError(f"name must be 'a', 'b' or 'e', got {name!r}")
        return percentile_interval(getattr(self, name), self.level)

    def band(self, compute) -> tuple[np.ndarray, np.ndarray]:
        """[M] compute -> ([M], [M]) pointwise percentile band of the predicted error."""
        log_c = np.log(np.asarray(compute, dtype=np.float64))
        preds = self.e[:, None] + np.exp(np.log(self.b)[:, None] + self.a[:, None] * log_c[None, :])
        tail = 50.0 * (1.0 - self.level)
        lo, hi = np.percentile(preds, [tail, 100.0 - tail], axis=0)
        return lo, hi


def bootstrap_fit(compute, error, fit_fn: FitFn = fit_power_law, *, n_boot: int = 1000,
                  level: float = 0.95, seed: int = 0) -> BootstrapResult:
    """[N] compute x [N] error -> BootstrapResult from refitting fit_fn on points drawn with replacement."""
    c, e = as_points(compute, error)
    check_level(level)
    check_n_boot(n_boot)
    fit = fit_fn(c, e)
    rng = np.random.default_rng(seed)
    fits = resample_fits(c.shape[0], lambda idx: fit_fn(c[idx], e[idx]), n_boot, rng)
    return BootstrapResult(
        fit=fit, a=np.array([f.a for f in fits]), b=np.array([f.b for f in fits]),
        e=np.array([f.e for f in fits]), level=level)
