"""Power-law fits of error against compute: E = b * C^a and E = e + b * C^a."""
import dataclasses

import numpy as np
from scipy import optimize, stats

from vljax.scaling.points import as_points, check_distinct

POWER_LAW_METHODS = ("ols", "huber", "theil_sen")

# NOTE: 1.345 is the classic Huber tuning constant (95% efficiency under Gaussian noise);
# 1.4826 turns a median absolute deviation into a Gaussian standard deviation.
_HUBER_K = 1.345
_MAD_TO_SIGMA = 1.4826


@dataclasses.dataclass(frozen=True)
class PowerLawFit:
    """A fitted law E = e + b * C^a with residual statistics measured in log10(E)."""
    a: float
    b: float
    e: float
    method: str
    n_points: int
    rmse_log10: float
    max_abs_residual_log10: float
    r2_log10: float

    def predict(self, compute) -> np.ndarray:
        """[N] compute -> [N] predicted error e + b * C^a."""
        log_c = np.log(np.asarray(compute, dtype=np.float64))
        return self.e + np.exp(np.log(self.b) + self.a * log_c)


def _finish(a, b, e, method, compute, error) -> PowerLawFit:
    pred = e + np.exp(np.log(b) + a * np.log(compute))
    y = np.log10(error)
    resid = y - np.log10(pred)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else float("nan")
    return PowerLawFit(
        a=float(a), b=float(b), e=float(e), method=method, n_points=int(compute.shape[0]),
        rmse_log10=float(np.sqrt(np.mean(resid**2))),
        max_abs_residual_log10=float(np.max(np.abs(resid))), r2_log10=r2)


def _line_ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    xm, ym = x.mean(), y.mean()
    slope = float(np.sum((x - xm) * (y - ym)) / np.sum((x - xm) ** 2))
    return slope, float(ym - slope * xm)


def _line_huber(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    # NOTE: start and scale come from Theil-Sen, not OLS: OLS residuals are already bent by
    # the outliers, which inflates their MAD and makes the Huber loss quadratic for them too.
    slope0, icpt0, _, _ = stats.theilslopes(y, x)
    resid0 = y - (icpt0 + slope0 * x)
    mad = float(np.median(np.abs(resid0 - np.median(resid0))))
    # NOTE: a perfect fit has MAD 0; a tiny floor keeps least_squares well defined.
    f_scale = max(_HUBER_K * _MAD_TO_SIGMA * mad, 1e-8)
    xm = x.mean()  # NOTE: centring decouples slope and intercept, so the solver converges fast.
    res = optimize.least_squares(
        lambda p: y - (p[1] + p[0] * (x - xm)), x0=[slope0, icpt0 + slope0 * xm],
        loss="huber", f_scale=f_scale, method="trf")
    slope, icpt_c = res.x
    return float(slope), float(icpt_c - slope * xm)


def fit_power_law(compute, error, *, method: str = "ols") -> PowerLawFit:
    """[N] compute x [N] error -> E = b * C^a fitted as a line in log10-log10 space."""
    c, e = as_points(compute, error)
    check_distinct(c, 2)
    x, y = np.log10(c), np.log10(e)
    if method == "ols":
        slope, icpt = _line_ols(x, y)
    elif method == "huber":
        slope, icpt = _line_huber(x, y)
    elif method == "theil_sen":
        slope, icpt, _, _ = stats.theilslopes(y, x)
    else:
        raise ValueError(f"method must be one of {POWER_LAW_METHODS}, got {method!r}")
    return _finish(slope, 10.0**icpt, 0.0, method, c, e)


def fit_saturating(compute, error, *, max_exponent: float = 5.0) -> PowerLawFit:
    """[N] compute x [N] error -> E = e + b * C^a by bounded least squares on log10(E).

    Bounds: -max_exponent <= a <= 0 (error falls with compute) and 0 <= e <= min(E).
    """
    c, err = as_points(compute, error, min_points=3)
    check_distinct(c, 3)
    if max_exponent <= 0:
        raise ValueError(f"max_exponent must be positive, got {max_exponent}")
    # NOTE: compute spans ~1e9..1e13 GMACs in practice; working with C / C_ref (geometric mean)
    # keeps the prefactor near 1 and the Jacobian well conditioned.
    log_ref = float(np.mean(np.log10(c)))
    xn = np.log10(c) - log_ref
    y = np.log10(err)
    e_max = float(err.min())

    def resid(p):
        a, lb, e0 = p
        return y - np.log10(e0 + 10.0 ** (lb + a * xn))

    lower, upper = [-max_exponent, -12.0, 0.0], [0.0, 12.0, e_max]
    best = None
    # NOTE: the asymptote e is the poorly determined parameter; a few starts below the best
    # observed error avoid the local minimum at e = 0 when the curve visibly flattens.
    for frac in (0.0, 0.5, 0.9):
        e_init = frac * e_max
        a_init, lb_init = _line_ols(xn, np.log10(err - e_init))
        x0 = np.clip([a_init, lb_init, e_init], np.add(lower, 1e-9), np.subtract(upper, 1e-9))
        res = optimize.least_squares(resid, x0=x0, bounds=(lower, upper), method="trf",
                                     x_scale=[1.0, 1.0, e_max])
        if best is None or res.cost < best.cost:
            best = res
    a, lb, e0 = best.x
    b = 10.0 ** (lb - a * log_ref)
    return _finish(a, b, e0, "saturating", c, err)
