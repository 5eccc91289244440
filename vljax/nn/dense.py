"""Dense contractions [..., *C] x [*C, *O] -> [..., *O] as one 2-D matrix multiply on CPU.

Why: for a 3-D (or 4-D) activation, XLA's CPU backend lays out the weight-gradient dot (the
contraction over batch x sequence) with a transposed copy of the activation or its gradient, and runs
it outside its library fusions. With both operands flattened to 2-D the same dot reads them in place:
the tiny ViT's MLP forward + backward is 1.7x faster and the tiny ResNet's 1x1 convolution 2.5x
(`python benchmarks/dense_layout.py`, docs/performance.md). Only the CPU takes the 2-D form: on TPU,
merging a token axis that is not a multiple of 8 into the batch is a relayout copy, and GPU and TPU
compilers handle the N-D dot natively.
"""

import math

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from vljax.kernels import tiling


def contract(x, kernel, n_contract: int = 1, precision=None, preferred_element_type=None):
    """[..., *C] x [*C, *O] -> [..., *O]: x's last n_contract axes against kernel's first n_contract.

    Equal to `jnp.einsum` over the named axes ("bnd,dhk->bnhk" is contract(x, k), "bnhk,hkd->bnd" is
    contract(x, k, 2)).
    """
    c_shape = kernel.shape[:n_contract]
    if tuple(x.shape[x.ndim - n_contract :]) != tuple(c_shape):
        raise ValueError(f"contract: x {x.shape} does not end in the kernel's contracted axes {c_shape}")
    lead, out = x.shape[: x.ndim - n_contract], kernel.shape[n_contract:]
    c, o = math.prod(c_shape), math.prod(out)
    y = lax.dot_general(
        x.reshape(math.prod(lead), c),
        kernel.reshape(c, o),
        (((1,), (0,)), ((), ())),
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
    return y.reshape(*lead, *out)


def dense_dot(x, kernel, n_contract: int = 1, precision=None, preferred_element_type=None):
    """[..., *C] x [*C, *O] -> [..., *O]: `contract` on CPU, lax.dot_general over the same axes elsewhere."""
    if tiling.backend() == "cpu":
        return contract(x, kernel, n_contract, precision, preferred_element_type)
    axes = (tuple(range(x.ndim - n_contract, x.ndim)), tuple(range(n_contract)))
    return lax.dot_general(
        x, kernel, (axes, ((), ())), precision=precision, preferred_element_type=preferred_element_type
    )


def flat_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """lax.dot_general for `nn.Dense(dot_general=...)`: its last-axis contraction goes through `dense_dot`."""
    (lc, rc), (lb, rb) = dimension_numbers
    if tuple(lc) == (lhs.ndim - 1,) and tuple(rc) == (0,) and not lb and not rb and lhs.ndim > 2:
        return dense_dot(lhs, rhs, 1, precision, preferred_element_type)
    return lax.dot_general(
        lhs, rhs, dimension_numbers, precision=precision, preferred_element_type=preferred_element_type
    )


def partitioned_dense(features: int, names: tuple, name: str, *, use_bias: bool = True, dtype=None,
                      param_dtype=jnp.float32):
    """nn.Dense [..., Din] -> [..., features] with a xavier-uniform kernel named `names` (logical axes of
    [Din, features]) and a zero bias named names[-1] (the MLP and LVLM projector layers)."""
    return nn.Dense(
        features,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=nn.with_logical_partitioning(nn.initializers.xavier_uniform(), names),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, names[-1:]),
        name=name,
    )
