"""The jitted train step: loss -> grads (with optional accumulation) -> optax update, non-finite guard."""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from vljax.sharding import BATCH_AXES
from vljax.train.state import TrainState

LossFn = Callable[[Any, dict, jax.Array], tuple[jax.Array, dict]]


def split_microbatches(batch: dict, n: int, mesh) -> dict:
    """{k: [B, ...]} -> {k: [n, B/n, ...]} with microbatch m = rows m, m+n, m+2n, ...

    NOTE: strided (not contiguous) microbatches keep every device's rows local: device d
    holds a contiguous block of B, and its block contributes B/(n*devices) rows to each
    microbatch, so no data moves between devices.
    """
    def one(x):
        if x.shape[0] % n:
            raise ValueError(f"batch dim {x.shape[0]} not divisible by grad_accum_steps={n}")
        y = x.reshape(x.shape[0] // n, n, *x.shape[1:]).swapaxes(0, 1)
        spec = P(None, BATCH_AXES, *([None] * (x.ndim - 1)))
        return jax.lax.with_sharding_constraint(y, NamedSharding(mesh, spec))
    return jax.tree.map(one, batch)


def make_train_step(loss_fn: LossFn, tx: optax.GradientTransformation, schedule, *, accum_steps: int = 1,
                    mesh=None) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """Builds state, batch -> (new state, metrics); the update is skipped when loss or grads are non-finite."""
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(state: TrainState, batch: dict):
        rng = jax.random.fold_in(state.rng, state.step)
        if accum_steps == 1:
            (loss, aux), grads = grad_fn(state.params, batch, rng)
        else:
            micro = split_microbatches(batch, accum_steps, mesh)

            def body(carry, xs):
                g_acc, l_acc, a_acc = carry
                mb, i = xs
                (l, a), g = grad_fn(state.params, mb, jax.random.fold_in(rng, i))
                return (jax.tree.map(jnp.add, g_acc, g), l_acc + l, jax.tree.map(jnp.add, a_acc, a)), None

            zeros = jax.tree.map(jnp.zeros_like, state.params)
            (l0, a0), _ = jax.eval_shape(lambda: grad_fn(state.params, jax.tree.map(lambda x: x[0], micro), rng))
            a_zero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), a0)
            (grads, loss, aux), _ = jax.lax.scan(
                body, (zeros, jnp.zeros((), l0.dtype), a_zero), (micro, jnp.arange(accum_steps)))
            grads = jax.tree.map(lambda g: g / accum_steps, grads)
            loss, aux = loss / accum_steps, jax.tree.map(lambda a: a / accum_steps, aux)
        grad_norm = optax.tree.norm(grads)
        ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, new_opt = tx.update(grads, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, updates)
        # NOTE: on a non-finite step keep the old params and optimizer state; the host loop
        # sees ok=False and stops, so the state it holds (and saves) is the last good one.
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
        new_state = state.replace(step=state.step + 1, params=keep(new_params, state.params),
                                  opt_state=keep(new_opt, state.opt_state))
        metrics = dict(aux, loss=loss, grad_norm=grad_norm, lr=schedule(state.step), finite=ok)
        return new_state, metrics

    return step
