"""End-of-run report: a printed summary table, WORKDIR/report.md and WORKDIR/loss_curve.png."""
from __future__ import annotations

import json
from pathlib import Path


def _rows(results: dict[str, float]) -> list[tuple[str, str]]:
    rows = []
    for k in sorted(results):
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
    lines += ["", "Reproduce: `vljax train --config " + str(config.get("config_spec", "?")) + f" --workdir {workdir}`"]
    out = workdir / "report.md"
    out.write_text("\n".join(lines) + "\n")
    print_summary(results)
    print(f"[vljax] report: {out}", flush=True)
    return out
