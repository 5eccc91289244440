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


def analytic_step_flops(cfg, n_devices: int = 1) -> float | None:
    """Per-device training FLOPs of one step from the analytic two-tower count; None without both towers.

    Counts matmuls, attention and the contrastive logits (vljax.experiments.flops.two_tower_flops),
    not method extras such as FILIP's token-wise similarity.
    """
    from vljax.experiments import flops as analytic

    model = cfg.get("model")
    if model is None or model.get("image") is None or model.get("text") is None:
        return None
    batch = int(cfg.train.batch_size)
    try:
        per_example = analytic.two_tower_flops(cfg, batch_size=batch).train
    except (KeyError, AttributeError, TypeError, ValueError):
        return None
    return per_example * batch / max(1, int(n_devices))


def step_flops(cfg, compiled, n_devices: int = 1) -> float | None:
    """Per-device FLOPs of one train step for MFU: the analytic count when the config has one, else XLA's.

    XLA's cost analysis leaves out work done in library calls: on an H200 it reported 6.6e12 FLOPs for a
    ViT-B/16 CLIP step at batch 1024 whose matmuls alone are 1.15e14 (docs/performance.md), so it is the
    fallback for models without an analytic count.
    """
    analytic = analytic_step_flops(cfg, n_devices)
    return analytic if analytic is not None else compiled_flops(compiled)
