"""Dense layers as 3-D/4-D einsums or dot_generals vs one 2-D matmul (vljax.nn.dense.contract), fwd + bwd.

  python benchmarks/dense_layout.py [--reps 30] [--cases tiny_mlp,tiny_qkv,...]

Each row times jit(grad) of sum(layer(x)**2) with respect to the kernel(s) and x, all formulations in the
same process, interleaved, median over --reps calls after a warm-up: `einsum` (jnp.einsum, what the attention
projections and the ResNet's 1x1 convs used), `dot_general` (lax.dot_general over x's last axes, what
flax's nn.Dense does) and `contract`. Ratios are each time / contract's (> 1: contract is faster).
Shapes: the tiny presets' (batch 128, 64 image tokens of width 96, MLP 256, 3 heads of 32; the tiny
ResNet's 1x1 convs) and a ViT-B/16 block at batch 8.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import header, interleaved_ms, parse_cases

# name: (x shape, kernel shape(s), einsum spec(s), contracted axes per kernel)
CASES = {
    "tiny_mlp": ((128, 64, 96), ((96, 256), (256, 96)), ("bnd,dm->bnm", "bnm,md->bnd"), (1, 1)),
    "tiny_qkv": ((128, 64, 96), ((96, 3, 32),), ("bnd,dhk->bnhk",), (1,)),
    "tiny_attn_out": ((128, 64, 3, 32), ((3, 32, 96),), ("bnhk,hkd->bnd",), (2,)),
    "tiny_resnet_1x1": ((128, 16, 16, 64), ((64, 256),), ("bhwc,cd->bhwd",), (1,)),
    "vitb_mlp": ((8, 197, 768), ((768, 3072), (3072, 768)), ("bnd,dm->bnm", "bnm,md->bnd"), (1, 1)),
}


def build(case, impl):
    """Case -> f(kernels, x): the layer chain (exact GELU between two kernels, as the MLP) in one impl."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    from vljax.nn.dense import contract

    _, _, specs, n_contract = CASES[case]

    def apply(x, k, spec, n):
        if impl == "einsum":
            return jnp.einsum(spec, x, k)
        if impl == "dot_general":
            return lax.dot_general(x, k, ((tuple(range(x.ndim - n, x.ndim)), tuple(range(n))), ((), ())))
        return contract(x, k, n)

    def layer(kernels, x):
        for i, (k, spec, n) in enumerate(zip(kernels, specs, n_contract)):
            x = apply(x, k, spec, n)
            if i < len(kernels) - 1:
                x = jax.nn.gelu(x, approximate=False)
        return x

    return jax.jit(jax.grad(lambda ks, x: jnp.sum(layer(ks, x) ** 2), argnums=(0, 1)))


def main(argv=None):
    import jax
    import jax.numpy as jnp

    flags, cases = parse_cases(__doc__, tuple(CASES), argv)
    print(header(flags.reps))
    impls = ("einsum", "dot_general", "contract")
    print(
        f"{'case':16s} {'x':>18s} {'einsum ms':>10s} {'dot_general ms':>15s} {'contract ms':>12s} "
        f"{'einsum/contract':>16s} {'dot_general/contract':>21s}"
    )
    rng = np.random.default_rng(0)
    for case in cases:
        x_shape, k_shapes, _, _ = CASES[case]
        x = jnp.asarray(rng.normal(size=x_shape).astype(np.float32))
        ks = tuple(jnp.asarray(rng.normal(size=s).astype(np.float32) / np.sqrt(s[0])) for s in k_shapes)
        fns = {impl: build(case, impl) for impl in impls}
        ref = fns["einsum"](ks, x)
        # NOTE: the three are the same math; check it before timing so a wrong layout cannot win the table.
        for impl in impls[1:]:
            for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(fns[impl](ks, x))):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4 * float(jnp.abs(a).max()))
        med = interleaved_ms({impl: (lambda fn=fn, ks=ks, x=x: fn(ks, x)) for impl, fn in fns.items()}, flags.reps)
        e, d, c = (med[i] for i in impls)
        print(f"{case:16s} {x_shape!s:>18s} {e:10.2f} {d:15.2f} {c:12.2f} {e / c:16.2f} {d / c:21.2f}")


if __name__ == "__main__":
    main()
