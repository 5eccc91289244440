"""FLOPs of a compiled step and model FLOPs utilization (MFU) against a per-device peak table."""
from __future__ import annotations

import jax

# Dense bf16 peak FLOP/s per device (vendor figures). NOTE: matched by substring of
# jax.Device.device_kind; CPUs have no entry, so MFU is reported only when known or
# when config.train.peak_flops_per_device is set.
PEAK_FLOPS = (
    ("H200", 989e12),
    ("H100", 989e12),
    ("A100", 312e12),
    ("L4", 121e12),
    ("TPU v6", 918e12),
    ("TPU v5p", 459e12),
    ("TPU v5 lite", 197e12),
    ("TPU v5e", 197e12),
    ("TPU v4", 275e12),
    ("TPU v3", 123e12),
)


def peak_flops_per_device(device: jax.Device | None = None, override: float | None = None) -> float | None:
    """Peak FLOP/s of one device from the table (or the override), None when unknown."""
    if override:
        return float(override)
    kind = (device or jax.devices()[0]).device_kind
    for name, peak in PEAK_FLOPS:
        if name.lower() in kind.lower():
            return peak
    return None


def compiled_flops(compiled) -> float | None:
    """FLOPs of one call of a compiled jax function (XLA cost analysis; per device under SPMD)."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - some backends do not implement it
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"])


def analytic_step_flops(cfg, method=None, n_devices: int = 1) -> float | None:
    """Per-device training FLOPs of one step from the method's analytic count; None if it has none.

    A method opts in with `train_flops_per_example(config) -> float` (CLIP/SigLIP: the two-tower count of
    vljax.experiments.flops; FILIP adds its token projections and token-wise similarity).
    """
    count = getattr(method, "train_flops_per_example", None)
    if count is None:
        return None
    return count(cfg) * int(cfg.train.batch_size) / max(1, int(n_devices))


def step_flops(cfg, compiled, method=None, n_devices: int = 1) -> float | None:
    """Per-device FLOPs of one train step for MFU: the method's analytic count when it has one, else XLA's.

    XLA's cost analysis leaves out work done in library calls: on an H200 it reported 6.6e12 FLOPs for a
    ViT-B/16 CLIP step at batch 1024 whose matmuls alone are 1.15e14 (docs/performance.md), so it is the
    fallback for methods without an analytic count.
    """
    analytic = analytic_step_flops(cfg, method, n_devices)
    return analytic if analytic is not None else compiled_flops(compiled)
