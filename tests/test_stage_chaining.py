"""Stage chaining: config.init.model='checkpoint:WORKDIR[@STEP]' seeds a fresh run from a training run's params."""

import jax
import ml_collections
import numpy as np
import pytest
from flax import traverse_util

from vljax.config import ConfigError, load_config
from vljax.convert.init import load_pretrained, parse_checkpoint_source
from vljax.train.checkpoint import Checkpointer
from vljax.train.loop import Experiment, train_and_evaluate

FAST = ["--config.train.steps=3", "--config.train.batch_size=8", "--config.train.log_every=1",
        "--config.checkpoint.every=2", "--config.checkpoint.async_save=False",
        # NOTE: one-layer towers: the cost here is compiling two train steps, not running them.
        "--config.model.lm.width=32", "--config.model.lm.depth=1", "--config.model.lm.mlp_dim=64"]
FAST_VISION = ["--config.model.vision.width=32", "--config.model.vision.depth=1", "--config.model.vision.num_heads=2",
               "--config.model.vision.mlp_dim=64"]


def _config(preset, extra=()):
    vision = [] if preset == "tiny_encoder_free" else FAST_VISION
    # NOTE: check_paths=False: these tests reach load_pretrained's own checks, behind load_config's.
    cfg = load_config(f"configs/lvlm_ntp.py:{preset}", FAST + vision + list(extra), check_paths=False)
    cfg.evals = ml_collections.ConfigDict()  # NOTE: no decoding evals: this test is about params.
    return cfg


def _flat(params):
    return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(jax.device_get(params), sep="/").items()}


def _abstract_params(cfg, workdir):
    """-> the model's params as ShapeDtypeStructs placed like create_sharded_state places them (no init compile)."""
    return Experiment(cfg, workdir).abstract_state()[0].params


def _saved_params(workdir, step=None):
    ckpt = Checkpointer(workdir, async_save=False)
    params, step = ckpt.restore_params(_abstract_params(_config("tiny"), workdir), step)
    ckpt.close()
    return _flat(params), step


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    """tiny_align (projector only) trained 3 steps -> (workdir, its init params, saved params at step 3)."""
    workdir = tmp_path_factory.mktemp("align")
    cfg = _config("tiny_align")
    init, _ = Experiment(cfg, workdir).create_state()
    train_and_evaluate(cfg, workdir)
    saved, step = _saved_params(workdir)
    assert step == 3
    return workdir, init, saved


def test_align_stage_keeps_vision_encoder_and_lm_frozen(stage1):
    _, init_state, saved = stage1
    init = _flat(init_state.params)
    assert set(init) == set(saved)
    moved = {path.split("/")[0] for path in init if not np.array_equal(init[path], saved[path])}
    assert moved == {"image_projector"}
    for path in init:
        if path.startswith(("vision_encoder/", "language_model/")):
            np.testing.assert_array_equal(saved[path], init[path], err_msg=path)


def test_full_stage_starts_from_the_align_checkpoint(stage1, tmp_path):
    dir1, init_state, saved = stage1
    # NOTE: another seed, so a run that ignored init.model would start from different params.
    cfg = _config("tiny", [f"--config.init.model=checkpoint:{dir1}"])
    # NOTE: a fresh state unlike the checkpoint in every leaf, sharded as the trainer shards it.
    fresh = jax.tree.map(lambda x: x + 1.0, init_state.params)
    loaded = load_pretrained(cfg, fresh)
    flat_fresh = traverse_util.flatten_dict(fresh, sep="/")
    for path, leaf in traverse_util.flatten_dict(loaded, sep="/").items():
        assert leaf.sharding == flat_fresh[path].sharding, path  # NOTE: placed like the fresh state.
        np.testing.assert_array_equal(np.asarray(leaf), saved[path], err_msg=path)

    # NOTE: end to end through the trainer: with lr = 0 the step-1 checkpoint holds the starting params.
    dir2 = tmp_path / "full"
    train_and_evaluate(_config("tiny", [f"--config.init.model=checkpoint:{dir1}@2", "--config.seed=7",
                                        "--config.optim.lr=0.0", "--config.train.steps=1"]), dir2)
    step2, _ = _saved_params(dir1, step=2)
    started, step = _saved_params(dir2)
    assert step == 1
    assert any(not np.array_equal(step2[p], saved[p]) for p in saved)  # NOTE: @2 really is another step.
    for path in step2:
        np.testing.assert_array_equal(started[path], step2[path], err_msg=path)


def test_checkpoint_init_errors_name_the_problem(stage1, tmp_path):
    dir1, _, _ = stage1
    assert parse_checkpoint_source(f"checkpoint:{dir1}@12", "model") == (str(dir1), 12)
    assert parse_checkpoint_source("checkpoint:/runs/a@b", "model") == ("/runs/a@b", None)
    bad_dims = _config("tiny", [f"--config.init.model=checkpoint:{dir1}", "--config.model.lm.mlp_dim=96"])
    params = _abstract_params(bad_dims, tmp_path / "a")
    with pytest.raises(ValueError, match=r"config\.init\.model=.*language_model/block_00/mlp/.* is \[.*\] in the "):
        load_pretrained(bad_dims, params)
    no_vision = _config("tiny_encoder_free", [f"--config.init.model=checkpoint:{dir1}"])
    with pytest.raises(ValueError, match=r"model params \['patch_embed/.*are missing from the checkpoint"):
        load_pretrained(no_vision, _abstract_params(no_vision, tmp_path / "b"))
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at step 5; saved steps: \[2, 3\]"):
        load_pretrained(_config("tiny", [f"--config.init.model=checkpoint:{dir1}@5"]), params)
    with pytest.raises(FileNotFoundError, match="not a vljax training run"):
        load_pretrained(_config("tiny", [f"--config.init.model=checkpoint:{tmp_path}/nothing"]), params)
    assert not (tmp_path / "nothing").exists()
    with pytest.raises(ValueError, match="the model has no param subtree 'image'"):
        load_pretrained(_config("tiny", [f"--config.init.image=checkpoint:{dir1}"]), params)
    # The config loader already refuses sources that are not there, before any compute.
    with pytest.raises(ConfigError, match=r"config\.init\.model=.*nothing/checkpoints"):
        load_config("configs/lvlm_ntp.py:tiny", [f"--config.init.model=checkpoint:{tmp_path}/nothing"])
    with pytest.raises(ConfigError, match=r"config\.init\.image='hf:/no/such/dir': /no/such/dir does not exist"):
        load_config("configs/clip.py:tiny", ["--config.init.image=hf:/no/such/dir"])
    with pytest.raises(ConfigError, match=r"expected '<format>:<path>'"):
        load_config("configs/clip.py:tiny", ["--config.init.image=/some/file.pt"])


def test_text_tower_from_another_two_tower_run_locked(tmp_path):
    """init.text='checkpoint:A' takes run A's txt_tower/txt_proj; freezing them keeps them exactly A's."""
    small = ["--config.data.world.resolution=32", "--config.data.max_len=16", "--config.model.image.width=32",
             "--config.model.image.depth=1", "--config.model.image.num_heads=2", "--config.model.image.mlp_dim=64",
             "--config.model.text.width=32", "--config.model.text.depth=1", "--config.model.text.num_heads=2",
             "--config.model.text.mlp_dim=64", "--config.model.embed_dim=16"] + FAST[:5]

    def clip_config(extra=()):
        cfg = load_config("configs/clip.py:tiny", small + list(extra))
        cfg.evals = ml_collections.ConfigDict()
        return cfg

    a, b = tmp_path / "a", tmp_path / "b"
    train_and_evaluate(clip_config(), a)
    cfg_b = clip_config([f"--config.init.text=checkpoint:{a}", "--config.seed=1"])
    cfg_b.optim.freeze = ("^txt_",)
    init_b, _ = Experiment(cfg_b, b).create_state()
    start_b = load_pretrained(cfg_b, init_b.params)  # NOTE: what the trainer does for a fresh run.
    train_and_evaluate(cfg_b, b)

    def saved(workdir, cfg):
        ckpt = Checkpointer(workdir, async_save=False)
        params, _ = ckpt.restore_params(_abstract_params(cfg, workdir))
        ckpt.close()
        return _flat(params)

    pa, pb, pb0 = saved(a, clip_config()), saved(b, cfg_b), _flat(start_b)
    txt = [k for k in pa if k.startswith("txt_")]
    img = [k for k in pa if k.startswith("img_")]
    assert txt and img
    for k in txt:  # loaded from A, then frozen through B's 3 steps
        np.testing.assert_array_equal(pb0[k], pa[k], err_msg=k)
        np.testing.assert_array_equal(pb[k], pa[k], err_msg=k)
    # The image tower is B's own (seed 1) and trained.
    assert any(not np.array_equal(pb0[k], pa[k]) for k in img)
    assert any(not np.array_equal(pb[k], pb0[k]) for k in img)
