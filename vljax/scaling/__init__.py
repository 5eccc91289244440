"""Scaling laws: power-law fits, bootstrap CIs, exponent comparison, plots, OpenCLIP reference data."""
from vljax.scaling.bootstrap import BootstrapResult, bootstrap_fit
from vljax.scaling.compare import ExponentComparison, compare_exponents
from vljax.scaling.fit import POWER_LAW_METHODS, PowerLawFit, fit_power_law, fit_saturating
from vljax.scaling.frontier import fit_frontier, frontier_points
from vljax.scaling.openclip import fit_openclip_imagenet, load_zeroshot_points
from vljax.scaling.plot import FitSeries, plot_fits

__all__ = [
    "BootstrapResult", "ExponentComparison", "FitSeries", "POWER_LAW_METHODS", "PowerLawFit",
    "bootstrap_fit", "compare_exponents", "fit_frontier", "fit_openclip_imagenet", "fit_power_law",
    "fit_saturating", "frontier_points", "load_zeroshot_points", "plot_fits",
]
