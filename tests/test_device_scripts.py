"""The device-validation scripts stay runnable on CPU (they only run for real on a lent GPU)."""

import importlib.util
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    """benchmarks/<name>.py as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kernel_check_passes_in_interpret_mode(capsys):
    kernel_check = _load("kernel_check")
    assert kernel_check.main(["--sizes", "small", "--dtypes", "float32"]) == 0
    out = capsys.readouterr().out
    assert "all checks passed" in out and "| late_interaction | 8x13x9x20 | float32 | dv | pallas |" in out


def test_device_checks_script_parses():
    subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "device_checks.sh")], check=True)


def test_trace_summary_reads_a_cpu_trace(tmp_path, capsys):
    import jax
    import jax.numpy as jnp

    trace_summary = _load("trace_summary")
    f = jax.jit(lambda x: jnp.tanh(x @ x).sum())
    x = jnp.ones((64, 64))
    f(x).block_until_ready()
    with jax.profiler.trace(str(tmp_path), create_perfetto_trace=True):
        for _ in range(2):
            f(x).block_until_ready()
    summary = trace_summary.summarize(tmp_path, steps=2)
    # No device events on a CPU: the host's XLA ops are summed, without the enclosing wrappers.
    assert summary["kind"] == "host" and summary["total_ms"] > 0
    wrappers = ("$", "PjitFunction", "ThunkExecutor", "SlinkyThreadPool")
    assert not any(n.startswith(wrappers) for n, _, _ in summary["by_name"])
    assert abs(sum(ms for _, ms in summary["by_class"]) - summary["total_ms"]) < 1e-6
    trace_summary.print_summary(summary, top=3)
    assert "| class | ms/step | share |" in capsys.readouterr().out
    assert trace_summary.classify("sm90_xmma_gemm_bf16") == "matmul"
    assert trace_summary.classify("cudnn_flash_fprop") == "attention"
    assert trace_summary.classify("loop_add_fusion") == "fusion"


def test_trace_summary_names_a_missing_trace(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="perfetto_trace"):
        _load("trace_summary").summarize(tmp_path)


def test_attention_benchmark_runs_and_reports_unavailable_impls(capsys):
    _load("attention").main(["--shape", "2,9,2,8", "--iters", "1"])
    out = capsys.readouterr().out
    assert "| xla | none |" in out and "| xla | trainer |" in out
    assert "| cudnn | none | unavailable: ValueError: attention_impl='cudnn' needs a GPU" in out


def test_trace_summary_scopes_from_hlo_metadata():
    ts = _load("trace_summary")
    hlo = (
        '  %ynn_fusion.156 = f32[128,3,1,64,64]{4,3,2,1,0} fusion(%a, %b), kind=kCustom, calls=%f.156, '
        'metadata={op_name="jit(step)/transpose(jvp(TwoTower))/TwoTower.encode_image/img_tower/'
        'block_01.attention_branch/block_01.attention_branch_with_keys/attn/reduce_sum" stack_frame_id=15}\n'
        '  ROOT %multiply_fusion.7 = f32[8192,256]{1,0} fusion(%c), kind=kLoop, calls=%f.903, '
        'metadata={op_name="jit(step)/jvp(TwoTower)/TwoTower.encode_text/txt_tower/encoder/block_00/'
        'block_00.mlp_branch/mlp/mul"}\n'
        "  %param.1 = f32[8] parameter(0)\n"
    )
    names = ts.hlo_op_names(hlo)
    assert set(names) == {"ynn_fusion.156", "multiply_fusion.7"}
    assert ts.scope_of(names["ynn_fusion.156"]) == "img_tower/attn (bwd)"
    assert ts.scope_of(names["multiply_fusion.7"]) == "txt_tower/mlp (fwd)"
    proj = "jit(step)/jvp(TwoTower)/TwoTower.encode_image/img_tower/block_00.attention_branch/attn/attn._proj/bnd,dhk->bnhk/dot_general"
    assert ts.scope_of(proj) == "img_tower/attn (fwd)"
    assert ts.scope_of("jit(step)/add") == "(step) (fwd)"
    assert ts.scope_of("jit(step)/jvp(TwoTower)/TwoTower.encode_text/txt_tower/encoder/norm_out/mul") == (
        "txt_tower/norm_out (fwd)")
    assert ts.scope_of("jit(step)/jvp(TwoTower)/TwoTower.encode_image/img_tower/block_02.mlp_branch/mlp/wi/dot") == (
        "img_tower/mlp (fwd)")


def test_late_interaction_benchmark_prints_fwd_and_fwd_bwd(capsys):
    _load("late_interaction").main(["--shape", "4,9,5,8", "--iters", "1"])
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| 4, 9, 5, 8 |")]
    assert [r.split("|")[2].strip() for r in rows] == ["naive", "chunked", "pallas"]
    assert all(len(r.split("|")) == 9 for r in rows)  # 7 columns: both times, ratio, memory


def test_token_merging_off_the_shelf_evaluates_one_checkpoint_at_each_r(tmp_path, capsys, monkeypatch):
    """--from_workdir: the r=0 row reproduces the run's own evaluation; results.json is left as trained."""
    import json
    import sys

    from vljax.config import load_config
    from vljax.train import loop

    small = ["--config.data.world.resolution=32", "--config.data.max_len=16", "--config.train.batch_size=16",
             "--config.model.image.width=32", "--config.model.image.depth=2", "--config.model.image.num_heads=2",
             "--config.model.image.mlp_dim=64", "--config.model.image.patch_size=(4, 4)",
             "--config.model.text.width=32", "--config.model.text.depth=1", "--config.model.text.num_heads=2",
             "--config.model.text.mlp_dim=64", "--config.model.embed_dim=16", "--config.evals.zeroshot.n=32",
             "--config.evals.retrieval.n=32", "--config.eval_batch_size=32", "--config.checkpoint.every=1000",
             "--config.data.num_threads=1"]
    trained = loop.train_and_evaluate(load_config("configs/clip.py:tiny", small + ["--config.train.steps=3"]), tmp_path)
    before = (tmp_path / "results.json").read_text()
    capsys.readouterr()
    argv = ["token_merging.py", "--from_workdir", str(tmp_path), "--acc_rs", "0,8", "--batch", "4", "--iters", "1",
            "--schedule", "constant,decreasing", *small]
    monkeypatch.setattr(sys, "argv", argv)
    _load("token_merging").main()
    rows = [line.strip("| ").split(" | ") for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and line[2] in "-cdi"]
    assert (tmp_path / "results.json").read_text() == before and json.loads(before) == trained
    # 64 tokens, 2 blocks: constant merges 8 + 8, decreasing 16 + 0; r = 0 is one row for all schedules
    assert [row[:3] for row in rows] == [["-", "0", "64"], ["constant", "8", "48"], ["decreasing", "8", "48"]]
    # r=0: the columns after the timing are the trained run's own zero-shot and retrieval numbers.
    assert rows[0][5:8] == [f"{trained[k]:.3f}" for k in ("zeroshot/shape_acc", "zeroshot/color_acc",
                                                         "zeroshot/mean_acc")]
    assert rows[0][9] == f"{trained['retrieval/i2t_r1']:.3f} / {trained['retrieval/t2i_r1']:.3f}"
    assert rows[0][4] == "1.00" and all(float(row[3]) > 0 for row in rows)
    monkeypatch.setattr(sys, "argv", argv[:-len(small) - 1] + ["nope", *small])
    with pytest.raises(SystemExit, match="unknown"):
        _load("token_merging").main()


def test_train_throughput_times_the_resnet_two_tower_against_torch(capsys):
    import pytest

    torch = pytest.importorskip("torch")
    throughput = _load("train_throughput")
    throughput.main(["--config", "configs/clip.py:tiny_resnet", "--steps", "1", "--torch",
                     "--config.train.batch_size=8", "--config.data.world.resolution=32"])
    out = capsys.readouterr().out
    assert "vljax (jax" in out and ("torch.nn two-tower" in out or "open_clip" in out), out
    assert "FLOPs/step/device" in out
    # the plain torch.nn side builds the same ResNet: stem, one bottleneck per stage, CLIP's attention pool
    from vljax.config import load_config

    model, _ = throughput.torch_two_tower(load_config("configs/clip.py:tiny_resnet"), vocab=64)
    if hasattr(model, "resnet"):
        x = torch.zeros(2, 3, 64, 64)
        assert model.resnet.body(x).shape == (2, 256, 4, 4) and model.resnet(x).shape == (2, 64)


def test_train_throughput_interleaves_sweep_rows_in_rounds(capsys):
    throughput = _load("train_throughput")
    # NOTE: a one-block ViT two-tower: the rows' compiles are most of this test's time (tiny_resnet took 73 s)
    small = ["--config.train.batch_size=8", "--config.data.world.resolution=32", "--config.model.image.depth=1",
             "--config.model.image.width=48", "--config.model.image.mlp_dim=64", "--config.model.text.depth=1",
             "--config.model.text.width=48", "--config.model.text.mlp_dim=64"]
    throughput.main(["--config", "configs/clip.py:tiny", "--steps", "1", "--rounds", "2",
                     "--sweep", "model.attention_impl=auto,xla", *small])
    captured = capsys.readouterr()
    rows = [line.split() for line in captured.out.splitlines() if line.startswith("vljax model.attention_impl=")]
    assert [r[1] for r in rows] == ["model.attention_impl=auto", "model.attention_impl=xla"]
    assert all(float(r[2]) > 0 for r in rows) and rows[0][4] == "1.00"
    assert "best of 2 interleaved rounds of 1 steps" in captured.out
    assert "# round 2/2:" in captured.err
    with pytest.raises(SystemExit):
        throughput.main(["--config", "configs/clip.py:tiny", "--rounds", "0", *small])


def test_dense_layout_benchmark_checks_equality_and_prints_ratios(capsys):
    bench = _load("dense_layout")
    bench.main(["--reps", "1", "--cases", "tiny_attn_out"])
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("tiny_attn_out")]
    fields = row[0].split()
    assert len(row) == 1 and len(fields) == 10  # case, 4-int shape, three times, two ratios
    times = [float(f) for f in fields[5:8]]
    assert all(t > 0 for t in times) and float(fields[8]) == pytest.approx(times[0] / times[2], rel=0.01)
    with pytest.raises(SystemExit):
        bench.main(["--cases", "nope"])


def test_mlp_layout_benchmark_checks_equality_and_prints_ratios(capsys, monkeypatch):
    bench = _load("mlp_layout")
    monkeypatch.setitem(bench.CASES, "mini", (2, 5, 8, 16))
    bench.main(["--reps", "1", "--cases", "mini"])
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if line.startswith("| mini")]
    assert [r[2].strip() for r in rows] == [
        "per-layer 2-D, erfc", "per-layer 2-D, erf", "whole MLP 2-D, erfc", "whole MLP 2-D, erf", "vljax Mlp"]
    times, ratios = [float(r[3]) for r in rows], [float(r[4]) for r in rows]
    # NOTE: the mini case's times are a few hundredths of a ms, printed to two decimals
    assert all(t > 0 for t in times) and ratios[-1] == pytest.approx(times[0] / times[-1], rel=0.3)
    # the float64 check before timing catches a formulation that drops a term
    monkeypatch.setattr("vljax.nn.mlp.gelu", lambda h: h)
    with pytest.raises(AssertionError, match="erf"):
        bench.main(["--reps", "1", "--cases", "mini"])


def test_cpu_scaling_ops_agree_across_frameworks_and_the_pinned_child_runs(capsys):
    bench = _load("cpu_scaling")
    torch = pytest.importorskip("torch")
    cases = list(bench.CASES)
    # NOTE: in-process children, the thread count left as it is (other tests share this process's torch).
    results = {(fw, 1): bench.child(fw, torch.get_num_threads(), cases, 1) for fw in bench.FRAMEWORKS}
    bench.check_agreement({f"{fw}": r for (fw, _), r in results.items()})
    tampered = {case: dict(r) for case, r in results[("torch", 1)].items()}
    tampered["layernorm"]["grad_norms"] = [g * 1.01 for g in tampered["layernorm"]["grad_norms"]]
    with pytest.raises(AssertionError, match="layernorm"):
        bench.check_agreement({"jax": results[("jax", 1)], "torch": tampered})
    lines = bench.table(results, cases, ["jax", "torch"], [1]).splitlines()
    assert len(lines) == 2 + len(cases) and lines[0].endswith("| jax/torch |")
    # the real entry point: one pinned jax child, parsed back into the table
    bench.main(["--frameworks", "jax", "--cores", "1", "--reps", "1", "--rounds", "1", "--cases", "softmax"])
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| softmax")]
    assert len(row) == 1 and float(row[0].split("|")[2]) > 0
    with pytest.raises(SystemExit):
        bench.main(["--cases", "nope"])
