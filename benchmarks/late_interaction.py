"""Late-interaction paths: fwd+bwd time, forward-alone time and compiled temp memory per (B, Nv, Nt, D), ratios to naive.

  python benchmarks/late_interaction.py                       # default CPU shapes
  python benchmarks/late_interaction.py --shape 512,196,77,256 --impls chunked,pallas
  python benchmarks/late_interaction.py --shape 512,196,77,256 --dtype bfloat16 --tilings 32x64x4,64x64x4
--tilings adds one Pallas row per chunk_v x chunk_d x num_warps (patch chunk, feature chunk, GPU warps).
On CPU the Pallas kernel runs in interpret mode (an emulator, not a kernel): it is skipped for shapes
above --interpret_max_elements unless --force_pallas, and its time says nothing about GPU/TPU speed.
The `pallas` row is the Triton kernel on GPU and the Mosaic one (`li.mosaic`, XLA backward) on TPU;
--tilings applies to the Triton kernel only.
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from vljax.kernels import late_interaction as li

DEFAULT_SHAPES = ((16, 49, 32, 64), (64, 49, 32, 128), (64, 196, 77, 256))


def _parse_shape(text):
    """'B,Nv,Nt,D' -> (B, Nv, Nt, D)."""
    shape = tuple(int(x) for x in text.split(","))
    if len(shape) != 4:
        raise argparse.ArgumentTypeError(f"--shape wants B,Nv,Nt,D, got {text!r}")
    return shape


def _parse_tiling(text):
    """'CVxCDxW' -> dict(chunk_v=CV, chunk_d=CD, num_warps=W) for li.pallas."""
    parts = text.split("x")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"a tiling is CVxCDxW (e.g. 32x64x4), got {text!r}")
    return dict(zip(("chunk_v", "chunk_d", "num_warps"), (int(x) for x in parts)))


def _step(impl, tiling=None, grad=True):
    """impl (+ Pallas tiling kwargs) -> jitted (v, t, mv, mt) -> (dv, dt) of a weighted sum of both score
    matrices, or (grad=False) the weighted sum itself (forward only)."""

    def loss(v, t, mv, mt):
        if tiling:
            i2t, t2i = li.pallas(v, t, mv.astype(jnp.float32), mt.astype(jnp.float32), **tiling)
        else:
            i2t, t2i = li.late_interaction(v, t, mv, mt, impl=impl)
        return jnp.sum(i2t) + 0.5 * jnp.sum(t2i)

    return jax.jit(jax.grad(loss, argnums=(0, 1)) if grad else loss)


def _time(compiled, args, iters):
    """Compiled fn -> median seconds per call after one warmup call."""
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _measure(impl, args, iters, tiling=None):
    """-> (seconds per fwd+bwd, seconds per forward alone, compiled fwd+bwd temp bytes or None)."""
    compiled = _step(impl, tiling).lower(*args).compile()
    analysis = compiled.memory_analysis()
    temp = getattr(analysis, "temp_size_in_bytes", None) if analysis is not None else None
    forward = _step(impl, tiling, grad=False).lower(*args).compile()
    return _time(compiled, args, iters), _time(forward, args, iters), temp


def main(argv=None):
    """Parses flags, runs every (shape, impl) and prints a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=_parse_shape, action="append", help="B,Nv,Nt,D (repeatable)")
    parser.add_argument("--impls", default="naive,chunked,pallas")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--interpret_max_elements", type=int, default=1 << 22)
    parser.add_argument("--force_pallas", action="store_true")
    parser.add_argument("--tilings", default="", help="extra Pallas rows, comma-separated CVxCDxW")
    flags = parser.parse_args(argv)
    backend = jax.default_backend()
    print(f"backend={backend} devices={jax.devices()[0].device_kind} dtype={flags.dtype} iters={flags.iters}")
    print("| B, Nv, Nt, D | impl | fwd+bwd ms | x naive | fwd ms | temp MiB | x naive |")
    print("|---|---|---|---|---|---|---|")
    for shape in flags.shape or DEFAULT_SHAPES:
        b, nv, nt, d = shape
        k = jax.random.split(jax.random.key(0), 4)
        dtype = jnp.dtype(flags.dtype)
        args = (
            jax.random.normal(k[0], (b, nv, d), dtype),
            jax.random.normal(k[1], (b, nt, d), dtype),
            jax.random.bernoulli(k[2], 0.9, (b, nv)),
            jax.random.bernoulli(k[3], 0.8, (b, nt)),
        )
        base = None
        runs = [(impl, None) for impl in flags.impls.split(",")]
        runs += [("pallas", _parse_tiling(x)) for x in flags.tilings.split(",") if x]
        for impl, tiling in runs:
            name = impl if tiling is None else "pallas[{chunk_v}x{chunk_d}x{num_warps}]".format(**tiling)
            label = f"| {b}, {nv}, {nt}, {d} | {name} |"
            interpret = impl == "pallas" and backend not in ("gpu", "tpu")
            if interpret and b * b * nv * nt > flags.interpret_max_elements and not flags.force_pallas:
                print(f"{label} skipped (interpret mode on {backend}; --force_pallas to run) | | | | |")
                continue
            try:
                seconds, fwd_seconds, temp = _measure(impl, args, flags.iters, tiling)
            except Exception as err:  # noqa: BLE001 - one failing path (e.g. out of memory) must not end the table
                print(f"{label} failed: {type(err).__name__}: {str(err).splitlines()[0][:160]} | | | | |", flush=True)
                continue
            if impl == "naive":
                base = (seconds, temp)
            ratio_t = f"{seconds / base[0]:.2f}" if base else "-"
            ratio_m = f"{temp / base[1]:.3f}" if base and temp is not None and base[1] else "-"
            temp_mib = f"{temp / 2**20:.1f}" if temp is not None else "n/a"
            tag = " (interpret)" if interpret else ""
            print(f"{label} {seconds * 1e3:.1f}{tag} | {ratio_t} | {fwd_seconds * 1e3:.1f} | {temp_mib} | {ratio_m} |",
                  flush=True)


if __name__ == "__main__":
    main()
