"""TrainState and its sharded creation (eval_shape -> logical specs -> jit(init, out_shardings))."""
from __future__ import annotations

from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh


@flax.struct.dataclass
class TrainState:
    """Everything a step needs and a checkpoint saves (the data iterator state is saved beside it)."""

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array


def create_sharded_state(init_params: Callable[[jax.Array], Any], tx: optax.GradientTransformation,
                         rng: jax.Array, mesh: Mesh, rules) -> tuple[TrainState, Any]:
    """init_params(rng) -> boxed params; returns (state created directly sharded, state shardings).

    NOTE: params are never materialized on one host: shapes come from eval_shape and the
    real init runs under jit with out_shardings derived from the logical axis names.
    """
    init_rng, state_rng = jax.random.split(rng)

    def boxed_init(r):
        params = init_params(r)
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                          rng=state_rng)

    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        abstract = jax.eval_shape(boxed_init, init_rng)
        specs = nn.get_partition_spec(abstract)
        shardings = nn.logical_to_mesh_sharding(specs, mesh, rules)
        state = jax.jit(lambda r: nn.meta.unbox(boxed_init(r)), out_shardings=shardings)(init_rng)
    return state, shardings


def param_count(params: Any) -> int:
    """Number of scalars in a param tree."""
    return int(sum(x.size for x in jax.tree.leaves(params)))
