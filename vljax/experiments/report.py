"""Sweep report: ROOT/report.md with the results table, per-group power-law fits (bootstrap CIs),
exponent comparisons, the compute frontier, and PNG plots (ROOT/scaling.png, ROOT/frontier.png)."""
from __future__ import annotations

import difflib
import itertools
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vljax.scaling import (BootstrapResult, ExponentComparison, FitSeries, PowerLawFit, bootstrap_fit,
                           compare_exponents, fit_power_law, plot_fits)


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _accuracy_names(rows: Sequence[dict]) -> list[str]:
    return sorted({k for r in rows for k, v in r.items() if isinstance(v, (int, float)) and "/" in k})


def scaling_points(rows: Sequence[dict], metric: str) -> list[dict]:
    """Finished rows -> rows with 'error' = 1 - metric, keeping those with compute > 0 and 0 < error.

    metric must be an accuracy-like column in [0, 1] (error = 1 - metric); left_out_points names the rows dropped.
    """
    finished = [r for r in rows if r.get("status") == "finished"]
    if finished and not any(metric in r for r in finished):
        raise ValueError(f"metric {metric!r} is in no finished row; available: {', '.join(_accuracy_names(finished))}")
    values = [_num(r.get(metric)) for r in finished]
    outside = [v for v in values if math.isfinite(v) and not 0.0 <= v <= 1.0]
    if outside:
        raise ValueError(f"metric {metric!r} is not in [0, 1] (e.g. {outside[0]:g}): the fits use error = 1 - metric; "
                         f"pick an accuracy, e.g. one of {', '.join(_accuracy_names(finished)[:6])}")
    out = []
    for r, acc in zip(finished, values):
        c = _num(r.get("compute"))
        if math.isfinite(c) and c > 0 and math.isfinite(acc) and acc < 1.0:
            out.append(dict(r, error=1.0 - acc))
    return out


def left_out_points(rows: Sequence[dict], metric: str) -> list[tuple[str, str]]:
    """Finished rows that scaling_points drops -> [(id, why)]: a log-log fit cannot use error 0 or no compute."""
    out = []
    for r in rows:
        if r.get("status") != "finished":
            continue
        c, acc = _num(r.get("compute")), _num(r.get(metric))
        if not (math.isfinite(c) and c > 0):
            out.append((r["id"], "no compute count (flops_error / samples_seen)"))
        elif not math.isfinite(acc):
            out.append((r["id"], f"no {metric}"))
        elif acc >= 1.0:
            out.append((r["id"], f"{metric} = 1 (error 0 has no logarithm)"))
    return out


def _by_compute(points: Sequence[dict]) -> list[dict]:
    """Points in a fixed order (compute, id): the bootstrap's resamples then do not depend on the row order."""
    return sorted(points, key=lambda p: (p["compute"], str(p.get("id", ""))))


def pareto_frontier(compute: np.ndarray, error: np.ndarray) -> np.ndarray:
    """[N] compute x [N] error -> indices (by increasing compute) of runs no cheaper run beats."""
    order = np.lexsort((error, compute))
    keep, best = [], math.inf
    for i in order:
        if error[i] < best:
            keep.append(int(i))
            best = float(error[i])
    return np.asarray(keep, dtype=int)


def _override_key(row: dict, skip: frozenset = frozenset()) -> str:
    return json.dumps({k: v for k, v in row.items() if k.startswith("override.") and k not in skip}, sort_keys=True)


def _group_defining_keys(sa: Sequence[dict], sb: Sequence[dict]) -> frozenset:
    """Override keys constant inside each group but different between them (e.g. `prior.variant` plus the
    settings that come with it): they name the group, not the grid point, so pairing ignores them."""
    keys = {k for p in (*sa, *sb) for k in p if k.startswith("override.")}
    out = set()
    for k in keys:
        va = {json.dumps(p.get(k), sort_keys=True) for p in sa}
        vb = {json.dumps(p.get(k), sort_keys=True) for p in sb}
        if len(va) == 1 and len(vb) == 1 and va != vb:
            out.add(k)
    return frozenset(out)


def fit_groups(points: Sequence[dict], group_by: str, *, n_boot: int, level: float,
               seed: int = 0) -> dict[str, tuple[PowerLawFit, BootstrapResult | None] | str]:
    """Points -> {group: (OLS log-log fit, bootstrap or None)} or {group: reason it cannot be fitted}."""
    out: dict[str, Any] = {}
    for g in sorted({str(p.get(group_by)) for p in points}):
        sel = _by_compute([p for p in points if str(p.get(group_by)) == g])
        c = np.array([p["compute"] for p in sel])
        e = np.array([p["error"] for p in sel])
        if len(np.unique(c)) < 2:
            out[g] = f"{len(sel)} point(s), {len(np.unique(c))} distinct compute value(s): need 2 for a fit"
            continue
        fit = fit_power_law(c, e)
        # NOTE: with 3 or fewer distinct compute values, resampling gives no meaningful interval.
        boot = bootstrap_fit(c, e, n_boot=n_boot, level=level, seed=seed) if len(np.unique(c)) > 3 else None
        out[g] = (fit, boot)
    return out


def compare_groups(points: Sequence[dict], group_by: str, groups: Sequence[str], *, n_boot: int,
                   level: float, seed: int = 0) -> list[tuple[str, str, ExponentComparison]]:
    """Every pair of fitted groups -> bootstrap CI of the exponent difference (paired when runs correspond)."""
    out = []
    for ga, gb in itertools.combinations(groups, 2):
        sa = _by_compute([p for p in points if str(p.get(group_by)) == ga])
        sb = _by_compute([p for p in points if str(p.get(group_by)) == gb])
        # NOTE: the fits' rule: more than 3 distinct compute values, else resampling means nothing.
        if min(len({p["compute"] for p in sa}), len({p["compute"] for p in sb})) <= 3:
            continue
        skip = _group_defining_keys(sa, sb)
        sa = sorted(sa, key=lambda p: _override_key(p, skip))
        sb = sorted(sb, key=lambda p: _override_key(p, skip))
        # NOTE: when both groups ran the same grid, row i of each is the same configuration:
        # pairing cancels their shared noise (e.g. the data order of a seed).
        paired = [_override_key(p, skip) for p in sa] == [_override_key(p, skip) for p in sb]
        data = [(np.array([p["compute"] for p in s]), np.array([p["error"] for p in s])) for s in (sa, sb)]
        out.append((ga, gb, compare_exponents(data[0], data[1], paired=paired, n_boot=n_boot, level=level,
                                              seed=seed)))
    return out


def seed_table(groups: dict[str, Sequence[dict]], metrics: Sequence[str], prefix: str = "") -> str:
    """{label: result rows (one per seed)} -> markdown table of mean +- standard error per metric."""
    lines = ["| run | seeds | " + " | ".join(metrics) + " |", "|" + "---|" * (len(metrics) + 2)]
    for label, rows in groups.items():
        cells = []
        for m in metrics:
            v = np.array([_num(r.get(prefix + m, np.nan)) for r in rows], float)
            v = v[np.isfinite(v)]
            se = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
            cells.append(f"{v.mean():.3f} ± {se:.3f}" if len(v) > 1 else (f"{v.mean():.3f}" if len(v) else ""))
        lines.append(f"| {label} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_seed_diffs(groups: dict[str, Sequence[dict]], a: str, b: str, metrics: Sequence[str],
                      prefix: str = "", seed_key: str = "override.seed") -> str:
    """Per-seed differences a - b (runs of the two groups with the same seed) -> one line per metric."""
    by_seed = {lab: {int(_num(r.get(seed_key, -1))): r for r in groups.get(lab, [])} for lab in (a, b)}
    seeds = sorted(set(by_seed[a]) & set(by_seed[b]))
    out = [f"paired {a} - {b} over seeds {seeds}:"]
    for m in metrics:
        d = np.array([_num(by_seed[a][s].get(prefix + m, np.nan)) - _num(by_seed[b][s].get(prefix + m, np.nan))
                      for s in seeds], float)
        if len(d):
            se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
            out.append(f"  {m:32s} {d.mean():+.3f} ± {se:.3f}   per seed {np.round(d, 3).tolist()}")
    return "\n".join(out)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return ""
        return f"{v:.4g}" if abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-3) else f"{v:.4f}".rstrip("0").rstrip(".")
    return str(v)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(_fmt(v) for v in r) + " |" for r in rows]
    return lines


def plot_frontier(path: Path, points: Sequence[dict], group_by: str, frontier: np.ndarray, metric: str) -> Path:
    """Error vs compute of every run by group, with the Pareto frontier as a step line -> PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for i, g in enumerate(sorted({str(p.get(group_by)) for p in points})):
        sel = [p for p in points if str(p.get(group_by)) == g]
        ax.scatter([p["compute"] for p in sel], [p["error"] for p in sel], s=18, color=f"C{i}", label=g)
    c = np.array([points[i]["compute"] for i in frontier])
    e = np.array([points[i]["error"] for i in frontier])
    ax.step(c, e, where="post", color="k", lw=1.2, label="frontier")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("compute C = train FLOPs/example x samples seen")
    ax.set_ylabel(f"error = 1 - {metric}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def write_sweep_report(root: str | Path, *, group_by: str = "method", metric: str = "zeroshot/shape_acc",
                       n_boot: int = 1000, level: float = 0.9, seed: int = 0) -> Path:
    """Sweep root -> root/report.md (+ scaling.png, frontier.png); returns the report path."""
    from vljax.experiments.sweep import STATUSES, collect

    root = Path(root)
    if not 0 < level < 1:
        raise ValueError(f"level={level}: a confidence level is in (0, 1)")
    if n_boot < 2:
        raise ValueError(f"n_boot={n_boot}: needs at least 2 bootstrap resamples")
    if not any(root.glob("*/point.json")):
        raise FileNotFoundError(f"no sweep points under {root} (expected {root}/<id>/point.json)")
    rows = collect(root)
    columns = sorted({k for r in rows for k in r})
    if group_by not in columns:  # NOTE: the metric is checked by scaling_points, against the finished points.
        near = difflib.get_close_matches(group_by, columns, n=3, cutoff=0.5)
        raise ValueError(f"group_by={group_by!r} is no column of {root}'s points"
                         + (f"; nearest: {', '.join(near)}" if near else f"; columns: {', '.join(columns)}"))
    rows = sorted(rows, key=lambda r: (str(r.get(group_by, "")), _num(r.get("compute")), r["id"]))
    points = scaling_points(rows, metric)
    status = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    planned = f", {status['planned']} planned (--dry_run, never started)" if status["planned"] else ""
    lines = [f"# Sweep report: `{root}`", "",
             f"{len(rows)} points: {status['finished']} finished, {status['failed']} failed, "
             f"{status['incomplete']} incomplete{planned}. Error E = 1 - `{metric}`; compute C = train FLOPs per "
             f"example (analytic, 3 x forward) x samples seen. Groups: `{group_by}`.", "",
             "## Results", ""]
    override_cols = sorted({k for r in rows for k in r if k.startswith("override.")})
    header = ["id", group_by] + [k.removeprefix("override.") for k in override_cols] + [
        "params", "samples", "C (FLOPs)", metric, "wall s", "status"]
    body = [[r["id"], r.get(group_by, "")] + [r.get(k, "") for k in override_cols] + [
        _num(r.get("params")), _num(r.get("samples_seen")), _num(r.get("compute")), _num(r.get(metric)),
        _num(r.get("wall_time_s")), r["status"]] for r in rows]
    lines += _table(header, body)
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        lines += ["", "### Failed points", ""] + _table(["id", "error"], [[r["id"], r.get("error", "")]
                                                                           for r in failed])
    lines += ["", f"## Method comparison (`{group_by}`)", ""]
    summary = []
    for g in sorted({str(r.get(group_by)) for r in rows}):
        vals = np.array([_num(r.get(metric)) for r in rows if str(r.get(group_by)) == g and r["status"] == "finished"])
        vals = vals[np.isfinite(vals)]
        if vals.size:
            spread = f"{vals.std(ddof=1):.4f}" if vals.size > 1 else "n/a"
            summary.append([g, vals.size, f"{vals.mean():.4f} ± {spread}", float(vals.max())])
    lines += _table([group_by, "finished", f"{metric} mean ± std (ddof 1)", "best"], summary) if summary else [
        "No finished points."]
    left_out = left_out_points(rows, metric)
    if left_out:
        lines += ["", f"{len(left_out)} finished point(s) left out of the fits and the frontier:", ""]
        lines += _table(["id", "why"], [list(x) for x in left_out])
    fits = fit_groups(points, group_by, n_boot=n_boot, level=level, seed=seed)
    pct = f"{100 * level:.0f}%"
    lines += ["", f"## Scaling fits: E = b * C^a (log-log least squares, {pct} bootstrap CIs, {n_boot} resamples)", ""]
    fit_rows, series = [], []
    for g, item in fits.items():
        if isinstance(item, str):
            fit_rows.append([g, "", "", "", "", "", item])
            continue
        fit, boot = item
        ci_a = "[{:.3f}, {:.3f}]".format(*boot.interval("a")) if boot else "n/a (<= 3 compute values)"
        ci_b = "[{:.3g}, {:.3g}]".format(*boot.interval("b")) if boot else ""
        notes = [f"rmse(log10) {fit.rmse_log10:.3f}", f"R² {fit.r2_log10:.2f}"]
        if fit.a >= 0:
            notes.append("a >= 0: the error does not fall with compute here")
        elif boot and boot.interval("a")[1] >= 0:
            notes.append("the CI of a reaches 0: no trend resolved")
        fit_rows.append([g, fit.n_points, f"{fit.a:.3f}", ci_a, f"{fit.b:.4g}", ci_b, "; ".join(notes)])
        sel = [p for p in points if str(p.get(group_by)) == g]
        series.append(FitSeries(g, np.array([p["compute"] for p in sel]), np.array([p["error"] for p in sel]),
                                fit, bootstrap=boot))
    lines += _table([group_by, "points", "a", f"{pct} CI a", "b", f"{pct} CI b", "note"], fit_rows) if fit_rows else [
        "No finished points with the metric."]
    if series:
        plot_fits(root / "scaling.png", series, title=f"{root.name}: error vs compute",
                  xlabel="compute C (FLOPs)", ylabel=f"1 - {metric}")
        lines += ["", "![scaling fits](scaling.png)"]
    fitted = [g for g, item in fits.items() if not isinstance(item, str)]
    comparisons = compare_groups(points, group_by, fitted, n_boot=n_boot, level=level, seed=seed)
    lines += ["", "## Exponent comparison", ""]
    if comparisons:
        lines += _table(["A", "B", "a_A - a_B", f"{pct} CI", "significant", "p", "paired"],
                        [[a, b, f"{c.diff:.3f}", f"[{c.ci[0]:.3f}, {c.ci[1]:.3f}]", "yes" if c.significant else "no",
                          f"{c.p_value:.3f}", "yes" if c.paired else "no"] for a, b, c in comparisons])
    else:
        lines += ["Needs two fitted groups with more than 3 distinct compute values each."]
    lines += ["", "## Compute frontier", "",
              "Runs that no cheaper run beats (lowest error at or below their compute):", ""]
    if points:
        c = np.array([p["compute"] for p in points])
        e = np.array([p["error"] for p in points])
        front = pareto_frontier(c, e)
        lines += _table(["id", group_by, "C (FLOPs)", "error"],
                        [[points[i]["id"], points[i].get(group_by, ""), float(c[i]), float(e[i])] for i in front])
        plot_frontier(root / "frontier.png", points, group_by, front, metric)
        lines += ["", "![frontier](frontier.png)"]
    lines += ["", f"Regenerate: `vljax report --root {root} --group_by {group_by} --metric {metric}`"]
    out = root / "report.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"[report] {out}", flush=True)
    return out
