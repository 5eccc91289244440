"""Shared tile arithmetic for the Pallas kernels (Triton on GPU, interpret mode elsewhere)."""

import jax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton


def round_up(n, multiple):
    """int, int -> smallest multiple of `multiple` that is >= n."""
    return -(-n // multiple) * multiple


def padded_length(n, backend):
    """Length of an untiled axis -> padded length: Triton wants powers of two >= 16, others multiples of 8."""
    if backend == "gpu":
        return max(16, pl.next_power_of_2(n))
    return round_up(n, 8)


def tile(n, chunk, backend):
    """Length, wanted chunk -> (chunk, padded length), chunk dividing it: powers of two >= 16 on GPU."""
    if backend == "gpu":
        chunk = min(pl.next_power_of_2(chunk), padded_length(n, backend))
    else:
        chunk = min(round_up(chunk, 8), round_up(n, 8))
    return chunk, round_up(n, chunk)


def compiler_params(interpret, num_warps=4, num_stages=None):
    """Triton parameters on GPU (jax's default GPU lowering is Mosaic GPU, which these kernels do not target)."""
    if interpret or jax.default_backend() != "gpu":
        return None
    return pltriton.CompilerParams(num_warps=num_warps, num_stages=num_stages)
