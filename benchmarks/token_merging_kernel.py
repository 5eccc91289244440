"""ToMe matching step: Pallas kernel (best partner + rank by counting) vs the argsort reference.

  python benchmarks/token_merging_kernel.py
  python benchmarks/token_merging_kernel.py --size 64,257,64 --r 19
The kernel is the Triton one (match_pallas) on GPU and CPU, the Mosaic one (match_mosaic) on TPU; each size
first checks that the kernel's partners and ranks equal the reference's. On CPU the kernel runs in interpret
mode, so its time measures the emulator, not the kernel.
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from vljax.kernels import token_merging as tm

DEFAULT_SIZES = ((8, 65, 64), (32, 197, 64), (32, 257, 64), (16, 577, 64))


def _parse_size(text):
    """'B,N,C' -> (B, N, C)."""
    size = tuple(int(x) for x in text.split(","))
    if len(size) != 3:
        raise argparse.ArgumentTypeError(f"--size wants B,N,C, got {text!r}")
    return size


def _median_seconds(fn, args, iters):
    """Jitted fn -> median wall seconds per call after one warmup call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    """Parses flags, times both matching paths (and the full plan) per size, prints a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=_parse_size, action="append", help="B,N,C (repeatable)")
    parser.add_argument("--r", type=int, default=16)
    parser.add_argument("--iters", type=int, default=10)
    flags = parser.parse_args()
    backend = jax.default_backend()
    tag = " (interpret)" if backend not in ("gpu", "tpu") else ""
    kernel = tm.match_mosaic if backend == "tpu" else tm.match_pallas
    print(f"backend={backend} r={flags.r} iters={flags.iters} kernel={kernel.__name__}")
    print("| B, N, C | reference match ms | pallas match ms | x reference | reference plan ms | pallas plan ms |")
    print("|---|---|---|---|---|---|")
    for b, n, c in flags.size or DEFAULT_SIZES:
        metric = jax.random.normal(jax.random.key(0), (b, n, c), jnp.float32)
        want, got = jax.jit(tm.match_reference)(metric), jax.jit(kernel)(metric)
        for name, i in (("partners", 0), ("ranks", 2)):
            if not bool(jnp.array_equal(got[i], want[i])):
                raise AssertionError(f"{kernel.__name__} at {(b, n, c)}: {name} differ from the reference")
        ref = _median_seconds(jax.jit(tm.match_reference), (metric,), flags.iters)
        ker = _median_seconds(jax.jit(kernel), (metric,), flags.iters)
        plan = lambda impl: jax.jit(lambda m: tm.bipartite_soft_matching(m, flags.r, impl=impl))
        ref_plan = _median_seconds(plan("reference"), (metric,), flags.iters)
        ker_plan = _median_seconds(plan("pallas"), (metric,), flags.iters)
        print(
            f"| {b}, {n}, {c} | {ref * 1e3:.2f} | {ker * 1e3:.2f}{tag} | {ker / ref:.2f} | "
            f"{ref_plan * 1e3:.2f} | {ker_plan * 1e3:.2f}{tag} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
