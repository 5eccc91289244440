"""tpu_scripts/: each --dry-run prints the exact gcloud/srun/env commands; bad flags fail; shellcheck clean."""
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "tpu_scripts"
ALL = sorted(SCRIPTS.glob("*.sh")) + [SCRIPTS / "slurm_gpu.sbatch"]


def _dry(script, *args):
    proc = subprocess.run(["bash", str(SCRIPTS / script), *args], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    return [shlex.split(line) for line in proc.stdout.splitlines()]


def test_create_single_and_multislice():
    (cmd,) = _dry("create.sh", "--name", "vl", "--zone", "us-east5-a", "--type", "v5p-64", "--runtime",
                  "v2-alpha-tpuv5", "--project", "proj", "--dry-run")
    assert cmd == ["gcloud", "compute", "tpus", "queued-resources", "create", "vl", "--zone=us-east5-a",
                   "--accelerator-type=v5p-64", "--runtime-version=v2-alpha-tpuv5", "--project=proj", "--node-id=vl"]
    create, describe = _dry("create.sh", "--name", "vl", "--zone", "z", "--type", "v5e-256", "--runtime", "rt",
                            "--slices", "2", "--spot", "--wait", "--dry-run")
    assert create[-3:] == ["--node-count=2", "--node-prefix=vl", "--spot"] and "--node-id=vl" not in create
    assert describe == ["gcloud", "compute", "tpus", "queued-resources", "describe", "vl", "--zone=z",
                        "--format=value(state.state)"]


def test_install_copies_and_installs_on_every_slice():
    lines = _dry("install.sh", "--name", "vl", "--zone", "z", "--slices", "2", "--dry-run")
    assert lines[0][:3] == ["tar", "czf", "/tmp/vljax-src.tgz"] and lines[0][-3:] == ["-C", str(ROOT), "."]
    assert "--exclude=.venv" in lines[0]
    scp0, ssh0, scp1, ssh1 = lines[1:]
    assert scp0 == ["gcloud", "compute", "tpus", "tpu-vm", "scp", "/tmp/vljax-src.tgz", "vl-0:~/vljax-src.tgz",
                    "--zone=z", "--worker=all"]
    assert scp1[6] == "vl-1:~/vljax-src.tgz" and ssh1[5] == "vl-1"
    remote = ssh0[-1].removeprefix("--command=")
    assert ssh0[:9] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "vl-0", "--zone=z", "--worker=all",
                        ssh0[8]] and ssh0[8].startswith("--command=")
    assert "pip install -e ~/vljax" in remote and "jax[tpu]" in remote


def test_run_quotes_the_command_exactly():
    user_cmd = ["vljax", "train", "--config", "configs/clip.py:base", "--workdir", "gs://b/run 1",
                "--config.method=it's"]
    (ssh,) = _dry("run.sh", "--name", "vl", "--zone", "z", "--dry-run", "--", *user_cmd)
    assert ssh[:8] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "vl", "--zone=z", "--worker=all"]
    remote = shlex.split(ssh[8].removeprefix("--command="))
    # The remote shell sees: cd ~/vljax && nohup <cmd> > ~/vljax.log 2>&1 &
    assert remote[:4] == ["cd", "~/vljax", "&&", "nohup"]
    assert remote[4:4 + len(user_cmd)] == user_cmd
    assert remote[4 + len(user_cmd):] == [">", "~/vljax.log", "2>&1", "&"]


def test_logs_and_teardown():
    (logs,) = _dry("logs.sh", "--name", "vl", "--zone", "z", "--slice", "1", "--dry-run")
    assert logs == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "vl-1", "--zone=z", "--worker=0",
                    "--command=tail -n 200 -F ~/vljax.log"]
    (td,) = _dry("teardown.sh", "--name", "vl", "--zone", "z", "--dry-run")
    assert td == ["gcloud", "compute", "tpus", "queued-resources", "delete", "vl", "--zone=z", "--force", "--quiet"]


def test_slurm_per_gpu_and_per_node():
    (srun,) = _dry("slurm_gpu.sbatch", "--dry-run", "vljax", "train", "--config", "configs/clip.py:base")
    assert srun == ["srun", "--kill-on-bad-exit=1", "--nodes=2", "--ntasks-per-node=8", "--gpus-per-task=1",
                    "--gpu-bind=none", "vljax", "train", "--config", "configs/clip.py:base"]
    (node,) = _dry("slurm_gpu.sbatch", "--dry-run", "--per-node", "vljax", "train")
    assert node[:5] == ["srun", "--kill-on-bad-exit=1", "--nodes=2", "--ntasks-per-node=1", "--gpus-per-task=8"]
    assert node[5:7] == ["bash", "-c"] and "env -u SLURM_JOB_ID" in node[7]
    assert node[8:] == [str(SCRIPTS / "multinode.sh"), "node0:12355", "vljax", "train"]


def test_multinode_sets_the_env_vljax_reads():
    (cmd,) = _dry("multinode.sh", "--coordinator", "h0:1234", "--num-processes", "4", "--process-id", "3",
                  "--dry-run", "--", "vljax", "train", "--config", "configs/clip.py:tiny")
    assert cmd == ["env", "VLJAX_COORDINATOR=h0:1234", "VLJAX_NUM_PROCESSES=4", "VLJAX_PROCESS_ID=3",
                   "vljax", "train", "--config", "configs/clip.py:tiny"]
    from vljax import sharding

    src = Path(sharding.__file__).read_text()
    assert all(name in src for name in ("VLJAX_COORDINATOR", "VLJAX_NUM_PROCESSES", "VLJAX_PROCESS_ID"))


@pytest.mark.parametrize("script,args,needle", [
    ("create.sh", ["--zone", "z", "--type", "t", "--runtime", "r", "--dry-run"], "--name"),
    ("create.sh", ["--name", "n", "--zone", "z", "--type", "t", "--runtime", "r", "--slices", "0"], "--slices"),
    ("run.sh", ["--name", "n", "--zone", "z", "--dry-run"], "no command"),
    ("teardown.sh", ["--name", "n", "--zone", "z", "--bogus"], "--bogus"),
    ("multinode.sh", ["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2", "--", "x"],
     "--process-id"),
    ("logs.sh", ["--name", "n", "--zone"], "--zone"),
])
def test_bad_flags_fail_naming_the_flag(script, args, needle):
    proc = subprocess.run(["bash", str(SCRIPTS / script), *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_shellcheck_clean():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (Debian: apt-get install -y shellcheck)")
    proc = subprocess.run([shellcheck, "-x", "-P", str(SCRIPTS), *map(str, ALL)], capture_output=True,
                          text=True, cwd=SCRIPTS)
    assert proc.returncode == 0, proc.stdout
