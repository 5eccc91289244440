"""Validates the compiled Pallas kernels on the current backend against float64 references.

  python benchmarks/kernel_check.py              # GPU/TPU: every size; CPU: interpret mode, small sizes only
  python benchmarks/kernel_check.py --sizes small

Late interaction: forward scores and gradients (weighted sum of both score matrices) of the Pallas path,
and of the naive XLA path for comparison, vs a numpy float64 reference on fresh random inputs with
masks (one fully masked image and text). Token merging: the matching kernel's partner, score and rank
vs the argsort reference on the same device and vs float64. Errors are ||out - ref|| / ||ref||.
Prints one table and exits 1 if any check misses its tolerance. For the unit tests see
tests/test_late_interaction.py and tests/test_token_merging.py (CPU, interpret mode).
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from vljax.kernels import late_interaction as li
from vljax.kernels import token_merging as tm

# NOTE: bf16 inputs are exact in float64, so the forward only sees f32 accumulation; bf16 gradients are
# rounded to bf16 on output (~4e-3). f32 kernels use IEEE dots (no TF32) on GPU.
TOL = {
    ("float32", "fwd"): 1e-5,
    ("float32", "grad"): 1e-4,
    ("bfloat16", "fwd"): 1e-4,
    ("bfloat16", "grad"): 1e-2,
}
LI_SIZES = {
    "small": ((8, 13, 9, 20), (11, 21, 5, 40)),
    "large": ((16, 49, 32, 64), (64, 196, 77, 256), (32, 257, 64, 512)),
}
TOME_SIZES = {"small": ((3, 17, 12), (2, 33, 16)), "large": ((32, 197, 64), (16, 577, 64), (8, 1025, 64))}


def _li_inputs(seed, b, nv, nt, d, dtype):
    """Fresh random tokens and masks; image b-1 and text 1 fully masked, every other sample has token 0."""
    k = jax.random.split(jax.random.key(seed), 6)
    v = jax.random.normal(k[0], (b, nv, d)).astype(dtype)
    t = jax.random.normal(k[1], (b, nt, d)).astype(dtype)
    mv = jax.random.bernoulli(k[2], 0.8, (b, nv)).at[:, 0].set(True).at[b - 1].set(False)
    mt = jax.random.bernoulli(k[3], 0.7, (b, nt)).at[:, 0].set(True).at[1].set(False)
    w = jax.random.normal(k[4], (2, b, b))
    return v, t, mv, mt, w


def _li_reference(v, t, mv, mt, w):
    """float64 numpy: (i2t, t2i, dv, dt) of sum(w0 * i2t + w1 * t2i), gradient through the (first) maxima."""
    v, t, w = (np.asarray(x, np.float64) for x in (v.astype(jnp.float32), t.astype(jnp.float32), w))
    mv, mt = np.asarray(mv), np.asarray(mt)
    s = np.einsum("ikd,jld->ijkl", v, t, optimize=True)
    nv, nt = mv.sum(1).astype(np.float64), mt.sum(1).astype(np.float64)
    live = (nv[:, None] > 0) & (nt[None, :] > 0)
    s_t = np.where(mt[None, :, None, :], s, -np.inf)  # valid words per patch
    s_v = np.where(mv[:, None, :, None], s, -np.inf)  # valid patches per word
    best_l, best_k = s_t.argmax(-1), s_v.argmax(-2)  # [i, j, k], [i, j, l]
    with np.errstate(invalid="ignore"):
        i2t = np.where(mv[:, None, :], s_t.max(-1), 0.0).sum(-1) / np.maximum(nv, 1)[:, None]
        t2i = np.where(mt[None, :, :], s_v.max(-2), 0.0).sum(-1) / np.maximum(nt, 1)[None, :]
    i2t, t2i = np.where(live, i2t, 0.0), np.where(live, t2i, 0.0)
    b_i, b_t, n_v, n_t = s.shape
    p = np.zeros_like(s)
    gi = np.where(live, w[0], 0.0)[:, :, None] * mv[:, None, :] / np.maximum(nv, 1)[:, None, None]
    gt = np.where(live, w[1], 0.0)[:, :, None] * mt[None, :, :] / np.maximum(nt, 1)[None, :, None]
    ii, jj, kk = np.meshgrid(np.arange(b_i), np.arange(b_t), np.arange(n_v), indexing="ij")
    np.add.at(p, (ii, jj, kk, best_l), gi)
    ii, jj, ll = np.meshgrid(np.arange(b_i), np.arange(b_t), np.arange(n_t), indexing="ij")
    np.add.at(p, (ii, jj, best_k, ll), gt)
    dv = np.einsum("ijkl,jld->ikd", p, t, optimize=True)
    dt = np.einsum("ijkl,ikd->jld", p, v, optimize=True)
    return i2t, t2i, dv, dt


class Table:
    """Prints each check as a markdown row when it is added (a killed run keeps what it printed)."""

    def __init__(self):
        self.failed = 0
        print("| kernel | size | dtype | quantity | impl | error | tol | ok | first call s |")
        print("|---|---|---|---|---|---|---|---|---|", flush=True)

    def append(self, row):
        """row = (kernel, size, dtype, quantity, impl, error, tol or None, seconds) -> one printed line."""
        kernel, size, dtype, what, impl, err, tol, seconds = row
        ok = "-" if tol is None else ("yes" if err <= tol else "NO")
        self.failed += ok == "NO"
        tol_text = "-" if tol is None else f"{tol:.0e}"
        print(f"| {kernel} | {size} | {dtype} | {what} | {impl} | {err:.2e} | {tol_text} | {ok} | {seconds:.2f} |",
              flush=True)


def _rel(got, want):
    """||got - want|| / ||want|| in float64 (inf on a non-finite output)."""
    got = np.asarray(jnp.asarray(got, jnp.float32), np.float64)
    if not np.isfinite(got).all():
        return float("inf")
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))


def check_late_interaction(sizes, dtypes, rows):
    """Appends (kernel, size, dtype, quantity, impl, rel err, tol) rows for the Pallas and naive paths."""
    for seed, (b, nv, nt, d) in enumerate(sizes):
        for dtype in dtypes:
            v, t, mv, mt, w = _li_inputs(seed, b, nv, nt, d, jnp.dtype(dtype))
            ref = _li_reference(v, t, mv, mt, w)
            for impl in ("pallas", "naive"):

                def objective(v, t, impl=impl):
                    i2t, t2i = li.late_interaction(v, t, mv, mt, impl=impl)
                    return jnp.sum(w[0] * i2t) + jnp.sum(w[1] * t2i), (i2t, t2i)

                start = time.perf_counter()
                (_, (i2t, t2i)), (dv, dt) = jax.jit(jax.value_and_grad(objective, argnums=(0, 1), has_aux=True))(v, t)
                jax.block_until_ready(dv)
                seconds = time.perf_counter() - start
                for name, got, want, kind in (("i2t", i2t, ref[0], "fwd"), ("t2i", t2i, ref[1], "fwd"),
                                              ("dv", dv, ref[2], "grad"), ("dt", dt, ref[3], "grad")):
                    tol = TOL[(dtype, kind)] if impl == "pallas" else None
                    rows.append(("late_interaction", f"{b}x{nv}x{nt}x{d}", dtype, name, impl, _rel(got, want), tol,
                                 seconds))
                # NOTE: the fully masked image (last) and text (1) must score 0 with zero gradient.
                dead = float(jnp.abs(i2t[-1]).max() + jnp.abs(t2i[:, 1]).max() + jnp.abs(dv[-1].astype(jnp.float32))
                             .max() + jnp.abs(dt[1].astype(jnp.float32)).max())
                rows.append(("late_interaction", f"{b}x{nv}x{nt}x{d}", dtype, "masked=0", impl, dead,
                             0.0 if impl == "pallas" else None, seconds))


def check_token_merging(sizes, dtypes, rows):
    """Appends rows comparing the matching kernel with the argsort reference (same device) and float64."""
    match_pallas = jax.jit(tm.match_pallas)
    match_reference = jax.jit(tm.match_reference)
    for seed, (b, n, c) in enumerate(sizes):
        for dtype in dtypes:
            metric = jax.random.normal(jax.random.key(100 + seed), (b, n, c)).astype(jnp.dtype(dtype))
            start = time.perf_counter()
            idx, score, rank = jax.block_until_ready(match_pallas(metric))
            seconds = time.perf_counter() - start
            r_idx, _, r_rank = match_reference(metric)
            m = np.asarray(metric.astype(jnp.float32), np.float64)
            m /= np.linalg.norm(m, axis=-1, keepdims=True)
            s = np.einsum("bic,bjc->bij", m[:, ::2], m[:, 1::2], optimize=True)
            s[:, 0, :] = tm.PROTECT_VALUE
            size = f"{b}x{n}x{c}"
            rows.append(("token_merging", size, dtype, "idx != ref", "pallas",
                         float(np.mean(np.asarray(idx) != np.asarray(r_idx))), 0.0, seconds))
            rows.append(("token_merging", size, dtype, "rank != ref", "pallas",
                         float(np.mean(np.asarray(rank) != np.asarray(r_rank))), 0.0, seconds))
            rows.append(("token_merging", size, dtype, "idx != f64", "pallas",
                         float(np.mean(np.asarray(idx)[:, 1:] != s.argmax(-1)[:, 1:])), 0.0, seconds))
            rows.append(("token_merging", size, dtype, "score", "pallas", _rel(score[:, 1:], s.max(-1)[:, 1:]),
                         1e-5, seconds))


def main(argv=None):
    """Parses flags, runs the checks, prints a markdown table; exit status 1 on any failed check."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    backend = jax.default_backend()
    parser.add_argument("--sizes", choices=("small", "large", "all"), default="all" if backend != "cpu" else "small")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--skip", default="", help="comma-separated: late_interaction, token_merging")
    flags = parser.parse_args(argv)
    pick = ("small", "large") if flags.sizes == "all" else (flags.sizes,)
    dtypes = flags.dtypes.split(",")
    print(f"backend={backend} device={jax.devices()[0].device_kind} jax={jax.__version__}", flush=True)
    rows = Table()
    if "late_interaction" not in flags.skip:
        check_late_interaction([s for p in pick for s in LI_SIZES[p]], dtypes, rows)
    if "token_merging" not in flags.skip:
        check_token_merging([s for p in pick for s in TOME_SIZES[p]], dtypes, rows)
    print(f"{rows.failed} check(s) failed" if rows.failed else "all checks passed", flush=True)
    return 1 if rows.failed else 0


if __name__ == "__main__":
    sys.exit(main())
