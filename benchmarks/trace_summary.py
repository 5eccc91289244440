"""Summarize a jax.profiler trace: time per op / kernel name, per step, largest first.

  python benchmarks/trace_summary.py TRACE_DIR [--steps N] [--top 25] [--hlo STEP.hlo.txt]

Reads the newest perfetto_trace.json.gz under TRACE_DIR (written by
jax.profiler.trace(dir, create_perfetto_trace=True)). On a GPU it sums the device
(kernel) events; without device events (CPU) it sums the host events that are not
Python frames. Kernels are also grouped into coarse classes (matmul, attention,
triton/pallas, fusion, copy, other) so a step's time can be read at a glance. With the compiled
step's HLO text (`compiled.as_text()`; train_throughput.py --profile writes it next to the trace)
each op is also attributed to the model scope it came from (`img_tower/attn`, `txt_tower/mlp`, ...,
forward or backward) through the HLO's op_name metadata.
"""
from __future__ import annotations

import argparse
import collections
import gzip
import json
import re
from pathlib import Path

# NOTE: substrings of kernel names as cuBLAS/cuDNN/XLA/Triton emit them; the first match wins.
CLASSES = (
    ("attention", ("fmha", "flash", "cudnn", "attention")),
    ("matmul", ("gemm", "cutlass", "cublas", "nvjet", "xmma", "dot", "matmul", "convolution", "ynn")),
    ("triton/pallas", ("triton", "pallas")),
    ("copy", ("memcpy", "memset", "copy", "transpose")),
    ("fusion", ("fusion", "reduce", "broadcast", "loop_", "input_")),
)


def classify(name: str) -> str:
    """Kernel / op name -> coarse class."""
    low = name.lower()
    for cls, keys in CLASSES:
        if any(k in low for k in keys):
            return cls
    return "other"


_HLO_OP = re.compile(r'^\s*(?:ROOT\s+)?%?([\w.\-]+) = .*?metadata=\{[^}]*?op_name="([^"]+)"')
_MODULE = re.compile(r"[A-Za-z_]\w*")  # plain module names; wrappers, methods (a.b) and einsum specs are not
_BLOCK = re.compile(r"block_\d+")


def hlo_op_names(hlo_text: str) -> dict[str, str]:
    """Compiled HLO text -> {instruction name: op_name metadata} (the jax/flax source path of each op)."""
    out = {}
    for line in hlo_text.splitlines():
        m = _HLO_OP.match(line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def scope_of(op_name: str) -> str:
    """'jit(step)/transpose(jvp(TwoTower))/TwoTower.encode_image/img_tower/block_01.mlp_branch/mlp/wi/dot_general'
    -> 'img_tower/mlp (bwd)': the tower and the block's module (attn, mlp, norm_*), or the tower's own
    module outside the blocks (embedding, pool, norm_out); block indices dropped."""
    parts = op_name.split("/")[1:-1]
    direction = "bwd" if any(p.startswith("transpose(") for p in parts[:2]) else "fwd"
    block = next((i for i, p in enumerate(parts) if _BLOCK.match(p)), None)
    plain = lambda ps: [p for p in ps if _MODULE.fullmatch(p) and not _BLOCK.match(p)]
    outer = plain(parts)
    inner = plain(parts[block:]) if block is not None else outer[1:]
    if not outer:
        return f"(step) ({direction})"
    scope = outer[0] if not inner else f"{outer[0]}/{inner[0] if block is not None else inner[-1]}"
    return f"{scope} ({direction})"


def load_events(trace_dir: str | Path) -> tuple[list[dict], str]:
    """-> (complete events of the device processes, or of the host when there are none; 'device' | 'host')."""
    files = sorted(Path(trace_dir).rglob("perfetto_trace.json.gz"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise FileNotFoundError(f"no perfetto_trace.json.gz under {trace_dir} (trace with create_perfetto_trace=True)")
    with gzip.open(files[-1]) as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    names = {e["pid"]: e.get("args", {}).get("name", "") for e in events if e.get("ph") == "M"
             and e.get("name") == "process_name"}
    device = {pid for pid, n in names.items() if "/device:" in n}
    spans = [e for e in events if e.get("ph") == "X" and "dur" in e]
    if device:
        return [e for e in spans if e["pid"] in device], "device"
    # NOTE: Python frames ('$...'), the jit call, the executor's wrappers and thread-pool waits enclose
    # or interleave with the ops: skip them.
    wrappers = ("$", "PjitFunction", "ThunkExecutor", "SlinkyThreadPool")
    return [e for e in spans if not e["name"].startswith(wrappers)], "host"


def summarize(trace_dir: str | Path, steps: int = 1, hlo_text: str | None = None) -> dict:
    """-> dict(kind, total_ms, by_name [(name, ms/step, count/step)], by_class [(class, ms/step)],
    by_scope [(scope, ms/step)] (empty without hlo_text)) per step."""
    events, kind = load_events(trace_dir)
    op_names = hlo_op_names(hlo_text) if hlo_text else {}
    by_scope: dict[str, float] = collections.defaultdict(float)
    if op_names:
        for e in events:
            op = e.get("args", {}).get("hlo_op", e["name"])
            by_scope[scope_of(op_names[op]) if op in op_names else "(no metadata)"] += e["dur"] / 1e3
    by_name: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    for e in events:
        by_name[e["name"]][0] += e["dur"] / 1e3
        by_name[e["name"]][1] += 1
    by_class: dict[str, float] = collections.defaultdict(float)
    for name, (ms, _) in by_name.items():
        by_class[classify(name)] += ms
    rows = sorted(((n, ms / steps, c / steps) for n, (ms, c) in by_name.items()), key=lambda r: -r[1])
    classes = sorted(((c, ms / steps) for c, ms in by_class.items()), key=lambda r: -r[1])
    scopes = sorted(((sc, ms / steps) for sc, ms in by_scope.items()), key=lambda r: -r[1])
    return dict(kind=kind, total_ms=sum(ms for _, ms in classes), by_name=rows, by_class=classes, by_scope=scopes)


def print_summary(summary: dict, top: int = 25) -> None:
    """Prints the class table and the `top` names as markdown tables (ms per step, share of the total)."""
    total = summary["total_ms"] or 1.0
    print(f"{summary['kind']} time per step: {summary['total_ms']:.1f} ms (sum of kernel durations)")
    print("| class | ms/step | share |\n| --- | --- | --- |")
    for cls, ms in summary["by_class"]:
        print(f"| {cls} | {ms:.2f} | {ms / total:.1%} |")
    if summary.get("by_scope"):
        print("| model scope (from HLO metadata) | ms/step | share |\n| --- | --- | --- |")
        for scope, ms in summary["by_scope"][:top]:
            print(f"| {scope} | {ms:.2f} | {ms / total:.1%} |")
    print("| kernel / op | ms/step | calls/step | share |\n| --- | --- | --- | --- |")
    for name, ms, count in summary["by_name"][:top]:
        print(f"| {name[:90]} | {ms:.2f} | {count:.0f} | {ms / total:.1%} |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trace_dir")
    p.add_argument("--steps", type=int, default=1, help="steps in the trace (to report per step)")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--hlo", default="", help="the compiled step's HLO text, to attribute ops to model scopes")
    args = p.parse_args(argv)
    hlo = Path(args.hlo).read_text() if args.hlo else None
    print_summary(summarize(args.trace_dir, args.steps, hlo), args.top)


if __name__ == "__main__":
    main()
