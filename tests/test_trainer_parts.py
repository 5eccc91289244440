"""Trainer parts: mesh shapes, optimizer freezing, gradient accumulation == big batch, non-finite guard."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from vljax import sharding as shard_lib
from vljax.train import optim
from vljax.train.state import TrainState
from vljax.train.step import make_train_step


def test_mesh_shape():
    assert shard_lib.mesh_shape({"data": -1}, 8) == (8, 1, 1)
    assert shard_lib.mesh_shape({"data": 2, "fsdp": -1, "tensor": 2}, 8) == (2, 2, 2)
    with pytest.raises(ValueError, match="at most one axis"):
        shard_lib.mesh_shape({"data": -1, "fsdp": -1}, 8)
    with pytest.raises(ValueError, match="needs 16 devices"):
        shard_lib.mesh_shape({"data": 4, "fsdp": 4}, 8)
    mesh = shard_lib.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}


def _optim_cfg(**kw):
    c = ml_collections.ConfigDict(dict(name="adamw", lr=0.1, total_steps=10, warmup_steps=0, schedule="constant",
                                       weight_decay=0.0, grad_clip_norm=0.0, freeze=()))
    c.update(kw)
    return c


def test_freeze_has_no_optimizer_state():
    params = {"tower": {"kernel": jnp.ones((4, 4))}, "head": {"kernel": jnp.ones((4, 2))}}
    tx, _ = optim.make_optimizer(_optim_cfg(freeze=("^tower/",)), params)
    state = tx.init(params)
    sizes = sum(x.size for x in jax.tree.leaves(state))
    # adam keeps mu and nu for the head only (+ a scalar count per inner transform)
    assert sizes <= 2 * 8 + 4
    grads = jax.tree.map(jnp.ones_like, params)
    upd, _ = tx.update(grads, state, params)
    assert float(jnp.abs(upd["tower"]["kernel"]).max()) == 0.0
    assert float(jnp.abs(upd["head"]["kernel"]).max()) > 0.0
    with pytest.raises(ValueError, match="match no parameter path"):
        optim.make_optimizer(_optim_cfg(freeze=("^nothing/",)), params)
    with pytest.raises(ValueError, match="nothing"):
        optim.make_optimizer(_optim_cfg(freeze=("^tower/", "^nothing/")), params)
    # NOTE: '?' marks an optional pattern: absent subtrees are fine, present ones are frozen.
    tx2, _ = optim.make_optimizer(_optim_cfg(freeze=("?^nothing/",)), params)
    upd2, _ = tx2.update(grads, tx2.init(params), params)
    assert float(jnp.abs(upd2["tower"]["kernel"]).max()) > 0.0
    tx3, _ = optim.make_optimizer(_optim_cfg(freeze=("?^tower/",)), params)
    upd3, _ = tx3.update(grads, tx3.init(params), params)
    assert float(jnp.abs(upd3["tower"]["kernel"]).max()) == 0.0


def test_weight_decay_mask_skips_vectors():
    params = {"w": jnp.ones((3, 3)), "b": jnp.ones((3,))}
    tx, _ = optim.make_optimizer(_optim_cfg(weight_decay=0.5, lr=1.0), params)
    upd, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    assert float(jnp.abs(upd["b"]).max()) == 0.0 and float(jnp.abs(upd["w"]).max()) > 0.0


def _regression_setup():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 5)).astype(np.float32)
    y = rng.normal(size=(32, 3)).astype(np.float32)
    params = {"w": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32), "b": jnp.zeros((3,), jnp.float32)}

    def loss_fn(p, batch, rng):
        pred = batch["x"] @ p["w"] + p["b"]
        return jnp.mean((pred - batch["y"]) ** 2), {"mse": jnp.mean((pred - batch["y"]) ** 2)}
    return params, {"x": x, "y": y}, loss_fn


def test_grad_accumulation_equals_big_batch():
    params, batch, loss_fn = _regression_setup()
    mesh = shard_lib.make_mesh({"data": -1})
    tx = optax.sgd(0.1)
    sched = lambda s: 0.1
    outs = []
    for accum in (1, 4):
        state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                           rng=jax.random.key(0))
        gb = shard_lib.host_to_global(batch, mesh)
        with jax.set_mesh(mesh):
            step = jax.jit(make_train_step(loss_fn, tx, sched, accum_steps=accum, mesh=mesh))
            new, m = step(state, gb)
        outs.append((new.params, float(m["loss"])))
    # f32: the accumulated mean reorders a sum of 32 terms; 1e-6 relative is round-off level.
    for a, b in zip(jax.tree.leaves(outs[0][0]), jax.tree.leaves(outs[1][0])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
    assert abs(outs[0][1] - outs[1][1]) < 1e-6


def test_non_finite_step_keeps_state():
    params, batch, loss_fn = _regression_setup()
    batch = dict(batch, x=batch["x"].copy())
    batch["x"][0, 0] = np.nan
    tx = optax.adam(0.1)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                       rng=jax.random.key(0))
    new, m = jax.jit(make_train_step(loss_fn, tx, lambda s: 0.1))(state, batch)
    assert not bool(m["finite"])
    np.testing.assert_array_equal(np.asarray(new.params["w"]), np.asarray(params["w"]))
    assert int(new.step) == 1
