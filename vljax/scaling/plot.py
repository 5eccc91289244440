"""Log-log plots of measurements, fitted scaling laws and their bootstrap bands (PNG, Agg)."""
import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vljax.scaling.bootstrap import BootstrapResult
from vljax.scaling.fit import PowerLawFit
from vljax.scaling.points import as_points


@dataclasses.dataclass(frozen=True)
class FitSeries:
    """One curve: [N] measured compute and error, its fit, and optionally a bootstrap band."""
    label: str
    compute: np.ndarray
    error: np.ndarray
    fit: PowerLawFit
    bootstrap: BootstrapResult | None = None
    highlight: tuple[np.ndarray, np.ndarray] | None = None  # e.g. the frontier points actually fitted


def law_label(fit: PowerLawFit, bootstrap: BootstrapResult | None = None) -> str:
    """PowerLawFit -> legend text like 'E = 5.86·C^-0.11  (90% CI of a: [-0.134, -0.092])'."""
    b = f"{fit.b:.2f}" if 0.01 <= fit.b < 1e4 else f"{fit.b:.3g}"
    text = f"E = {b}·C^{fit.a:.2f}"
    if fit.e > 0:
        text = f"E = {fit.e:.3g} + {b}·C^{fit.a:.2f}"
    if bootstrap is not None:
        lo, hi = bootstrap.interval("a")
        text += f"  ({100 * bootstrap.level:.0f}% CI of a: [{lo:.3f}, {hi:.3f}])"
    return text


def plot_fits(path, series: Sequence[FitSeries], *, title: str = "", xlabel: str = "compute C",
              ylabel: str = "error E", extend: float = 1.0, dpi: int = 120) -> Path:
    """Writes a log-log PNG of each series' points, fitted curve and CI band; returns the path.

    extend: factor by which the curves run past the data on both sides (1.0 = data range only).
    """
    if not series:
        raise ValueError("series must hold at least one FitSeries")
    if extend < 1.0:
        raise ValueError(f"extend must be >= 1, got {extend}")
    path = Path(path)
    fig = Figure(figsize=(7.0, 4.2 + 0.22 * 3 * len(series)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for i, s in enumerate(series):
        c, e = as_points(s.compute, s.error, min_points=1)
        color = f"C{i}"
        grid = np.geomspace(c.min() / extend, c.max() * extend, 200)
        if s.bootstrap is not None:
            lo, hi = s.bootstrap.band(grid)
            ax.fill_between(grid, lo, hi, color=color, alpha=0.2, linewidth=0)
        ax.scatter(c, e, s=14, color=color, alpha=0.6, label=f"{s.label} (measurements)")
        if s.highlight is not None:
            ax.scatter(*s.highlight, s=48, marker="D", facecolor="none", edgecolor=color,
                       label=f"{s.label} (fitted points)")
        ax.plot(grid, s.fit.predict(grid), color=color, linewidth=1.8,
                label=f"{s.label}: {law_label(s.fit, s.bootstrap)}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    # NOTE: a short error range spans less than a decade; plain tick labels beat 4x10^-1.
    ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%.2g"))
    ax.yaxis.set_minor_formatter(ticker.FormatStrFormatter("%.2g"))
    ax.grid(True, which="both", alpha=0.3)
    # NOTE: below the axes, so the legend never hides measurements.
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
