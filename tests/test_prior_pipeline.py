"""PRIOR end to end on tiny settings: reference LM run -> init.reference from its checkpoint -> PRIOR steps;
the offline weight cache equals the online weights; the probe evaluator's keys and ranges."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vljax.config import ConfigError, load_config
from vljax.methods import prior
from vljax.train.loop import Experiment, train_and_evaluate

FAST = [
    "--config.train.steps=2",
    "--config.train.batch_size=8",
    "--config.train.log_every=1",
    "--config.checkpoint.async_save=False",
]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("prior_ref")
    train_and_evaluate(load_config("configs/prior.py:reference", FAST), workdir)
    return workdir


def _prior_cfg(reference, *extra, check_paths=True):
    return load_config(
        "configs/prior.py:tiny",
        FAST
        + [
            f"--config.init.reference=checkpoint:{reference}",
            "--config.evals.prior_probe.n=16",
            "--config.evals.prior_probe.batch_size=8",
            "--config.evals.prior_probe.max_new_tokens=12",
            *extra,
        ],
        check_paths=check_paths,
    )


def test_reference_checkpoint_seeds_the_frozen_reference(reference_run, tmp_path):
    results = train_and_evaluate(_prior_cfg(reference_run), tmp_path)
    for split in ("in_prior", "counter_prior"):
        for k in ("slot_acc", "shape_acc", "pair_precision"):
            assert 0.0 <= results[f"prior_probe/{split}/{k}"] <= 1.0
    assert 0.0 <= results["prior_probe/counter_prior/halluc_tf"] <= 1.0
    # NOTE: the reference params after 2 PRIOR steps are exactly the reference run's (frozen, loaded).
    from vljax.convert.init import load_training_checkpoint

    exp = Experiment(_prior_cfg(reference_run), tmp_path)
    state, _ = exp.abstract_state()
    trained = load_training_checkpoint(f"checkpoint:{tmp_path}", state.params)
    ref = load_training_checkpoint(f"checkpoint:{reference_run}", state.params["reference"], "reference")
    for a, b in zip(jax.tree.leaves(trained["reference"]), jax.tree.leaves(ref)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    logged = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines() if x.strip()]
    assert any("prior/mult_slot" in x for x in logged)


def test_missing_reference_is_an_error_naming_the_field(tmp_path):
    with pytest.raises(ConfigError, match="config.init.reference"):  # at load time, before any compute
        _prior_cfg(tmp_path / "nowhere")
    cfg = _prior_cfg(tmp_path / "nowhere", check_paths=False)  # and the trainer's own check behind it
    with pytest.raises(FileNotFoundError, match="config.init.reference"):
        train_and_evaluate(cfg, tmp_path / "run")


def test_weight_cache_equals_online_weights(reference_run, tmp_path):
    n = 24
    cfg = _prior_cfg(reference_run, f"--config.data.world.split_sizes.train={n}")
    assert prior.score_split(cfg, tmp_path / "cache", batch_size=8, shard_size=16) == n
    assert len(list((tmp_path / "cache").glob("shard-*.npz"))) == 2
    cached = _prior_cfg(
        reference_run,
        f"--config.data.world.split_sizes.train={n}",
        "--config.prior.weights=cache",
        f"--config.prior.cache={tmp_path / 'cache'}",
    )
    online_exp = Experiment(cfg, tmp_path / "a")
    cache_exp = Experiment(cached, tmp_path / "b")
    assert cache_exp.model.reference is None  # NOTE: cached weights: no reference in the step
    state, _ = online_exp.create_state()
    from vljax.convert.init import load_pretrained

    params = load_pretrained(cfg, state.params)
    fields = prior.data_spec(cfg)["fields"]
    samples = [online_exp.world.sample("train", i, fields=fields) for i in range(8)]
    on = [prior.make_example(s, online_exp.tokenizer, cfg) for s in samples]
    off = [prior.make_example(s, cache_exp.tokenizer, cached) for s in samples]
    b_on = {k: jnp.asarray(np.stack([e[k] for e in on])) for k in on[0]}
    b_off = {k: jnp.asarray(np.stack([e[k] for e in off])) for k in off[0]}
    np.testing.assert_array_equal(np.asarray(b_on["tokens"]), np.asarray(b_off["tokens"]))
    loss_on, m_on = jax.jit(prior.make_loss(online_exp.model, cfg, None))(params, b_on, jax.random.key(0))
    loss_off, m_off = jax.jit(prior.make_loss(cache_exp.model, cached, None))(
        {"lvlm": params["lvlm"]}, b_off, jax.random.key(0)
    )
    # NOTE: float16 storage of w in [0, 1]: absolute error <= 2^-11 per weight.
    np.testing.assert_allclose(float(m_off["prior/w_mean"]), float(m_on["prior/w_mean"]), atol=1e-3)
    np.testing.assert_allclose(float(loss_off), float(loss_on), rtol=2e-3)
    # NOTE: a caption the cache has not seen (another split) is an error naming the cache.
    with pytest.raises(KeyError, match="not in the PRIOR weight cache"):
        prior.make_example(online_exp.world.sample("counter_prior", 0, fields=fields), cache_exp.tokenizer, cached)
