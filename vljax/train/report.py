"""End-of-run report: a printed summary table, WORKDIR/report.md and WORKDIR/loss_curve.png."""
from __future__ import annotations

import json
import re
from pathlib import Path


def natural_key(key: str) -> list:
    """'retrieval/i2t_r10' sorts after '.../i2t_r5': digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


def _rows(results: dict[str, float]) -> list[tuple[str, str]]:
    rows = []
    for k in sorted(results, key=natural_key):
        v = results[k]
        rows.append((k, f"{v:.4f}" if abs(v) < 1e4 else f"{v:.4g}"))
    return rows


def print_summary(results: dict[str, float]) -> None:
    """Prints metric | value as an aligned table."""
    rows = _rows(results)
    w = max([len(k) for k, _ in rows] + [6])
    print("\n" + "=" * (w + 16))
    print(f"{'metric':<{w}}  {'value':>12}")
    print("-" * (w + 16))
    for k, v in rows:
        print(f"{k:<{w}}  {v:>12}")
    print("=" * (w + 16), flush=True)


def plot_loss(workdir: Path) -> Path | None:
    """metrics.jsonl -> loss_curve.png (loss vs step); None when there is nothing to plot."""
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return None
    steps, losses = [], []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if "loss" in row:
            steps.append(row["step"])
            losses.append(row["loss"])
    if not steps:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, losses, lw=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("train loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = workdir / "loss_curve.png"
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def reproduce_command(config, workdir: Path) -> str:
    """-> the `vljax train` command line that trains this config again: its spec plus every override (CLI or sweep)."""
    import shlex

    from vljax.config import override_args

    spec = config.get("config_spec")
    if not spec:
        return f"vljax train --config ? --workdir {shlex.quote(str(workdir))}  # config not loaded from a file"
    try:
        args = override_args(config)
    except Exception as e:  # NOTE: the config file changed or moved since; the report must still be written.
        return (f"vljax train --config {shlex.quote(spec)} --workdir {shlex.quote(str(workdir))}  # overrides "
                f"unknown: {type(e).__name__}: {e}; see config.json")
    return " ".join(["vljax train", "--config", shlex.quote(spec), "--workdir", shlex.quote(str(workdir)),
                     *map(shlex.quote, args)])


def write_report(workdir: Path, config, results: dict[str, float]) -> Path:
    """Writes report.md (config, final metrics, loss curve) and prints the summary table."""
    workdir = Path(workdir)
    png = plot_loss(workdir)
    lines = [f"# vljax run: {config.get('config_spec', config.method)}", "",
             f"- method: `{config.method}`", f"- workdir: `{workdir}`",
             f"- steps: {int(results.get('train_steps', 0))}, batch: {config.train.batch_size}", "",
             "## Final metrics", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in _rows(results)]
    if png:
        lines += ["", "## Training loss", "", f"![loss]({png.name})"]
    lines += ["", f"Reproduce: `{reproduce_command(config, workdir)}`"]
    out = workdir / "report.md"
    out.write_text("\n".join(lines) + "\n")
    print_summary(results)
    print(f"[vljax] report: {out}", flush=True)
    return out
