"""OpenCLIP scaling-law measurements (Cherti et al. 2023) and the paper's ImageNet zero-shot fits."""
import csv
from pathlib import Path

import numpy as np

from vljax.scaling.fit import PowerLawFit, fit_power_law
from vljax.scaling.frontier import fit_frontier

RESULTS_FILE = "zeroshot_results.csv"
LAION_UPSTREAMS = ("LAION-80M", "LAION-400M", "LAION-2B")
WIT_UPSTREAMS = ("CLIP-WIT",)


def load_zeroshot_points(data_dir, upstreams, *, downstream: str = "imagenet1k",
                         metric: str = "acc1") -> tuple[np.ndarray, np.ndarray]:
    """zeroshot_results.csv -> ([N] gmacs_total, [N] error = 1 - metric) for the given upstream sets."""
    path = Path(data_dir) / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"data_dir has no {RESULTS_FILE}: {path}")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and metric not in rows[0]:
        raise ValueError(f"metric {metric!r} is not a column of {path.name}; columns: {sorted(rows[0])}")
    downstreams = {r["downstream_dataset"] for r in rows}
    if downstream not in downstreams:
        raise ValueError(f"downstream {downstream!r} not in {path.name}; have {sorted(downstreams)}")
    upstreams = (upstreams,) if isinstance(upstreams, str) else tuple(upstreams)
    known = {r["upstream_dataset"] for r in rows}
    unknown = sorted(set(upstreams) - known)
    if unknown:
        raise ValueError(f"upstreams {unknown} not in {path.name}; have {sorted(known)}")
    picked = [r for r in rows if r["downstream_dataset"] == downstream
              and r["upstream_dataset"] in upstreams and r[metric] != ""]
    compute = np.array([float(r["gmacs_total"]) for r in picked])
    error = 1.0 - np.array([float(r[metric]) for r in picked])
    return compute, error


def fit_openclip_imagenet(data_dir) -> dict[str, PowerLawFit]:
    """data_dir -> {'openclip_laion', 'openai_wit'} fits of ImageNet zero-shot top-1 error vs GMACs.

    LAION (80M, 400M, 2B together): 5 equal-width log10(C) bins over [min, max + 0.1], each bin's
    minimum error at its centre, least squares in log-log space. WIT: plain least squares on its 3 points.
    """
    laion = load_zeroshot_points(data_dir, LAION_UPSTREAMS)
    wit = load_zeroshot_points(data_dir, WIT_UPSTREAMS)
    return {"openclip_laion": fit_frontier(*laion, n_bins=5, pad=0.1, method="ols"),
            "openai_wit": fit_power_law(*wit, method="ols")}
