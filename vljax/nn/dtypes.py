"""Compute dtypes by config name ('float32' | 'bfloat16')."""
import jax.numpy as jnp

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def dtype(name: str):
    """'bfloat16' -> jnp.bfloat16; ValueError naming the valid names otherwise."""
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r} is not one of {sorted(DTYPES)}")
    return DTYPES[name]
