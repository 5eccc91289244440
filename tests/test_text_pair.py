"""text_pair: caption-pair InfoNCE for the text tower, and its chaining into a locked-text CLIP run."""

import jax
import ml_collections
import numpy as np
import optax
import pytest

from tests.test_stage_chaining import _abstract_params, _flat
from vljax.config import load_config
from vljax.convert.init import load_pretrained
from vljax.data.world import World
from vljax.methods import get_method
from vljax.models.two_tower import TwoTower
from vljax.train.checkpoint import Checkpointer
from vljax.train.loop import Experiment, train_and_evaluate

SMALL = ["--config.data.world.resolution=32", "--config.data.max_len=16", "--config.model.image.width=32",
         "--config.model.image.depth=1", "--config.model.image.num_heads=2", "--config.model.image.mlp_dim=64",
         "--config.model.text.width=32", "--config.model.text.depth=1", "--config.model.text.num_heads=2",
         "--config.model.text.mlp_dim=64", "--config.model.embed_dim=16", "--config.train.steps=3",
         "--config.train.batch_size=8", "--config.train.log_every=1", "--config.checkpoint.every=3",
         "--config.checkpoint.async_save=False"]


def _config(name, extra=()):
    cfg = load_config(f"configs/{name}.py:tiny", SMALL + list(extra))
    cfg.evals = ml_collections.ConfigDict()
    return cfg


def test_loss_is_symmetric_infonce_between_the_two_captions():
    cfg = _config("text_pair")
    method = get_method("text_pair")
    model = method.build(cfg, vocab_size=50)
    params = jax.tree.map(lambda x: x.unbox() if hasattr(x, "unbox") else x,
                          method.init_params(model, cfg, jax.random.key(0)), is_leaf=lambda x: hasattr(x, "unbox"))
    k1, k2 = jax.random.split(jax.random.key(1))
    batch = {"text": jax.random.randint(k1, (6, 16), 4, 50), "text_b": jax.random.randint(k2, (6, 16), 4, 50)}
    loss, metrics = method.make_loss(model, cfg, mesh=None)(params, batch, None)
    a = model.apply({"params": params}, batch["text"], method=TwoTower.encode_text)
    b = model.apply({"params": params}, batch["text_b"], method=TwoTower.encode_text)
    logits = np.asarray(metrics["logit_scale"] * a @ b.T, np.float64)
    labels = np.arange(6)
    want = 0.5 * (optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
                  + optax.softmax_cross_entropy_with_integer_labels(logits.T, labels).mean())
    assert float(loss) > 0.1
    np.testing.assert_allclose(float(loss), float(want), rtol=1e-5)


def test_pair_fields_are_two_descriptions_of_one_scene():
    cfg = _config("text_pair")
    spec = get_method("text_pair").data_spec(cfg)
    assert spec["text_fields"] == {"captions/short": "text", "captions/positional": "text_b"}
    sample = World(cfg.data.world).source("train", fields=spec["fields"])[3]
    short, positional = sample["captions/short"], sample["captions/positional"]
    assert short != positional and set(short.split()) <= set(positional.split())
    bad = _config("text_pair")
    bad.data.pair = ("captions/short", "captions/short")
    with pytest.raises(ValueError, match="two different caption fields"):
        get_method("text_pair").data_spec(bad)


def test_text_stage_chains_into_a_locked_text_clip(tmp_path):
    text_dir, clip_dir = tmp_path / "text", tmp_path / "clip"
    text_cfg = _config("text_pair")
    start = _flat(Experiment(text_cfg, text_dir).create_state()[0].params)
    train_and_evaluate(text_cfg, text_dir)
    ckpt = Checkpointer(text_dir, async_save=False)
    trained = _flat(ckpt.restore_params(_abstract_params(text_cfg, text_dir))[0])
    ckpt.close()
    # NOTE: the text side learned; the unused image tower is frozen (no optimizer state, no decay).
    assert any(not np.array_equal(trained[k], start[k]) for k in trained if k.startswith("txt_"))
    for k in (k for k in trained if k.startswith("img_")):
        np.testing.assert_array_equal(trained[k], start[k], err_msg=k)
    clip_cfg = _config("clip", [f"--config.init.text=checkpoint:{text_dir}", "--config.seed=1"])
    clip_cfg.optim.freeze = ("^txt_",)
    loaded = _flat(load_pretrained(clip_cfg, Experiment(clip_cfg, clip_dir).create_state()[0].params))
    for k in (k for k in trained if k.startswith("txt_")):
        np.testing.assert_array_equal(loaded[k], trained[k], err_msg=k)
