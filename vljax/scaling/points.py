"""Validation of (compute, error) measurements shared by every scaling fit."""
import numpy as np


def as_points(compute, error, *, min_points: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """[N] x [N] -> ([N], [N]) float64 compute and error, checked positive, finite and paired."""
    c = np.asarray(compute, dtype=np.float64)
    e = np.asarray(error, dtype=np.float64)
    for name, arr in (("compute", c), ("error", e)):
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must be finite")
        if np.any(arr <= 0):
            raise ValueError(f"{name} must be strictly positive (the fits work in log space)")
    if c.shape != e.shape:
        raise ValueError(f"compute and error must have the same length, got {c.shape[0]} and {e.shape[0]}")
    if c.shape[0] < min_points:
        raise ValueError(f"need at least {min_points} points, got {c.shape[0]}")
    return c, e


def check_distinct(compute: np.ndarray, needed: int) -> None:
    """[N] compute -> None; raises ValueError when fewer than `needed` distinct values exist."""
    distinct = np.unique(compute).shape[0]
    if distinct < needed:
        raise ValueError(f"compute needs at least {needed} distinct values for this fit, got {distinct}")
