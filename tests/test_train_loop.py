"""End-to-end loop on the world: results/report files, exact resume, signals, non-finite stop."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from vljax.config import load_config
from vljax.train import loop
from vljax.train.checkpoint import Checkpointer

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--config.data.world.resolution=32", "--config.data.max_len=16", "--config.train.batch_size=16",
         "--config.model.image.width=32", "--config.model.image.depth=1", "--config.model.image.num_heads=2",
         "--config.model.image.mlp_dim=64", "--config.model.image.patch_size=(8, 8)",
         "--config.model.text.width=32", "--config.model.text.depth=1",
         "--config.model.text.num_heads=2", "--config.model.text.mlp_dim=64", "--config.model.embed_dim=16",
         "--config.evals.zeroshot.n=32", "--config.evals.retrieval.n=32", "--config.eval_batch_size=32",
         "--config.train.log_every=2", "--config.checkpoint.every=1000",
         "--config.data.num_threads=1"]


def _cfg(steps, *extra):
    return load_config("configs/clip.py:tiny", SMALL + [f"--config.train.steps={steps}", *extra])


def _params(workdir):
    cfg = _cfg(6)
    exp = loop.Experiment(cfg, workdir)
    ck = Checkpointer(workdir, async_save=False)
    state, data_state, step = ck.restore(*exp.abstract_state())
    ck.close()
    return jax.tree.map(np.asarray, state.params), data_state, step


def test_resume_is_bitwise_identical(tmp_path, monkeypatch):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    res = loop.train_and_evaluate(_cfg(6), straight)
    assert (straight / "results.json").exists() and (straight / "report.md").exists()
    assert (straight / "loss_curve.png").exists()
    assert any(p.name.startswith("events.out.tfevents") for p in straight.iterdir())
    flat = json.loads((straight / "results.json").read_text())
    assert all(isinstance(v, (int, float)) for v in flat.values())
    assert {"zeroshot/shape_acc", "retrieval/i2t_r1", "retrieval/t2i_r10"} <= set(flat)
    assert res["train_steps"] == 6
    # checkpoint.every dividing the step count: the final save must not collide with the periodic one
    assert loop.train_and_evaluate(_cfg(4, "--config.checkpoint.every=2"), tmp_path / "every2")["train_steps"] == 4
    # Half, "process exit" (stop with checkpoint), then a fresh Experiment resumes to the end.
    assert loop.train_and_evaluate(_cfg(6), resumed, stop_after=3) == {}
    assert Checkpointer(resumed).latest_step() == 3
    with monkeypatch.context() as m:
        # the resumed run restores into Experiment.abstract_state(): no fresh state is initialized first
        m.setattr(loop.Experiment, "create_state", lambda self: pytest.fail("a resumed run initialized a state"))
        loop.train_and_evaluate(_cfg(6), resumed)
    p1, d1, s1 = _params(straight)
    p2, d2, s2 = _params(resumed)
    assert s1 == s2 == 6 and d1 == d2 and d1 is not None
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
        np.testing.assert_array_equal(a, b)


def test_abstract_state_is_create_state_without_compiling(tmp_path):
    """Experiment.abstract_state(): the placed ShapeDtypeStructs of create_state's state, by eval_shape only."""
    exp = loop.Experiment(_cfg(2, "--config.mesh.data=2", "--config.mesh.fsdp=4"), tmp_path)
    jax.random.key(0)  # NOTE: making a key compiles once per process; the count below is about the state
    # NOTE: lowerings, not backend compiles: the session's compilation cache may spare create_state the latter
    compiles = []
    listener = lambda event, secs, **kw: compiles.append(event) if "jaxpr_to_mlir_module" in event else None
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        abstract, shardings = exp.abstract_state()
        n_abstract = len(compiles)
        state, want = exp.create_state()
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert n_abstract == 0 and len(compiles) >= 1  # create_state lowers (compiles) its init; abstract_state nothing
    assert jax.tree.structure(abstract) == jax.tree.structure(state)
    for a, s, sh, w in zip(jax.tree.leaves(abstract), jax.tree.leaves(state), jax.tree.leaves(shardings),
                           jax.tree.leaves(want)):
        assert isinstance(a, jax.ShapeDtypeStruct) and (a.shape, a.dtype) == (s.shape, s.dtype)
        assert a.sharding == s.sharding == sh == w
    kernel = abstract.params["img_tower"]["block_00"]["mlp"]["wi"]["kernel"]
    assert "fsdp" in str(kernel.sharding.spec)  # really sharded, not replicated


def test_non_finite_loss_stops_naming_step(tmp_path, monkeypatch, capsys):
    real = loop.make_train_step

    def poisoned(*args, **kwargs):
        step = real(*args, **kwargs)

        def wrapped(state, batch):
            new, m = step(state, batch)
            m["finite"] = m["finite"] & (state.step != 3)
            return new, m
        return wrapped

    monkeypatch.setattr(loop, "make_train_step", poisoned)
    cfg = _cfg(8, "--config.checkpoint.every=2", "--config.checkpoint.async_save=False")
    with pytest.raises(loop.NonFiniteLossError, match="step 4"):
        loop.train_and_evaluate(cfg, tmp_path)
    assert Checkpointer(tmp_path).latest_step() == 2  # step 4 was never saved
    # the tiny preset's 50 warmup steps in an 8-step run: said at the start
    assert "note: optim.warmup_steps=50 >= the 8 steps this run trains" in capsys.readouterr().out


def test_sigterm_checkpoints_and_exits(tmp_path):
    cmd = [sys.executable, "-m", "vljax.main", "train", "--config", "configs/clip.py:tiny",
           "--workdir", str(tmp_path), "--config.train.steps=100000", *SMALL]
    env = dict(os.environ, XLA_FLAGS="", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("[train] step"):
            break
        assert time.time() < deadline, "".join(lines)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, "".join(lines) + out  # the shell's code for SIGTERM: 143
    assert "stopped at step" in out and "(SIGTERM); checkpoint saved" in out
    step = Checkpointer(tmp_path).latest_step()
    assert step is not None and step > 0
