"""How the ops of the tiny preset's train step scale from one CPU core to several, in jax and in PyTorch.

  python benchmarks/cpu_scaling.py [--reps 20] [--rounds 2] [--cores 1,2] [--cases dense,attention]
                                   [--frameworks jax,torch]

Each op is timed fwd + bwd (grad of sum(op(inputs) * c) with respect to every float input), at the shapes of the
`tiny` preset's image tower (batch 128, 64 tokens, width 96, 3 heads of 32, MLP 256). Every (framework, core count)
runs in its own child process pinned to that many cores (sched_setaffinity before jax or torch is imported, and
torch.set_num_threads), so jax's thread pool is sized by the cores it may use, as on a machine with that many cores.
The cases run interleaved inside a child; children run --rounds times in turn and a cell is the smallest median.
Before the table is printed, every child's loss and gradient norms must agree with the first child's (rtol 1e-3), so
both frameworks are checked to compute the same thing.

Columns: milliseconds per fwd + bwd call at each core count, `jax xN` / `torch xN` = time at the fewest cores over
time at the most (the speed-up from the extra cores), and `jax/torch` = jax's time over PyTorch's at the most cores
(> 1: jax is slower). Without PyTorch installed (the dev extra) its columns read n/a.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

B, N, D, H, K, F = 128, 64, 96, 3, 32, 256
# name: (what it is, {input name: shape}); the cotangent c has the output's shape.
CASES = {
    "dense": ("x [B*N, D] @ w [D, F] + b (the MLP's first layer on rows)", {"x": (B * N, D), "w": (D, F), "b": (F,)}),
    "dense_out": ("h [B*N, F] @ w [F, D] + b (the MLP's second layer)", {"x": (B * N, F), "w": (F, D), "b": (D,)}),
    "batched_matmul": ("q [B*H, N, K] @ k^T (the attention logits alone)", {"q": (B * H, N, K), "k": (B * H, N, K)}),
    "attention": (
        "softmax(q k^T / sqrt(K)) v on [B, H, N, K] (the attention core)",
        {"q": (B, H, N, K), "k": (B, H, N, K), "v": (B, H, N, K)},
    ),
    "softmax": ("softmax over the last axis of [B, H, N, N]", {"x": (B, H, N, N)}),
    "layernorm": ("LayerNorm of [B, N, D] with scale and bias", {"x": (B, N, D), "scale": (D,), "bias": (D,)}),
    "gelu": ("exact GELU (erf) of [B, N, F]", {"x": (B, N, F)}),
}
FRAMEWORKS = ("jax", "torch")


def inputs(case: str) -> dict[str, np.ndarray]:
    """The case's inputs and cotangent c (float32, fixed seed, non-zero)."""
    rs = np.random.RandomState(sum(map(ord, case)))
    arrays = {name: rs.randn(*shape).astype(np.float32) for name, shape in CASES[case][1].items()}
    out_shape = {
        "dense": (B * N, F),
        "dense_out": (B * N, D),
        "batched_matmul": (B * H, N, N),
        "attention": (B, H, N, K),
        "softmax": (B, H, N, N),
        "layernorm": (B, N, D),
        "gelu": (B, N, F),
    }[case]
    arrays["c"] = rs.randn(*out_shape).astype(np.float32)
    return arrays


def jax_ops():
    """{case: f(**inputs) -> output} in jax."""
    import jax
    import jax.numpy as jnp

    from vljax.nn.mlp import gelu

    def layernorm(x, scale, bias):
        mean = jnp.mean(x, -1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), -1, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + 1e-6) * scale + bias

    return {
        "dense": lambda x, w, b: x @ w + b,
        "dense_out": lambda x, w, b: x @ w + b,
        "batched_matmul": lambda q, k: jnp.einsum("bqk,bsk->bqs", q, k),
        "attention": lambda q, k, v: jnp.einsum(
            "bhqs,bhsv->bhqv", jax.nn.softmax(jnp.einsum("bhqk,bhsk->bhqs", q * K**-0.5, k), -1), v
        ),
        "softmax": lambda x: jax.nn.softmax(x, -1),
        "layernorm": layernorm,
        "gelu": lambda x: gelu(x),
    }


def torch_ops():
    """{case: f(**inputs) -> output} in PyTorch."""
    import torch
    import torch.nn.functional as tf

    return {
        "dense": lambda x, w, b: x @ w + b,
        "dense_out": lambda x, w, b: x @ w + b,
        "batched_matmul": lambda q, k: q @ k.transpose(-1, -2),
        "attention": lambda q, k, v: torch.softmax((q * K**-0.5) @ k.transpose(-1, -2), -1) @ v,
        "softmax": lambda x: torch.softmax(x, -1),
        "layernorm": lambda x, scale, bias: tf.layer_norm(x, (x.shape[-1],), scale, bias, eps=1e-6),
        "gelu": lambda x: tf.gelu(x),
    }


def child(framework: str, cores: int, cases: list[str], reps: int) -> dict:
    """Runs in the pinned child: {case: {"ms": median, "loss": .., "grad_norms": [..]}}."""
    from benchmarks.timing import interleaved_ms

    calls, checks = {}, {}
    if framework == "jax":
        import jax
        import jax.numpy as jnp

        ops = jax_ops()
        for case in cases:
            arrays = {k: jnp.asarray(v) for k, v in inputs(case).items()}
            c = arrays.pop("c")
            names = list(arrays)
            op = ops[case]

            def loss(*args, op=op, names=names, c=c):
                return jnp.sum(op(**dict(zip(names, args))) * c)

            step = jax.jit(jax.value_and_grad(loss, argnums=tuple(range(len(names)))))
            args = [arrays[n] for n in names]
            value, grads = step(*args)
            checks[case] = dict(loss=float(value), grad_norms=[float(jnp.linalg.norm(g)) for g in grads])
            calls[case] = lambda step=step, args=args: step(*args)
    else:
        import torch

        torch.set_num_threads(cores)
        ops = torch_ops()
        for case in cases:
            arrays = {k: torch.tensor(v) for k, v in inputs(case).items()}
            c = arrays.pop("c")
            for t in arrays.values():
                t.requires_grad_(True)
            op = ops[case]

            def step(op=op, arrays=arrays, c=c):
                for t in arrays.values():
                    t.grad = None
                value = (op(**arrays) * c).sum()
                value.backward()
                return value

            value = step()
            checks[case] = dict(loss=float(value.detach()), grad_norms=[float(t.grad.norm()) for t in arrays.values()])
            calls[case] = step
    times = interleaved_ms(calls, reps)
    return {case: dict(ms=times[case], **checks[case]) for case in cases}


def run_child(framework: str, cores: int, cases: list[str], reps: int) -> dict:
    """One pinned child process -> its result dict; a child that fails raises with its stderr."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        framework,
        "--cores",
        str(cores),
        "--cases",
        ",".join(cases),
        "--reps",
        str(reps),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise RuntimeError(f"{framework} on {cores} cores failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(lines[-1])


def check_agreement(results: dict, rtol: float = 1e-3) -> None:
    """Every child's loss and gradient norms must match the first child's, case by case."""
    (ref_key, ref), *rest = results.items()
    for key, res in rest:
        for case, r in res.items():
            want = [ref[case]["loss"], *ref[case]["grad_norms"]]
            got = [r["loss"], *r["grad_norms"]]
            if not np.allclose(got, want, rtol=rtol, atol=rtol * max(1.0, max(abs(w) for w in want))):
                raise AssertionError(f"{case}: {key} gives loss / grad norms {got}, {ref_key} gives {want}")


def _fmt(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.2f}"


def table(results: dict, cases: list[str], frameworks: list[str], cores: list[int]) -> str:
    """The markdown table (see the module docstring for the columns)."""
    lo, hi = min(cores), max(cores)
    head = ["op"] + [f"{fw} {c} core{'s' if c > 1 else ''} (ms)" for fw in frameworks for c in cores]
    if len(cores) > 1:
        head += [f"{fw} x{hi}" for fw in frameworks]
    if set(frameworks) == set(FRAMEWORKS):
        head += ["jax/torch"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for case in cases:
        ms = {
            (fw, c): results[(fw, c)][case]["ms"] if (fw, c) in results else float("nan")
            for fw in frameworks
            for c in cores
        }
        row = [case] + [_fmt(ms[(fw, c)]) for fw in frameworks for c in cores]
        if len(cores) > 1:
            row += [_fmt(ms[(fw, lo)] / ms[(fw, hi)]) for fw in frameworks]
        if set(frameworks) == set(FRAMEWORKS):
            row += [_fmt(ms[("jax", hi)] / ms[("torch", hi)])]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--cores", default="", help="comma-separated core counts (default: 1 and all this process may use)")
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    flags = p.parse_args(argv)
    cases = [c for c in flags.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        p.error(f"unknown cases {unknown}; available: {sorted(CASES)}")
    available = sorted(os.sched_getaffinity(0))
    if flags.child:
        # NOTE: pinned before jax or torch is imported: XLA sizes its thread pool by the cores it may run on.
        os.sched_setaffinity(0, set(available[: int(flags.cores)]))
        print(json.dumps(child(flags.child, int(flags.cores), cases, flags.reps)))
        return None
    cores = sorted({int(c) for c in flags.cores.split(",") if c} or {1, len(available)})
    if max(cores) > len(available):
        p.error(f"--cores {max(cores)}: this process may use {len(available)} cores")
    frameworks = [f for f in flags.frameworks.split(",") if f]
    if any(f not in FRAMEWORKS for f in frameworks):
        p.error(f"--frameworks: choose from {FRAMEWORKS}")
    shown = list(frameworks)  # NOTE: a framework that is not installed keeps its columns, reading n/a
    if "torch" in frameworks:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("PyTorch is not installed (pip install -e '.[dev]'): its columns read n/a")
            frameworks.remove("torch")
    results: dict = {}
    for r in range(flags.rounds):
        for fw in frameworks:
            for c in cores:
                print(f"round {r + 1}/{flags.rounds}: {fw} on {c} core(s) ...", file=sys.stderr, flush=True)
                res = run_child(fw, c, cases, flags.reps)
                prev = results.get((fw, c))
                results[(fw, c)] = (
                    res
                    if prev is None
                    else {case: dict(res[case], ms=min(res[case]["ms"], prev[case]["ms"])) for case in cases}
                )
    check_agreement({f"{fw} on {c} cores": v for (fw, c), v in results.items()})
    import jax

    print(
        f"jax {jax.__version__}, float32, fwd + bwd, median of {flags.reps} per child, best of {flags.rounds} rounds; "
        f"shapes of the tiny preset (B {B}, N {N}, D {D}, H {H}, K {K}, F {F})"
    )
    print(table(results, cases, shown, cores))
    return results


if __name__ == "__main__":
    main()
