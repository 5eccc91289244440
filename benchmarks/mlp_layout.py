"""The transformer MLP on CPU, fwd + bwd: where the token axes are flattened, and exact GELU through erf or erfc.

  python benchmarks/mlp_layout.py [--reps 30] [--cases tiny,vitb]

Each row times jit(grad) of sum(mlp(x) * c) with respect to x, both kernels and both biases, every variant in
the same process, interleaved, median over --reps calls after a warm-up. The variants:

- `per-layer 2-D, erfc`: each dense layer flattens [B, N, D] to rows and back (vljax.nn.dense.contract), the
  hidden [B, N, F] between them, GELU as jax.nn.gelu(approximate=False) (through erfc): the MLP of session 10;
- `per-layer 2-D, erf`: the same with vljax.nn.mlp.gelu (0.5 x (1 + erf(x / sqrt 2)));
- `whole MLP 2-D, erfc`: x flattened once, both layers, bias and GELU on [B*N, F] rows, reshaped once at the end;
- `whole MLP 2-D, erf`: both changes, which is what vljax.nn.mlp.Mlp does on CPU;
- `vljax Mlp`: the module itself (checked equal to the float64 MLP before timing).

`ratio` is the first variant's time / the row's (> 1: faster). `gelu err` is the largest absolute error of the
activation and its derivative against float64 on x in [-12, 12]. Shapes: the tiny preset's image MLP (batch 128,
64 tokens, 96 -> 256 -> 96) and a ViT-B/16 MLP at batch 8 (197 tokens, 768 -> 3072 -> 768).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import header, interleaved_ms, parse_cases

# name: (batch, tokens, width, hidden)
CASES = {"tiny": (128, 64, 96, 256), "vitb": (8, 197, 768, 3072)}


def gelu_error(fn) -> float:
    """Largest absolute error of fn and its derivative (float32) against float64 exact GELU on [-12, 12]."""
    import jax
    import jax.numpy as jnp

    x = np.linspace(-12, 12, 4801)
    val, grad = jax.jit(jax.vmap(jax.value_and_grad(fn)))(jnp.asarray(x, jnp.float32))
    cdf = 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    return float(
        max(
            np.abs(np.asarray(val, np.float64) - x * cdf).max(),
            np.abs(np.asarray(grad, np.float64) - (cdf + x * pdf)).max(),
        )
    )


def variants(case):
    """-> ({name: (grad fn, params)}, x, {gelu name: error}) for one case."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from vljax.nn.dense import contract
    from vljax.nn.mlp import Mlp, gelu

    b, n, d, f = CASES[case]
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(b, n, d)), jnp.float32)
    c = jnp.asarray(rng.normal(size=(b, n, d)), jnp.float32)
    mod = Mlp(mlp_dim=f)
    params = nn.unbox(mod.init(jax.random.key(0), x))
    # NOTE: non-zero biases, so a formulation that dropped one would not pass the equality check below
    params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(1), a.shape), params)
    gelus = {"erfc": lambda h: jax.nn.gelu(h, approximate=False), "erf": gelu}

    def per_layer(act):
        def mlp(p, x):
            wi, wo = p["params"]["wi"], p["params"]["wo"]
            return contract(act(contract(x, wi["kernel"]) + wi["bias"]), wo["kernel"]) + wo["bias"]

        return mlp

    def whole(act):
        def mlp(p, x):
            wi, wo = p["params"]["wi"], p["params"]["wo"]
            h = act(x.reshape(-1, d) @ wi["kernel"] + wi["bias"])
            return (h @ wo["kernel"] + wo["bias"]).reshape(x.shape)

        return mlp

    fns = {}
    for name, act in gelus.items():
        fns[f"per-layer 2-D, {name}"] = per_layer(act)
    for name, act in gelus.items():
        fns[f"whole MLP 2-D, {name}"] = whole(act)
    fns["vljax Mlp"] = mod.apply
    p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)["params"]
    h = np.asarray(x, np.float64) @ p64["wi"]["kernel"] + p64["wi"]["bias"]
    h = 0.5 * h * (1 + np.vectorize(math.erf)(h / math.sqrt(2)))
    ref = h @ p64["wo"]["kernel"] + p64["wo"]["bias"]
    for name, fn in fns.items():
        got = np.asarray(jax.jit(fn)(params, x), np.float64)
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * math.sqrt(f), err_msg=name)
    out = {
        name: (jax.jit(jax.grad(lambda p, x, fn=fn: jnp.sum(fn(p, x) * c), argnums=(0, 1))), params)
        for name, fn in fns.items()
    }
    return out, x, {name: gelu_error(act) for name, act in gelus.items()}


def main(argv=None):
    flags, cases = parse_cases(__doc__, tuple(CASES), argv)
    print(header(flags.reps))
    print("| case | x -> hidden | variant | ms | ratio | gelu err |\n| --- | --- | --- | --- | --- | --- |")
    for case in cases:
        fns, x, errors = variants(case)
        med = interleaved_ms({name: (lambda f=f, p=p, x=x: f(p, x)) for name, (f, p) in fns.items()}, flags.reps)
        base = med[next(iter(med))]
        b, n, d, f = CASES[case]
        for name, ms in med.items():
            err = errors["erfc" if name.endswith("erfc") else "erf"]
            print(f"| {case} | {b} x {n} x {d} -> {f} | {name} | {ms:.2f} | {base / ms:.2f} | {err:.1e} |", flush=True)


if __name__ == "__main__":
    main()
