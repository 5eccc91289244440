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


def _boxed_init(init_params: Callable[[jax.Array], Any], tx: optax.GradientTransformation):
    """-> rng -> TrainState of boxed params (the key is split inside, so eval_shape of it runs nothing)."""

    def boxed_init(rng):
        init_rng, state_rng = jax.random.split(rng)
        params = init_params(init_rng)
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                          rng=state_rng)

    return boxed_init


def abstract_sharded_state(init_params: Callable[[jax.Array], Any], tx: optax.GradientTransformation,
                           rng: jax.Array, mesh: Mesh, rules) -> tuple[TrainState, Any]:
    """-> (TrainState of jax.ShapeDtypeStructs placed like create_sharded_state's, its shardings).

    By eval_shape only: nothing is compiled or allocated. The target for restoring a checkpoint, which then
    never holds a freshly initialized state beside the restored one (nor compiles the init: a threefry hash
    per parameter, seconds on a CPU host).
    """
    boxed_init = _boxed_init(init_params, tx)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        boxed = jax.eval_shape(boxed_init, rng)
        shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed), mesh, rules)
    # NOTE: unboxed without the sharding constraint nn.meta.unbox adds under a mesh (no arrays to constrain here).
    is_box = lambda x: isinstance(x, nn.meta.AxisMetadata)
    unboxed = jax.tree.map(lambda x: x.unbox(apply_constraint=False) if is_box(x) else x, boxed, is_leaf=is_box)
    abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), unboxed, shardings)
    return abstract, shardings


def create_sharded_state(init_params: Callable[[jax.Array], Any], tx: optax.GradientTransformation,
                         rng: jax.Array, mesh: Mesh, rules) -> tuple[TrainState, Any]:
    """init_params(rng) -> boxed params; returns (state created directly sharded, state shardings).

    NOTE: params are never materialized on one host: shapes come from eval_shape and the
    real init runs under jit with out_shardings derived from the logical axis names.
    """
    boxed_init = _boxed_init(init_params, tx)
    shardings = abstract_sharded_state(init_params, tx, rng, mesh, rules)[1]
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        state = jax.jit(lambda r: nn.meta.unbox(boxed_init(r)), out_shardings=shardings)(rng)
    return state, shardings


def param_count(params: Any) -> int:
    """Number of scalars in a param tree."""
    return int(sum(x.size for x in jax.tree.leaves(params)))
