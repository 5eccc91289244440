"""Local sweeps: run every point of a config's named sweep in ROOT/<point-id>/, resumably, and collect a table.

A point is a {dotted config key: value} dict from the config's `get_sweep(arg)`. Each point
trains in its own subprocess (`python -m vljax.experiments.run_point ROOT/<id>/point.json`), so
a crash or an out-of-memory kill is recorded as that point's error and the sweep goes on.
Finished points (results.json present) are skipped; interrupted ones resume from their newest
checkpoint (the trainer does that by itself). Results: ROOT/results.csv and ROOT/results.jsonl.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from vljax.config import ConfigError, load_config, load_module, set_overrides, split_spec, validate

POINT_FILE = "point.json"
RESULTS_FILE = "results.json"
LOCK_FILE = "running.json"  # NOTE: a point's trainer is alive: host, pids; removed when it exits.
PREEMPTED_EXIT_CODES = (130, 143)  # NOTE: 128 + SIGINT / SIGTERM: vljax.train.loop.Preempted.exit_code.
ERROR_FILE = "error.json"
LOG_FILE = "log.txt"


def named_sweeps(config_spec: str) -> dict[str, list[dict[str, Any]]]:
    """'configs/clip.py:tiny' -> {sweep name: [override dicts]} from the module's get_sweep(arg).

    get_sweep may return a dict of named sweeps or a single list (then named 'default').
    """
    path, arg = split_spec(config_spec)
    module = load_module(path)
    if not hasattr(module, "get_sweep"):
        raise ConfigError(f"{path} defines no get_sweep(arg)")
    sweeps = module.get_sweep(arg) if arg is not None else module.get_sweep()
    if isinstance(sweeps, (list, tuple)):
        sweeps = {"default": list(sweeps)}
    if not isinstance(sweeps, dict):
        raise ConfigError(f"{path}: get_sweep must return a dict of named lists or a list, got {type(sweeps).__name__}")
    for name, points in sweeps.items():
        if not all(isinstance(p, dict) for p in points):
            raise ConfigError(f"{path}: sweep {name!r} must be a list of {{dotted key: value}} dicts")
    return {str(k): list(v) for k, v in sweeps.items()}


def _slug_value(v: Any) -> str:
    text = "x".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
    return re.sub(r"[^A-Za-z0-9.]+", "", text)[:16]


def point_id(config_spec: str, overrides: dict[str, Any], cli_overrides: Sequence[str] = ()) -> str:
    """(spec, {key: value}, ['--config.k=v']) -> stable directory name 'method-leafVALUE-...-<sha8>'."""
    payload = json.dumps({"config": config_spec, "overrides": overrides, "cli": list(cli_overrides)},
                         sort_keys=True, default=repr)
    digest = hashlib.sha256(payload.encode()).hexdigest()[:8]
    stem = Path(split_spec(config_spec)[0]).stem
    parts = [stem]
    for k, v in sorted(overrides.items()):
        part = f"{k.rsplit('.', 1)[-1]}{_slug_value(v)}"
        parts += [part] if part not in parts else []
    slug = "-".join(parts)[:80]
    return f"{slug}-{digest}"


def point_config(point: dict[str, Any], *, check_paths: bool = False):
    """point.json contents -> the ConfigDict it trains (spec, then CLI overrides, then sweep overrides), validated.

    check_paths: also check that config.init's sources exist (off by default: the rows of old points are rebuilt
    from their point.json after such a source may have moved; the trainer checks when it loads them).
    """
    cfg = load_config(point["config"], point.get("cli_overrides", []), check_paths=False)
    # NOTE: JSON has no tuples; set_overrides gives a list the type the config holds (e.g. a tuple count).
    set_overrides(cfg, dict(point.get("overrides", {})))
    validate(cfg, check_paths=check_paths)
    return cfg


# NOTE: finished = results.json; failed = error.json; incomplete = started (a log, a config.json or checkpoints:
# the sweep's subprocess or run_point on a cluster wrote them); planned = point.json only (a --dry_run's).
STATUSES = ("finished", "failed", "incomplete", "planned")


def _finished(workdir: Path) -> bool:
    return (workdir / RESULTS_FILE).exists()


def _started(workdir: Path) -> bool:
    return any((workdir / name).exists() for name in (LOG_FILE, "config.json", "checkpoints"))


def _tail(path: Path, n: int = 20) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b(:.*)?$")


def _last_error_line(log: str, returncode: int) -> str:
    """The last 'SomeError: message' line of a traceback, else a description of the exit."""
    for line in reversed(log.splitlines()):
        if _EXCEPTION_LINE.match(line.strip()):
            return line.strip()
    if returncode < 0:
        return f"killed by signal {-returncode}"
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit code {returncode} with no output"


class SweepStopped(Exception):
    """A SIGINT / SIGTERM stopped the sweep: its running points saved a checkpoint, the tables are current.

    exit_code: 128 + the signal number (130 / 143), as `vljax train` exits when preempted.
    """

    def __init__(self, signum: int, rows: list[dict[str, Any]]):
        self.signum, self.rows, self.exit_code = signum, rows, 128 + int(signum)
        super().__init__(f"stopped by {signal.Signals(signum).name}; the running points saved a checkpoint; rerun "
                         f"the same command to resume")


def _launch(workdir: Path, env: dict[str, str]) -> subprocess.Popen:
    log = open(workdir / LOG_FILE, "ab")
    cmd = [sys.executable, "-m", "vljax.experiments.run_point", str(workdir / POINT_FILE)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=os.getcwd())
    log.close()
    return proc


def _proc_start(pid: int) -> str | None:
    """-> the process's start time in clock ticks since boot (Linux /proc), or None: with the pid, it names the
    process, so a pid reused after a restart is not taken for the trainer that held the lock."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _lock_holder(workdir: Path) -> str | None:
    """-> who trains this point now ('host pid N'), or None; a lock left by a process gone from this host is
    removed (one on another host cannot be checked and is reported)."""
    path = workdir / LOCK_FILE
    if not path.exists():
        return None
    try:
        lock = json.loads(path.read_text())
        host, pid = str(lock["host"]), int(lock["pid"])
    except (ValueError, KeyError, TypeError, OSError):
        path.unlink(missing_ok=True)
        return None
    if host == socket.gethostname():
        if Path("/proc").is_dir():
            started = _proc_start(pid)
            # NOTE: a start time that differs means the pid now names another process.
            alive = started is not None and lock.get("start") in (None, started)
        else:
            try:
                os.kill(pid, 0)
                alive = True
            except ProcessLookupError:
                alive = False
            except PermissionError:
                alive = True
        if not alive:
            path.unlink(missing_ok=True)
            return None
    return f"{host} pid {pid}"


def _take_lock(workdir: Path) -> str | None:
    """Creates the point's lock (O_EXCL: of two sweeps reaching the point at once, one gets it) naming this
    process; -> None when taken, else who holds it."""
    path = workdir / LOCK_FILE
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = _lock_holder(workdir)  # NOTE: removes a stale lock, then the loop tries once more
            if holder is not None:
                return holder
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(_lock_record(os.getpid()), f)
        return None
    return _lock_holder(workdir) or "another sweep"


def _lock_record(pid: int) -> dict:
    return {"host": socket.gethostname(), "pid": pid, "start": _proc_start(pid), "sweep_pid": os.getpid()}


def _forward_signals(stop: dict, running: list):
    """Installs SIGINT / SIGTERM handlers that record the signal and pass it to the running points (each saves a
    checkpoint and exits 130 / 143); -> a function that restores the previous handlers. Outside the main thread
    (where Python cannot install handlers) nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        # NOTE: forward first and print nothing here (the main loop says it): a print inside a handler that
        # interrupted one can raise, and the points would then never hear of the signal.
        for _, _, proc, _ in list(running):
            if proc.poll() is None:
                proc.send_signal(signum)
        stop.setdefault("signal", signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    return lambda: [signal.signal(s, h) for s, h in previous.items()]


def _summary(results: dict[str, float], keys: int = 3) -> str:
    from vljax.train.report import natural_key

    shown = [k for k in sorted(results, key=natural_key) if "/" in k][:keys]
    return " ".join(f"{k}={results[k]:.4f}" for k in shown)


def run_sweep(config_spec: str, sweep: str, root: str | Path, *, parallel: int = 1,
              cli_overrides: Sequence[str] = (), env: dict[str, str] | None = None,
              plan_only: bool = False, echo: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Runs the sweep's points (N at a time) under root, skipping finished ones -> their rows.

    The rows of every point under root are also written to root/results.csv and root/results.jsonl;
    a failed point's row has status 'failed' and its error. env: extra environment for the point subprocesses.
    plan_only: write every root/<id>/point.json and list the points, train nothing.
    """
    if parallel < 1:
        raise ValueError(f"parallel must be >= 1, got {parallel}")
    sweeps = named_sweeps(config_spec)
    if sweep not in sweeps:
        raise ConfigError(f"unknown sweep {sweep!r} for {config_spec}; defined: {', '.join(sweeps)}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    points = sweeps[sweep]
    # NOTE: validate every point's keys and values before any compute, so a typo fails the sweep at once.
    for i, ov in enumerate(points):
        try:
            point_config({"config": config_spec, "cli_overrides": list(cli_overrides), "overrides": ov},
                         check_paths=True)
        except ConfigError as e:
            raise ConfigError(f"sweep {sweep!r}, point {i + 1} of {len(points)} {ov}: {e}") from None
    cli_keys = {o.removeprefix("--config.").partition("=")[0] for o in cli_overrides}
    shadowed = sorted(cli_keys & {k for ov in points for k in ov})
    if shadowed:
        echo(f"[sweep] note: the points set {', '.join(shadowed)} themselves; the --config value of "
             f"{'that key' if len(shadowed) == 1 else 'those keys'} is overridden where they do")
    run_env = dict(os.environ, **(env or {}))
    queue, ids = [], set()
    for i, ov in enumerate(points):
        pid = point_id(config_spec, ov, cli_overrides)
        ids.add(pid)
        workdir = root / pid
        workdir.mkdir(exist_ok=True)
        point = {"id": pid, "config": config_spec, "sweep": sweep, "cli_overrides": list(cli_overrides),
                 "overrides": ov}
        tag = f"[sweep] {i + 1}/{len(points)} {pid}"
        holder = _lock_holder(workdir)
        if holder is not None:  # NOTE: its own sweep keeps its point.json (wall time included) up to date.
            echo(f"{tag}: being trained by {holder} ({workdir / LOCK_FILE}); skipped")
            continue
        if (workdir / POINT_FILE).exists():
            point["wall_time_s"] = json.loads((workdir / POINT_FILE).read_text()).get("wall_time_s", 0.0)
        _write_json(workdir / POINT_FILE, point)
        if _finished(workdir):
            echo(f"{tag}: finished earlier, skipped")
            continue
        if plan_only:
            echo(f"{tag}: planned {json.dumps(ov, default=repr)}")
            continue
        queue.append((tag, workdir))
    running: list[tuple[str, Path, subprocess.Popen, float]] = []
    stop: dict[str, Any] = {}
    restore_handlers = _forward_signals(stop, running)
    try:
        _run_queue(queue, running, parallel, stop, run_env, echo)
    except BaseException:
        # NOTE: the sweep itself failed: its points stop with a checkpoint rather than train on unwatched.
        for _, _, proc, _ in running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        raise
    finally:
        restore_handlers()
    # NOTE: the table covers every point under root (several sweeps may share it); the return
    # value and the summary only this sweep's points.
    rows = [r for r in collect(root) if r["id"] in ids]
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    shown = [f"{n} {s}" for s, n in counts.items() if n or s != "planned"]
    echo(f"[sweep] {sweep}: {len(rows)} points, " + ", ".join(shown)
         + f"; table: {root / 'results.csv'}")
    if stop.get("signal") is not None:
        raise SweepStopped(stop["signal"], rows)
    return rows


def _say_stop(stop: dict, echo) -> None:
    """Prints, once, that a signal is stopping the sweep (from the main loop, not from the handler)."""
    if stop.get("signal") is not None and not stop.get("said"):
        stop["said"] = True
        echo(f"[sweep] {signal.Signals(stop['signal']).name}: the running points save a checkpoint and stop; "
             f"no new point starts")


def _run_queue(queue: list, running: list, parallel: int, stop: dict, run_env: dict, echo) -> None:
    """Trains the queued points, `parallel` at a time, until the queue is empty or a signal stopped the sweep (then
    the running points are waited for: they save a checkpoint and exit)."""
    while (queue and stop.get("signal") is None) or running:
        while queue and len(running) < parallel and stop.get("signal") is None:
            tag, workdir = queue.pop(0)
            holder = _take_lock(workdir)
            if holder is not None:
                echo(f"{tag}: being trained by {holder} ({workdir / LOCK_FILE}); skipped")
                continue
            (workdir / ERROR_FILE).unlink(missing_ok=True)
            resumed = (workdir / "checkpoints").exists()
            echo(f"{tag}: {'resuming' if resumed else 'started'}")
            proc = _launch(workdir, run_env)
            _write_json(workdir / LOCK_FILE, _lock_record(proc.pid))
            running.append((tag, workdir, proc, time.time()))
            if stop.get("signal") is not None:  # NOTE: the signal came while this point was being launched
                proc.send_signal(stop["signal"])
        _say_stop(stop, echo)
        time.sleep(0.2)
        for item in list(running):
            tag, workdir, proc, t0 = item
            if proc.poll() is None:
                continue
            running.remove(item)
            (workdir / LOCK_FILE).unlink(missing_ok=True)
            wall = time.time() - t0
            _add_wall_time(workdir, wall)
            if proc.returncode == 0 and _finished(workdir):
                res = json.loads((workdir / RESULTS_FILE).read_text())
                echo(f"{tag}: done in {wall:.1f}s {_summary(res)}")
            elif proc.returncode in PREEMPTED_EXIT_CODES or (stop.get("signal") is not None and proc.returncode):
                # NOTE: a point the sweep's own signal reached before the trainer's handlers were up exits with
                # another code; it is stopped too, not failed.
                echo(f"{tag}: stopped by a signal after {wall:.1f}s (exit {proc.returncode}); "
                     f"rerun the sweep to resume it")
            else:
                log = _tail(workdir / LOG_FILE)
                err = {"returncode": proc.returncode, "error": _last_error_line(log, proc.returncode),
                       "log_tail": log}
                (workdir / ERROR_FILE).write_text(json.dumps(err, indent=2))
                echo(f"{tag}: FAILED (exit {proc.returncode}) {err['error']}  [log: {workdir / LOG_FILE}]")
    _say_stop(stop, echo)


def _write_json(path: Path, obj: Any) -> None:
    """Writes JSON through a temporary file and a rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=repr))
    os.replace(tmp, path)


def _add_wall_time(workdir: Path, seconds: float) -> None:
    """Accumulates the subprocess wall time across resumptions in point.json."""
    path = workdir / POINT_FILE
    point = json.loads(path.read_text())
    point["wall_time_s"] = float(point.get("wall_time_s", 0.0)) + seconds
    _write_json(path, point)


def _flatten(prefix: str, d: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}{k}": (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def point_row(workdir: Path) -> dict[str, Any]:
    """One point directory -> a flat row: id, status, method, overrides, FLOPs, compute, metrics, wall time."""
    from vljax import methods
    from vljax.experiments.flops import TRAIN_FACTOR, two_tower_flops

    point = json.loads((workdir / POINT_FILE).read_text())
    row: dict[str, Any] = {"id": point["id"], "config": point["config"], "sweep": point.get("sweep", "")}
    row.update(_flatten("override.", point.get("overrides", {})))
    cfg = point_config(point)
    row["method"] = cfg.method
    row["wall_time_s"] = point.get("wall_time_s", math.nan)
    try:
        # NOTE: the method's own forward count where it has one (FILIP: + token projections and the token-wise
        # similarity); else the towers and projections, without the batch-sized contrastive logits.
        method = methods.get_method(cfg.method)
        count = getattr(method, "forward_flops_per_example", None)
        row["fwd_flops_per_example"] = count(cfg) if count else two_tower_flops(cfg).forward
        row["train_flops_per_example"] = TRAIN_FACTOR * row["fwd_flops_per_example"]
    except (ValueError, KeyError, AttributeError) as e:  # NOTE: a model family without an analytic count.
        row["fwd_flops_per_example"] = row["train_flops_per_example"] = math.nan
        row["flops_error"] = str(e)
    if _finished(workdir):
        res = json.loads((workdir / RESULTS_FILE).read_text())
        row["status"] = "finished"
        if math.isnan(row["train_flops_per_example"]) and "flops_per_step_per_device" in res:
            # NOTE: no analytic count for this model family: fall back to XLA's count of the step.
            row["train_flops_per_example"] = (res["flops_per_step_per_device"] * res.get("num_devices", 1.0)
                                              / float(cfg.train.batch_size))
            row["flops_source"] = "compiled"
        row["samples_seen"] = res.get("examples_seen", math.nan)
        row["params"] = res.get("params", math.nan)
        row["compute"] = row["train_flops_per_example"] * row["samples_seen"]
        row.update({k: v for k, v in res.items() if k not in ("examples_seen", "params")})
    else:
        err_path = workdir / ERROR_FILE
        row["status"] = "failed" if err_path.exists() else "incomplete" if _started(workdir) else "planned"
        if err_path.exists():
            row["error"] = json.loads(err_path.read_text())["error"]
    return row


def collect(root: str | Path) -> list[dict[str, Any]]:
    """root/*/point.json (+ results.json or error.json) -> rows; writes root/results.csv and .jsonl."""
    root = Path(root)
    rows = [point_row(p.parent) for p in sorted(root.glob(f"*/{POINT_FILE}"))]
    write_table(rows, root)
    return rows


def _columns(rows: Iterable[dict[str, Any]]) -> list[str]:
    first = ["id", "status", "config", "sweep", "method"]
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    overrides = sorted(k for k in keys if k.startswith("override."))
    accounting = [k for k in ("fwd_flops_per_example", "train_flops_per_example", "samples_seen", "compute",
                              "params", "wall_time_s") if k in keys]
    rest = sorted(k for k in keys if k not in first + overrides + accounting)
    return [k for k in first if k in keys] + overrides + accounting + rest


def write_table(rows: list[dict[str, Any]], root: str | Path) -> None:
    """rows -> root/results.jsonl (one JSON object per line) and root/results.csv (union of columns)."""
    root = Path(root)
    with open(root / "results.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r, sort_keys=True, default=repr) + "\n")
    cols = _columns(rows)
    with open(root / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, restval="")
        w.writeheader()
        for r in rows:
            w.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()})


def read_rows(root: str | Path) -> list[dict[str, Any]]:
    """root/results.jsonl -> rows (as written by collect)."""
    path = Path(root) / "results.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `vljax sweep ... --root {root}` first")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
