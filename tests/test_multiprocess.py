"""Two local processes (CPU gloo collectives, 2 devices each), launched with tpu_scripts/multinode.sh unless a test
must signal the python process itself:
- compute the sharded contrastive losses and their gradients; the result equals the single-process run;
- run `vljax train` (one 4-device FSDP mesh across them, per-host data slices assembled into global batches, a
  checkpoint that each process writes its shards of, stopped and resumed, sharded evals) like one process with 4
  devices: the same per-step losses and gradient norms, eval metrics and saved params. The config drops caption
  words at random, so this also checks that every process count draws the same augmentations for the same rows;
- stop together, each with the same checkpoint, when only one of them gets SIGTERM."""
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from test_train_loop import SMALL

ROOT = Path(__file__).resolve().parents[1]
B, E = 8, 16


def _inputs():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(B, E)).astype(np.float32)
    txt = rng.normal(size=(B, E)).astype(np.float32)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    return img, txt, np.float32(7.5), np.float32(-3.0)


def _worker(out_dir: str) -> None:
    """One process of the job: joins via the VLJAX_* env, computes the sharded losses + grads, writes JSON."""
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    from jax.experimental import multihost_utils

    from vljax import sharding
    from vljax.losses import contrastive

    assert sharding.maybe_initialize_distributed()
    pid, n = jax.process_index(), jax.process_count()
    mesh = sharding.make_mesh({"data": -1})
    img, txt, scale, bias = _inputs()
    rows = slice(pid * B // n, (pid + 1) * B // n)
    glob = sharding.host_to_global({"img": img[rows], "txt": txt[rows]}, mesh)

    def softmax(i, t):
        return contrastive.sharded_softmax_infonce(i, t, scale, mesh)[0]

    def ring(i, t):
        return contrastive.sharded_sigmoid_ring(i, t, scale, bias, mesh)[0]

    out = {"process_count": n, "devices": jax.device_count()}
    with jax.set_mesh(mesh):
        for name, fn in (("softmax", softmax), ("ring", ring)):
            loss, grads = jax.jit(jax.value_and_grad(fn, argnums=(0, 1)))(glob["img"], glob["txt"])
            g_img, g_txt = (np.asarray(multihost_utils.process_allgather(g, tiled=True)) for g in grads)
            out[name] = {"loss": float(loss), "g_img": g_img.tolist(), "g_txt": g_txt.tolist()}
    Path(out_dir, f"process{pid}.json").write_text(json.dumps(out))


def _reference():
    import jax

    from vljax.losses import contrastive

    img, txt, scale, bias = _inputs()
    ref = {}
    for name, fn in (("softmax", lambda i, t: contrastive.softmax_infonce(i, t, scale)[0]),
                     ("ring", lambda i, t: contrastive.sigmoid_loss(i, t, scale, bias)[0])):
        loss, (gi, gt) = jax.value_and_grad(fn, argnums=(0, 1))(img, txt)
        ref[name] = (float(loss), np.asarray(gi), np.asarray(gt))
    # float64 numpy check of the softmax loss value itself.
    logits = scale * img.astype(np.float64) @ txt.astype(np.float64).T
    lse_r = np.log(np.exp(logits).sum(1))
    lse_c = np.log(np.exp(logits).sum(0))
    np_loss = 0.5 * (np.mean(lse_r - np.diag(logits)) + np.mean(lse_c - np.diag(logits)))
    np.testing.assert_allclose(ref["softmax"][0], np_loss, rtol=1e-5)
    return ref


def _launch(cmd: list[str], devices: int, process_id: int | None = None, port: int = 0, multinode: bool = True):
    """cmd on `devices` CPU devices; with process_id, process `process_id` of two: through tpu_scripts/multinode.sh,
    or (multinode=False) with its VLJAX_* variables set here, so that the Popen is the python process itself."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               PYTHONPATH=str(ROOT))
    if process_id is not None and multinode:
        cmd = ["bash", str(ROOT / "tpu_scripts" / "multinode.sh"), "--coordinator", f"localhost:{port}",
               "--num-processes", "2", "--process-id", str(process_id), "--", *cmd]
    elif process_id is not None:
        env.update(VLJAX_COORDINATOR=f"localhost:{port}", VLJAX_NUM_PROCESSES="2", VLJAX_PROCESS_ID=str(process_id))
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _train(args: list[str], workdir: Path) -> list[str]:
    """The `vljax train` command line."""
    return [sys.executable, "-m", "vljax.main", "train", *args, "--workdir", str(workdir)]


def _finish(procs, timeout=300) -> list[str]:
    """Waits for every process; fails the test with their logs if one times out or exits non-zero."""
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=timeout)[0])
    except subprocess.TimeoutExpired:
        pytest.fail("run timed out:\n" + "\n-----\n".join(logs))
    finally:
        for p in procs:
            p.kill()
    assert all(p.returncode == 0 for p in procs), "\n-----\n".join(x[-3000:] for x in logs)
    return logs


def test_two_processes_match_single_process(tmp_path):
    import portpicker

    port = portpicker.pick_unused_port()
    _finish([_launch([sys.executable, __file__, "--worker", str(tmp_path)], 2, pid, port) for pid in range(2)],
            timeout=180)
    ref = _reference()
    for pid in range(2):
        got = json.loads((tmp_path / f"process{pid}.json").read_text())
        assert got["process_count"] == 2 and got["devices"] == 4
        for name, (loss, gi, gt) in ref.items():
            # float32 with a different reduction order: relative 1e-5 on the loss, 1e-5 abs on the grads.
            np.testing.assert_allclose(got[name]["loss"], loss, rtol=1e-5)
            np.testing.assert_allclose(np.asarray(got[name]["g_img"]), gi, atol=1e-5, rtol=1e-4)
            np.testing.assert_allclose(np.asarray(got[name]["g_txt"]), gt, atol=1e-5, rtol=1e-4)
            assert np.abs(gi).max() > 1e-3  # the gradients are non-trivial


def _train_rows(workdir: Path) -> list[dict]:
    rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [r for r in rows if "loss" in r]


def _saved_params(workdir: Path, step: int) -> dict:
    """A checkpoint's params as host arrays by path, restored onto this process's first device."""
    import jax
    import orbax.checkpoint as ocp
    from flax import traverse_util

    path = workdir / "checkpoints" / str(step) / "state"
    ckptr = ocp.StandardCheckpointer()
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one),
                          ckptr.metadata(path).item_metadata.tree)
    return traverse_util.flatten_dict(ckptr.restore(path, target)["params"], sep="/")


def test_vljax_train_on_two_processes_equals_one_process(tmp_path):
    import portpicker

    # NOTE: FSDP over all 4 devices, so params and optimizer state are sharded across the two processes and each
    # process writes and restores its own shards of the checkpoint.
    args = ["--config", "configs/clip.py:tiny", *SMALL, "--config.train.steps=3", "--config.train.log_every=1",
            "--config.checkpoint.async_save=False", "--config.data.attribute_drop.p=0.5", "--config.mesh.data=1",
            "--config.mesh.fsdp=-1"]
    multi, single = tmp_path / "two_processes", tmp_path / "one_process"
    port = portpicker.pick_unused_port()
    # NOTE: the two-process job is stopped at step 2 (as if preempted) and resumed from its checkpoint to step 3.
    _finish([_launch(_train(args + ["--stop_after", "2"], multi), 2, pid, port) for pid in range(2)])
    assert not (multi / "results.json").exists()
    port = portpicker.pick_unused_port()
    logs = _finish([_launch(_train(args, multi), 2, pid, port) for pid in range(2)])
    # NOTE: the run's summary lines come from process 0 only; every process says it resumed.
    assert "'fsdp': 4" in logs[0] and "processes=2" in logs[0] and "[vljax] method=" not in logs[1]
    assert all("resumed from step 2" in x for x in logs)
    _finish([_launch(_train(args, single), 4)])

    a, b = _train_rows(multi), _train_rows(single)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3]
    for ra, rb in zip(a, b):
        # NOTE: the same rows in the same order; only the reduction order of cross-process sums differs (float32).
        np.testing.assert_allclose([ra["loss"], ra["grad_norm"]], [rb["loss"], rb["grad_norm"]], rtol=1e-5)
    res_a, res_b = (json.loads((w / "results.json").read_text()) for w in (multi, single))
    assert res_a["num_devices"] == res_b["num_devices"] == 4.0
    for k in ("zeroshot/shape_acc", "zeroshot/color_acc", "retrieval/i2t_r1", "retrieval/t2i_r1"):
        assert res_a[k] == pytest.approx(res_b[k], abs=1e-6), k
    pa, pb = _saved_params(multi, 3), _saved_params(single, 3)
    assert sorted(pa) == sorted(pb) and len(pa) > 10
    for k in pa:
        np.testing.assert_allclose(np.asarray(pa[k]), np.asarray(pb[k]), rtol=1e-4, atol=1e-6, err_msg=k)


def test_a_signal_to_one_process_stops_every_process_at_the_same_step(tmp_path):
    """A preempted host gets SIGTERM alone: both processes must checkpoint the same step and exit (a process that
    stopped alone would leave the other waiting in the next step's collectives until the timeout)."""
    import portpicker

    args = ["--config", "configs/clip.py:tiny", *SMALL, "--config.train.steps=100000", "--config.train.log_every=1",
            "--config.checkpoint.async_save=False"]
    port = portpicker.pick_unused_port()
    procs = [_launch(_train(args, tmp_path), 2, pid, port, multinode=False) for pid in range(2)]
    head = []
    try:
        for line in procs[0].stdout:  # NOTE: process 0 prints the progress lines; both run the same steps
            head.append(line)
            if line.startswith("[train] step") and int(line.split()[2].split("/")[0]) >= 2:
                procs[1].send_signal(signal.SIGTERM)
                break
        logs = [procs[0].communicate(timeout=120)[0], procs[1].communicate(timeout=120)[0]]
    except subprocess.TimeoutExpired:
        pytest.fail("after SIGTERM to process 1 the job did not stop:\n" + "".join(head)[-3000:])
    finally:
        for p in procs:
            p.kill()
    logs[0] = "".join(head) + logs[0]
    # NOTE: both exit as SIGTERM stopped them (128 + 15), process 0 too: it stopped on process 1's signal.
    assert [p.returncode for p in procs] == [143, 143], "\n-----\n".join(x[-3000:] for x in logs)
    assert "received signal 15" in logs[1] and "received signal" not in logs[0]
    stops = [re.findall(r"stopped at step (\d+) \(SIGTERM\)", x) for x in logs]
    assert len(stops[0]) == len(stops[1]) == 1 and stops[0] == stops[1], stops
    assert (tmp_path / "checkpoints" / stops[0][0]).is_dir()
    assert not (tmp_path / "results.json").exists()


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--worker":
    _worker(sys.argv[2])
