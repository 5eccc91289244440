"""The experiments/ notebooks execute end to end (nbclient) at tiny settings, so they never rot."""
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--config.data.world.resolution=32", "--config.data.max_len=16", "--config.train.batch_size=16",
        "--config.model.image.width=32", "--config.model.image.depth=1", "--config.model.image.num_heads=2",
        "--config.model.image.mlp_dim=64", "--config.model.image.patch_size=(8, 8)",
        "--config.model.text.width=32", "--config.model.text.depth=1", "--config.model.text.num_heads=2",
        "--config.model.text.mlp_dim=64", "--config.model.embed_dim=16", "--config.evals.zeroshot.n=32",
        "--config.evals.retrieval.n=32", "--config.eval_batch_size=32", "--config.checkpoint.every=1000",
        "--config.data.num_threads=1", "--config.optim.warmup_steps=1"]

SWEEP_CONFIG = '''
import importlib.util
_spec = importlib.util.spec_from_file_location("clip_cfg", {clip!r})
clip = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(clip)
PRESETS = clip.PRESETS


def get_config(arg="tiny"):
    return clip.get_config(arg)


def get_sweep(arg="tiny"):
    return {{"tiny_scaling": [{{"train.steps": s}} for s in (2, 4, 8)]}}
'''


def _execute(name, params: str, monkeypatch):
    """Runs experiments/<name> with a cell of parameter overrides after its 'parameters' cell."""
    # NOTE: one CPU device per process: the kernel (and its sweep subprocesses) share 2 cores.
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    nb = nbformat.read(ROOT / "experiments" / name, as_version=4)
    idx = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(idx + 1, nbformat.v4.new_code_cell(params))
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    return nb


def _text_outputs(nb):
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", "") + str(o.get("data", {}).get("text/markdown", "")))
    return "\n".join(out)


def test_loss_ablation_notebook(tmp_path, monkeypatch):
    params = f"STEPS = 3\nSEEDS = (0,)\nWORKDIR = {str(tmp_path)!r}\nOVERRIDES = {TINY!r}"
    nb = _execute("loss_ablation_clip_vs_siglip.ipynb", params, monkeypatch)
    text = _text_outputs(nb)
    assert "2 runs" in text and "| zeroshot/shape_acc |" in text
    for method in ("clip", "siglip"):
        assert (tmp_path / f"{method}_seed0" / "results.json").exists()
    assert (tmp_path / "loss_ablation.png").stat().st_size > 0


def test_scaling_notebook(tmp_path, monkeypatch):
    cfg = tmp_path / "tiny_sweep.py"
    cfg.write_text(SWEEP_CONFIG.format(clip=str(ROOT / "configs" / "clip.py")))
    root = tmp_path / "sweep"
    params = (f"CONFIGS = ({str(cfg) + ':tiny'!r},)\nSWEEP = 'tiny_scaling'\nROOT = {str(root)!r}\n"
              f"OVERRIDES = {TINY!r}\nPARALLEL = 2\nN_BOOT = 50")
    nb = _execute("scaling_from_sweep.ipynb", params, monkeypatch)
    text = _text_outputs(nb)
    assert "3 of 3 points finished" in text
    assert "clip: E = " in text and "(3 points)" in text
    assert (root / "report.md").exists() and (root / "scaling_notebook.png").stat().st_size > 0
