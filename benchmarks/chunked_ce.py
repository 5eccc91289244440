"""Full-logits vs vocabulary-chunked cross-entropy: compiled temp memory and time of the loss gradient.

Usage: python benchmarks/chunked_ce.py [--dim 256] [--chunk 4096] [--sizes 1024x32000,2048x32768,...] [--reps 3]
For each (tokens N = B*T, vocabulary V): grad of the NTP loss w.r.t. hidden [1, N, D] and unembed [D, V],
float32, one device. Prints `memory_analysis().temp_size_in_bytes` (MiB) and the median wall time per call
(ms, after one warm-up call) for `next_token_loss(hidden @ unembed)` and `chunked_next_token_loss`, with
full / chunked ratios.
"""

import argparse
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from vljax.losses import lm as lm_loss  # noqa: E402


def grad_fns(targets, mask, chunk):
    """-> {name: jitted grad(loss) w.r.t. (hidden [1, N, D], unembed [D, V])}."""
    full = lambda h, w: lm_loss.next_token_loss(jnp.einsum("btd,dv->btv", h, w), targets, mask)[0]
    chunked = lambda h, w: lm_loss.chunked_next_token_loss(h, w, targets, mask, chunk_size=chunk)[0]
    return {"full": jax.jit(jax.grad(full, (0, 1))), "chunked": jax.jit(jax.grad(chunked, (0, 1)))}


def measure(n: int, v: int, dim: int, chunk: int, reps: int) -> dict[str, tuple[float, float]]:
    """-> {name: (temp MiB, median ms)} for one (N, V)."""
    rng = np.random.default_rng(0)
    hidden = jnp.asarray(rng.normal(0.0, 1.0, (1, n, dim)), jnp.float32)
    unembed = jnp.asarray(rng.normal(0.0, dim**-0.5, (dim, v)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, v, (1, n)), jnp.int32)
    mask = jnp.ones((1, n), bool)
    out = {}
    for name, fn in grad_fns(targets, mask, chunk).items():
        compiled = fn.lower(hidden, unembed).compile()
        temp = compiled.memory_analysis().temp_size_in_bytes / 2**20
        jax.block_until_ready(compiled(hidden, unembed))
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(hidden, unembed))
            times.append(time.perf_counter() - t0)
        out[name] = (temp, 1e3 * float(np.median(times)))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=4096)
    parser.add_argument("--sizes", default="1024x32000,2048x32768,4096x32768,2048x128256")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
    print(f"grad of NTP loss w.r.t. (hidden, unembed); D={args.dim}, chunk={args.chunk}, float32, "
          f"{jax.devices()[0].platform} x1, jax {jax.__version__}")
    print("| N = B*T | V | full temp (MiB) | chunked temp (MiB) | memory ratio "
          "| full (ms) | chunked (ms) | time ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for n, v in sizes:
        r = measure(n, v, args.dim, args.chunk, args.reps)
        (mf, tf), (mc, tc) = r["full"], r["chunked"]
        print(f"| {n} | {v} | {mf:.1f} | {mc:.1f} | {mf / mc:.1f}x | {tf:.0f} | {tc:.0f} | {tc / tf:.2f} |", flush=True)


if __name__ == "__main__":
    main()
