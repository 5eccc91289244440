"""Shared pieces of the benchmarks (dense_layout, mlp_layout, cpu_scaling, token_merging): flags, interleaved timing."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

import numpy as np


def parse_cases(doc: str, cases: Sequence[str], argv=None) -> tuple[argparse.Namespace, list[str]]:
    """--reps N --cases a,b -> (flags, the chosen case names); an unknown case exits naming the available ones."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--cases", default=",".join(cases))
    flags = p.parse_args(argv)
    chosen = [c for c in flags.cases.split(",") if c]
    unknown = [c for c in chosen if c not in cases]
    if unknown:
        p.error(f"unknown cases {unknown}; available: {sorted(cases)}")
    return flags, chosen


def header(reps: int) -> str:
    """The line that names the machine the table was measured on."""
    import jax

    return (
        f"jax {jax.__version__}, {jax.device_count()} x {jax.devices()[0].platform}, float32, fwd+bwd, median of {reps}"
    )


def interleaved_ms(
    calls: dict[str, Callable[[], object]], reps: int, stat=np.median, warmup: bool = True
) -> dict[str, float]:
    """{name: call} -> {name: `stat` (median) of ms}: one warm-up each (unless the caller did it), then `reps` rounds
    calling each once in turn.

    NOTE: interleaved, so a load drift on a shared machine hits every variant alike. A call may return jax arrays
    (waited for) or anything else (a PyTorch call, already finished when it returns).
    """
    import jax

    for call in calls.values() if warmup else ():
        jax.block_until_ready(call())
    times = {name: [] for name in calls}
    for _ in range(reps):
        for name, call in calls.items():
            t0 = time.perf_counter()
            jax.block_until_ready(call())
            times[name].append(time.perf_counter() - t0)
    return {name: 1e3 * float(stat(ts)) for name, ts in times.items()}
