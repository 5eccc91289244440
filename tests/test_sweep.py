"""Sweeps (run, skip finished, record failures, collect) and sweep reports (fits, comparison, frontier)."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vljax.config import ConfigError
from vljax.experiments import report, sweep
from vljax.experiments.flops import two_tower_flops

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--config.data.world.resolution=32", "--config.data.max_len=16", "--config.train.batch_size=16",
         "--config.model.image.width=32", "--config.model.image.depth=1", "--config.model.image.num_heads=2",
         "--config.model.image.mlp_dim=64", "--config.model.image.patch_size=(8, 8)",
         "--config.model.text.width=32", "--config.model.text.depth=1",
         "--config.model.text.num_heads=2", "--config.model.text.mlp_dim=64", "--config.model.embed_dim=16",
         "--config.evals.zeroshot.n=32", "--config.evals.retrieval.n=32", "--config.eval_batch_size=32",
         "--config.train.log_every=2", "--config.checkpoint.every=1000", "--config.data.num_threads=1"]

SWEEP_CONFIG = '''
import importlib.util
_spec = importlib.util.spec_from_file_location("clip_cfg", {clip!r})
clip = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(clip)
PRESETS = clip.PRESETS


def get_config(arg="tiny"):
    return clip.get_config(arg)


def get_sweep(arg="tiny"):
    return {{"grid": [{{"train.steps": 3}}, {{"model.text.num_heads": 5, "data.world.objects.count": (1, 3)}}],
             "typo": [{{"train.stepz": 2}}]}}
'''


def _write_config(tmp_path):
    path = tmp_path / "tiny_sweep.py"
    path.write_text(SWEEP_CONFIG.format(clip=str(ROOT / "configs" / "clip.py")))
    return str(path)


def test_point_id_is_stable_and_distinct():
    a = sweep.point_id("configs/clip.py:tiny", {"train.steps": 100, "model.embed_dim": 32})
    assert a == sweep.point_id("configs/clip.py:tiny", {"model.embed_dim": 32, "train.steps": 100})
    assert a.startswith("clip-embed_dim32-steps100-")
    others = {sweep.point_id("configs/siglip.py:tiny", {"train.steps": 100, "model.embed_dim": 32}),
              sweep.point_id("configs/clip.py:tiny", {"train.steps": 100, "model.embed_dim": 64}),
              sweep.point_id("configs/clip.py:tiny", {"train.steps": 100, "model.embed_dim": 32}, ["--config.seed=1"])}
    assert a not in others and len(others) == 3


def test_named_sweeps_accepts_dict_or_list(tmp_path):
    sweeps = sweep.named_sweeps("configs/clip.py:tiny")
    assert {"scaling", "seeds"} <= set(sweeps) and len(sweeps["scaling"]) == 9
    # the ResNet preset's scaling points are valid overrides of it (no ViT-only keys)
    from vljax.config import load_config

    for point in sweep.named_sweeps("configs/clip.py:tiny_resnet")["scaling"]:
        c = load_config("configs/clip.py:tiny_resnet", [f"--config.{k}={v}" for k, v in point.items()])
        assert c.model.image.width == point["model.image.width"] and c.model.image.arch == "resnet"
    listed = tmp_path / "listed.py"
    listed.write_text("def get_config(arg=None):\n    return None\n\n"
                      "def get_sweep(arg=None):\n    return [{'seed': 1}, {'seed': 2}]\n")
    assert sweep.named_sweeps(str(listed)) == {"default": [{"seed": 1}, {"seed": 2}]}
    bare = tmp_path / "bare.py"
    bare.write_text("def get_config(arg=None):\n    return None\n")
    with pytest.raises(ConfigError, match="get_sweep"):
        sweep.named_sweeps(str(bare))


def test_unknown_sweep_or_key_fails_before_compute(tmp_path):
    cfg = _write_config(tmp_path)
    with pytest.raises(ConfigError, match="unknown sweep 'nope'.*grid, typo"):
        sweep.run_sweep(cfg + ":tiny", "nope", tmp_path / "r")
    with pytest.raises(ConfigError, match="train.stepz"):
        sweep.run_sweep(cfg + ":tiny", "typo", tmp_path / "r")
    assert not list((tmp_path / "r").glob("*/point.json"))


def test_plan_only_writes_points_and_trains_nothing(tmp_path):
    cfg = _write_config(tmp_path)
    lines = []
    rows = sweep.run_sweep(cfg + ":tiny", "grid", tmp_path / "r", plan_only=True, echo=lines.append)
    assert [r["status"] for r in rows] == ["planned"] * 2
    assert sum(": planned" in line for line in lines) == 2 and "0 incomplete, 2 planned" in lines[-1]
    for r in rows:
        point = json.loads((tmp_path / "r" / r["id"] / "point.json").read_text())
        assert point["sweep"] == "grid" and not (tmp_path / "r" / r["id"] / "checkpoints").exists()


def test_sweep_flops_are_the_methods_own_count_where_it_has_one(tmp_path):
    """FILIP's point counts its token projections and token-wise similarity (forward_flops_per_example), a CLIP
    point the two-tower count; both without training (a planned point)."""
    from vljax.config import load_config
    from vljax.methods import filip

    rows = sweep.run_sweep("configs/filip.py:tiny", "vs_clip", tmp_path / "r", plan_only=True, echo=lambda _: None,
                           cli_overrides=SMALL)
    by_method = {r["method"]: r for r in rows}
    cfg = load_config("configs/filip.py:tiny", SMALL)
    assert by_method["filip"]["fwd_flops_per_example"] == pytest.approx(filip.forward_flops_per_example(cfg))
    assert by_method["clip"]["fwd_flops_per_example"] == pytest.approx(two_tower_flops(cfg).forward)
    assert by_method["filip"]["train_flops_per_example"] > 1.1 * by_method["clip"]["train_flops_per_example"]


def test_preempted_point_is_incomplete_not_failed_and_shadowed_keys_are_named(tmp_path, monkeypatch):
    """A point whose trainer exits 143 (SIGTERM, checkpoint saved) stays 'incomplete' with no error.json; a --config
    key that a point also sets is named in a note."""
    class Stopped:  # NOTE: stands in for the point's subprocess, which a preemption stopped
        returncode, pid = 143, 0

        def poll(self):
            return self.returncode

    def launch(workdir, env):
        (workdir / sweep.LOG_FILE).write_text("stopped\n")  # NOTE: as _launch opens the point's log
        return Stopped()

    monkeypatch.setattr(sweep, "_launch", launch)
    lines = []
    rows = sweep.run_sweep(_write_config(tmp_path) + ":tiny", "grid", tmp_path / "r",
                           cli_overrides=["--config.train.steps=2"], echo=lines.append)
    assert [r["status"] for r in rows] == ["incomplete"] * 2
    assert not list((tmp_path / "r").glob("*/error.json"))
    assert sum("stopped by a signal" in line and "rerun the sweep to resume" in line for line in lines) == 2
    assert any("note: the points set train.steps themselves" in line for line in lines)


def test_a_signal_to_the_sweep_reaches_its_points_and_the_tables_are_written(tmp_path, monkeypatch):
    """SIGTERM to the sweep process: the running point gets it (it saves a checkpoint and exits 143), no new point
    starts, its wall time is kept, the tables are current, and the sweep raises SweepStopped (the CLI exits 143)."""
    import signal

    class Trainer:  # NOTE: stands in for run_point: alive until it gets a signal, then exits as vljax train does
        returncode = None
        pid = os.getpid()

        def __init__(self, workdir):
            (workdir / sweep.LOG_FILE).write_text("training\n")
            self.polls = 0

        def poll(self):
            self.polls += 1
            if self.polls == 2:
                os.kill(os.getpid(), signal.SIGTERM)  # NOTE: e.g. the scheduler's preemption of the sweep
            return self.returncode

        def send_signal(self, signum):
            self.returncode = 128 + signum

    launched = []
    monkeypatch.setattr(sweep, "_launch", lambda workdir, env: launched.append(Trainer(workdir)) or launched[-1])
    lines = []
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(sweep.SweepStopped) as stopped:
        sweep.run_sweep(_write_config(tmp_path) + ":tiny", "grid", tmp_path / "r", echo=lines.append)
    assert stopped.value.exit_code == 143 and len(launched) == 1  # the second point never started
    assert any("SIGTERM: the running points save a checkpoint" in line for line in lines)
    rows = {r["status"]: r for r in stopped.value.rows}
    assert sorted(rows) == ["incomplete", "planned"] and rows["incomplete"]["wall_time_s"] > 0
    assert not list((tmp_path / "r").glob("*/error.json")) and not list((tmp_path / "r").glob("*/running.json"))
    assert (tmp_path / "r" / "results.csv").exists()
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back


def test_a_point_another_process_trains_is_skipped_and_a_stale_lock_removed(tmp_path, monkeypatch):
    import socket

    started = []
    monkeypatch.setattr(sweep, "_launch", lambda workdir, env: started.append(workdir) or _Done())
    cfg = _write_config(tmp_path)
    sweep.run_sweep(cfg + ":tiny", "grid", tmp_path / "r", plan_only=True, echo=lambda _: None)
    first, second = sorted((tmp_path / "r").glob("*/point.json"))
    first.parent.joinpath(sweep.LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    second.parent.joinpath(sweep.LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(),
                                                                   "pid": int(dead.stdout)}))
    lines = []
    sweep.run_sweep(cfg + ":tiny", "grid", tmp_path / "r", echo=lines.append)
    assert started == [second.parent]  # the live lock's point is left to its trainer; the stale lock is gone
    assert any(f"being trained by {socket.gethostname()} pid {os.getpid()}" in line for line in lines)
    # A pid that now names another process (its start time differs from the lock's) is stale too.
    first.parent.joinpath(sweep.LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                                                  "start": "1"}))
    assert sweep._lock_holder(first.parent) is None and not first.parent.joinpath(sweep.LOCK_FILE).exists()
    assert sweep._take_lock(first.parent) is None and sweep._take_lock(first.parent) is not None  # one taker


class _Done:
    """A point's subprocess that exits at once with an error (the test only follows the scheduling)."""
    returncode, pid = 1, 0

    def poll(self):
        return self.returncode


def test_sweep_runs_records_failure_skips_finished_and_reports(tmp_path):
    cfg = _write_config(tmp_path)
    root = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "vljax.main", "sweep", "--config", cfg + ":tiny", "--sweep", "grid",
           "--root", str(root), "--parallel", "2", *SMALL]
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=1", "JAX_PLATFORMS": "cpu"}

    # Interrupt the good point after 1 of its 3 steps, as a preempted sweep would leave it.
    good = sweep.point_id(cfg + ":tiny", {"train.steps": 3}, SMALL)
    pre = subprocess.run([sys.executable, "-m", "vljax.main", "train", "--config", cfg + ":tiny", *SMALL,
                          "--config.train.steps=3", "--stop_after", "1", "--workdir", str(root / good)],
                         cwd=ROOT, env=dict(os.environ, **env), capture_output=True, text=True, timeout=600)
    assert pre.returncode == 0 and not (root / good / "results.json").exists(), pre.stderr

    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, **env), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # one point is broken on purpose
    out = proc.stdout
    assert f"{good}: resuming" in out and "resumed from step 1" in (root / good / "log.txt").read_text()
    assert out.count(": started") == 1 and out.count(": done in") == 1 and out.count("FAILED") == 1, out
    rows = list(csv.DictReader(open(root / "results.csv")))
    jsonl = [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]
    assert len(rows) == len(jsonl) == 2
    by_status = {}
    for r in jsonl:
        by_status.setdefault(r["status"], []).append(r)
    assert len(by_status["finished"]) == 1 and len(by_status["failed"]) == 1
    # NOTE: a point that validates and then fails in its trainer (the model's own check).
    assert by_status["failed"][0]["error"] == "ValueError: width 32 is not divisible by num_heads=5; set head_dim"
    for r in by_status["finished"]:
        point = json.loads((root / r["id"] / "point.json").read_text())
        flops = two_tower_flops(sweep.point_config(point))
        steps = r["override.train.steps"]
        assert r["samples_seen"] == steps * 16 and r["train_steps"] == steps
        assert r["train_flops_per_example"] == pytest.approx(flops.train)
        assert r["compute"] == pytest.approx(flops.train * steps * 16)
        assert r["params"] > 0 and r["wall_time_s"] > 0 and 0 <= r["zeroshot/shape_acc"] <= 1
        assert r["method"] == "clip"
    header = list(rows[0])
    assert header[:5] == ["id", "status", "config", "sweep", "method"]
    assert {"override.train.steps", "compute", "samples_seen", "params", "wall_time_s"} <= set(header)

    # Rerun: finished points are skipped, the failed one is retried (and fails again).
    failed_id = by_status["failed"][0]["id"]
    point = json.loads((root / failed_id / "point.json").read_text())
    assert sweep.point_config(point).data.world.objects.count == (1, 3)  # the tuple survives JSON
    wall = {r["id"]: r["wall_time_s"] for r in jsonl}
    mtimes = {r["id"]: (root / r["id"] / "results.json").stat().st_mtime for r in by_status["finished"]}
    again = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, **env), capture_output=True, text=True, timeout=600)
    assert again.returncode == 1
    assert again.stdout.count("finished earlier, skipped") == 1 and again.stdout.count("FAILED") == 1
    assert mtimes == {i: (root / i / "results.json").stat().st_mtime for i in mtimes}
    rerun = {r["id"]: r["wall_time_s"] for r in sweep.read_rows(root)}
    assert rerun[failed_id] > wall[failed_id] and all(rerun[i] == wall[i] for i in mtimes)  # wall time accumulates

    rep = subprocess.run([sys.executable, "-m", "vljax.main", "report", "--root", str(root), "--n_boot", "50"],
                         cwd=ROOT, env=dict(os.environ, **env), capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr
    text = (root / "report.md").read_text()
    assert "## Results" in text and "### Failed points" in text and "## Compute frontier" in text
    assert (root / "frontier.png").stat().st_size > 0


def _synthetic_root(tmp_path, exponents, noise=0.01, seed=0):
    """Point dirs with results.json from known laws E = b * C^a per method (no training)."""
    rng = np.random.default_rng(seed)
    root = tmp_path / "synthetic"
    truth = {}
    for method, (a, b) in exponents.items():
        spec = f"configs/{method}.py:tiny"
        for i, steps in enumerate((100, 200, 400, 800, 1600, 3200, 6400)):
            ov = {"train.steps": steps}
            pid = sweep.point_id(spec, ov)
            d = root / pid
            d.mkdir(parents=True)
            point = {"id": pid, "config": spec, "sweep": "scaling", "cli_overrides": [], "overrides": ov,
                     "wall_time_s": 1.0 + i}
            (d / "point.json").write_text(json.dumps(point))
            c = two_tower_flops(sweep.point_config(point)).train * steps * 128
            err = b * c ** a * 10 ** rng.normal(0, noise)
            (d / "results.json").write_text(json.dumps({
                "zeroshot/shape_acc": 1 - err, "examples_seen": steps * 128.0, "params": 1e6,
                "train_steps": float(steps)}))
        truth[method] = (a, b)
    return root, truth


def test_report_recovers_known_exponents_and_compares(tmp_path):
    root, truth = _synthetic_root(tmp_path, {"clip": (-0.10, 4.0), "siglip": (-0.20, 60.0)})
    # A failed point must be listed, not fitted.
    bad = root / "broken"
    bad.mkdir()
    (bad / "point.json").write_text(json.dumps({"id": "broken", "config": "configs/clip.py:tiny",
                                                "overrides": {"train.steps": 3}}))
    (bad / "error.json").write_text(json.dumps({"error": "RuntimeError: boom", "returncode": 1}))
    path = report.write_sweep_report(root, n_boot=200, level=0.9)
    text = path.read_text()
    rows = sweep.read_rows(root)
    points = report.scaling_points(rows, "zeroshot/shape_acc")
    fits = report.fit_groups(points, "method", n_boot=200, level=0.9)
    for method, (a, _) in truth.items():
        fit, boot = fits[method]
        assert fit.a == pytest.approx(a, abs=0.01)
        lo, hi = boot.interval("a")
        assert lo < fit.a < hi
        assert f"| {method} | 7 | {fit.a:.3f} |" in text
    comps = report.compare_groups(points, "method", ["clip", "siglip"], n_boot=200, level=0.9)
    (_, _, comp), = comps
    assert comp.paired and comp.significant and comp.diff == pytest.approx(0.10, abs=0.02)
    assert "| clip | siglip |" in text and "RuntimeError: boom" in text
    clip_acc = [p["zeroshot/shape_acc"] for p in points if p["method"] == "clip"]
    assert f"| clip | 7 | {np.mean(clip_acc):.4f} ± {np.std(clip_acc, ddof=1):.4f} | {max(clip_acc):.4f} |" in text
    assert (root / "scaling.png").stat().st_size > 0 and (root / "frontier.png").stat().st_size > 0
    assert "| broken |" in text and text.count("failed") >= 1
    assert "R² " in text and "left out" not in text
    # The bootstrap does not depend on the row order.
    again = report.fit_groups(points[::-1], "method", n_boot=200, level=0.9)
    assert again["clip"][1].interval("a") == fits["clip"][1].interval("a")


def test_report_names_the_points_it_leaves_out_and_flags_a_flat_fit(tmp_path):
    """A run at accuracy 1 (error 0) is listed with the reason, not silently dropped; a group whose error does not
    fall with compute is flagged; a metric outside [0, 1] is refused."""
    root, _ = _synthetic_root(tmp_path, {"clip": (0.05, 0.1)})  # error rising with compute
    best = sorted(root.glob("*/results.json"))[0]
    res = json.loads(best.read_text())
    res["zeroshot/shape_acc"] = 1.0
    best.write_text(json.dumps(res))
    text = report.write_sweep_report(root, n_boot=50).read_text()
    assert f"| {best.parent.name} | zeroshot/shape_acc = 1 (error 0 has no logarithm) |" in text
    assert "a >= 0: the error does not fall with compute here" in text
    with pytest.raises(ValueError, match=r"metric 'train_steps' is not in \[0, 1\]"):
        report.write_sweep_report(root, metric="train_steps", n_boot=50)


def test_report_rejects_unknown_metric_column_and_bad_options(tmp_path):
    root, _ = _synthetic_root(tmp_path, {"clip": (-0.1, 4.0)})
    with pytest.raises(ValueError, match="metric 'retrieval/nope'.*zeroshot/shape_acc"):
        report.write_sweep_report(root, metric="retrieval/nope", n_boot=20)
    with pytest.raises(ValueError, match="group_by='methd' is no column.*nearest: method"):
        report.write_sweep_report(root, group_by="methd", n_boot=20)
    with pytest.raises(ValueError, match=r"level=1.5: a confidence level is in \(0, 1\)"):
        report.write_sweep_report(root, level=1.5)
    with pytest.raises(ValueError, match="n_boot=-3"):
        report.write_sweep_report(root, n_boot=-3)


def test_pareto_frontier_matches_brute_force():
    rng = np.random.default_rng(3)
    c = rng.uniform(1, 100, 40)
    e = rng.uniform(0.1, 1.0, 40)
    got = set(report.pareto_frontier(c, e).tolist())
    want = {i for i in range(40) if not any((c[j] <= c[i]) and (e[j] < e[i]) for j in range(40) if j != i)}
    assert got == want


def test_compare_groups_pairs_grids_that_differ_only_by_group_settings():
    # NOTE: each group carries its own fixed settings (here `variant` and `freeze`); the grid (`steps`) is shared.
    rng = np.random.default_rng(0)
    points = []
    for variant, a, freeze in (("ntp", -0.2, ""), ("prior", -0.3, "^ref/")):
        for steps in (100, 200, 400, 800, 1600):
            c = 1e9 * steps
            points.append({"override.variant": variant, "override.freeze": freeze, "override.steps": steps,
                           "compute": c, "error": 5.0 * c ** a * np.exp(rng.normal(0, 0.01))})
    (_, _, comp), = report.compare_groups(points, "override.variant", ["ntp", "prior"], n_boot=200, level=0.9)
    assert comp.paired and comp.significant and comp.diff == pytest.approx(0.1, abs=0.02)
    # NOTE: grids that differ (a step count missing from one side) are compared unpaired.
    (_, _, comp2), = report.compare_groups(points[:-1] + [dict(points[-1], **{"override.steps": 3200})],
                                           "override.variant", ["ntp", "prior"], n_boot=200, level=0.9)
    assert not comp2.paired


def test_seed_table_and_paired_diffs_by_hand():
    groups = {"a": [{"override.seed": 0, "m": 0.5}, {"override.seed": 1, "m": 0.7}, {"override.seed": 2, "m": "x"}],
              "b": [{"override.seed": 1, "m": 0.4}, {"override.seed": 0, "m": 0.4}]}
    table = report.seed_table(groups, ["m"]).splitlines()
    assert table[0] == "| run | seeds | m |"
    # a: mean 0.6, s.e. std([.5, .7], ddof=1) / sqrt(2) = 0.1 (the non-numeric row is dropped).
    assert table[2] == "| a | 3 | 0.600 ± 0.100 |" and table[3] == "| b | 2 | 0.400 ± 0.000 |"
    lines = report.paired_seed_diffs(groups, "a", "b", ["m"]).splitlines()
    assert lines[0] == "paired a - b over seeds [0, 1]:"
    assert "+0.200 ± 0.100" in lines[1] and "[0.1, 0.3]" in lines[1]


def test_every_named_sweep_of_every_preset_is_a_valid_config():
    """Each configs/*.py preset's get_sweep points load and validate (a sweep that cannot run on a preset is not
    offered for it), and a point value of the wrong type fails naming the sweep, the point and the key."""
    from vljax.config import load_module

    checked = 0
    for path in sorted((ROOT / "configs").glob("*.py")):
        module = load_module(path)
        if not hasattr(module, "get_sweep"):
            continue
        for preset in module.PRESETS:
            spec = f"configs/{path.name}:{preset}"
            for name, points in sweep.named_sweeps(spec).items():
                for ov in points:
                    sweep.point_config({"config": spec, "overrides": ov})
                    checked += 1
    assert checked > 100
    assert "scaling" not in sweep.named_sweeps("configs/clip.py:base")


def test_sweep_point_values_get_the_clis_type_checks(tmp_path):
    from vljax.config import load_config, set_overrides

    cfg = load_config("configs/clip.py:tiny")
    set_overrides(cfg, {"optim.lr": 1, "model.image.patch_size": [4, 4]})  # int -> float, list -> tuple
    assert isinstance(cfg.optim.lr, float) and cfg.model.image.patch_size == (4, 4)
    with pytest.raises(ConfigError, match=r"config\.optim\.lr='0\.1': expected float, got str"):
        set_overrides(cfg, {"optim.lr": "0.1"})
    with pytest.raises(ConfigError, match=r"config\.train\.steps=2\.5: expected int, got float"):
        set_overrides(cfg, {"train.steps": 2.5})
    path = tmp_path / "bad_sweep.py"
    path.write_text(SWEEP_CONFIG.format(clip=str(ROOT / "configs" / "clip.py")).replace(
        '"typo": [{"train.stepz": 2}]', '"typo": [{"train.steps": 2}, {"optim.lr": "0.1"}]'))
    with pytest.raises(ConfigError, match=r"sweep 'typo', point 2 of 2 \{'optim.lr': '0.1'\}: config\.optim\.lr"):
        sweep.run_sweep(str(path) + ":tiny", "typo", tmp_path / "r")
