"""LayerNorm, RMSNorm, GroupNorm and FrozenBatchNorm with logically named parameters, computed in float32."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any


def _norm_param(module: nn.Module, name: str, init, size: int) -> jax.Array:
    """A norm's per-channel parameter `name` (scale or bias, [size], logical axis ('norm',)), as float32."""
    param = module.param(name, nn.with_logical_partitioning(init, ("norm",)), (size,), module.param_dtype)
    return param.astype(jnp.float32)


class LayerNorm(nn.Module):
    """[..., D] -> [..., D] layer normalization (scale and bias named ('norm',))."""

    epsilon: float = 1e-6
    use_bias: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        """[..., D] -> [..., D] normalized over the last axis."""
        d = x.shape[-1]
        # NOTE: statistics in float32 even for bf16 activations; bf16 variance underflows.
        xf = x.astype(jnp.float32)
        mean = jnp.mean(xf, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(xf - mean), axis=-1, keepdims=True)
        y = (xf - mean) * jnp.reciprocal(jnp.sqrt(var + self.epsilon))
        y = y * _norm_param(self, "scale", nn.initializers.ones, d)
        if self.use_bias:
            y = y + _norm_param(self, "bias", nn.initializers.zeros, d)
        return y.astype(self.dtype)


class RMSNorm(nn.Module):
    """[..., D] -> [..., D] root-mean-square normalization (scale named ('norm',))."""

    epsilon: float = 1e-6
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        """[..., D] -> [..., D] divided by the RMS over the last axis, times a learned scale."""
        d = x.shape[-1]
        xf = x.astype(jnp.float32)
        ms = jnp.mean(jnp.square(xf), axis=-1, keepdims=True)
        y = xf * jnp.reciprocal(jnp.sqrt(ms + self.epsilon))
        return (y * _norm_param(self, "scale", nn.initializers.ones, d)).astype(self.dtype)


def group_norm_groups(channels: int, max_groups: int = 32) -> int:
    """-> the largest group count <= max_groups that divides `channels` (32 for ResNet widths >= 32)."""
    return max(g for g in range(1, min(max_groups, channels) + 1) if channels % g == 0)


class GroupNorm(nn.Module):
    """[B, ..., C] -> [B, ..., C] group normalization (Wu & He 2018) over all non-batch axes of each group.

    Per-example statistics, so no running averages and no cross-device batch reduction: the trainer
    stays purely functional. `groups` None = group_norm_groups(C). `scale_init` zeros makes a residual
    branch start as the identity (the last norm of a ResNet block).
    """

    groups: int | None = None
    epsilon: float = 1e-5
    scale_init: Any = nn.initializers.ones
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        """[B, ..., C] -> [B, ..., C]."""
        b, c = x.shape[0], x.shape[-1]
        g = self.groups or group_norm_groups(c)
        if c % g:
            raise ValueError(f"GroupNorm: {c} channels are not divisible into {g} groups")
        # NOTE: statistics go through per-channel sums [B, C] and are broadcast back per channel. Reshaping x to
        # [..., G, C/G] instead puts a 1-4 wide axis last, which XLA's CPU backend runs slowly (it topped the ResNet
        # demo's profile; with the 1x1-conv change the step went 387.5 -> 259.8 ms, docs/performance.md). Two
        # passes (mean, then centred squares) keep the variance exact for large means.
        spatial = tuple(range(1, x.ndim - 1))
        n = float(np.prod(x.shape[1:-1])) * (c // g)
        per_group = lambda s: jnp.repeat(jnp.sum(s.reshape(b, g, c // g), axis=-1) / n, c // g, axis=1)
        shape = (b,) + (1,) * len(spatial) + (c,)
        xf = x.astype(jnp.float32)
        centred = xf - per_group(jnp.sum(xf, axis=spatial)).reshape(shape)
        var = per_group(jnp.sum(jnp.square(centred), axis=spatial))
        scale, bias = (
            _norm_param(self, "scale", self.scale_init, c),
            _norm_param(self, "bias", nn.initializers.zeros, c),
        )
        mult = jax.lax.rsqrt(var + self.epsilon) * scale
        return (centred * mult.reshape(shape) + bias).astype(self.dtype)


class FrozenBatchNorm(nn.Module):
    """[B, ..., C] -> [B, ..., C]: x * scale + bias per channel, a BatchNorm in inference form.

    A trained BatchNorm's running statistics fold into the affine: scale = gamma / sqrt(var + eps), bias =
    beta - mean * scale (`fold_batch_norm`). That is how released BatchNorm checkpoints (CLIP's ResNets)
    run in the stateless trainer, as detectron2's FrozenBatchNorm2d does; the two params train like any
    other unless frozen (config.optim.freeze). It does not normalize, so it is for loaded weights, not for
    training a tower from scratch (use GroupNorm). Params have GroupNorm's names and shapes.
    """

    scale_init: Any = nn.initializers.ones
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        """[B, ..., C] -> [B, ..., C]."""
        c = x.shape[-1]
        scale, bias = (
            _norm_param(self, "scale", self.scale_init, c),
            _norm_param(self, "bias", nn.initializers.zeros, c),
        )
        return (x.astype(jnp.float32) * scale + bias).astype(self.dtype)


def fold_batch_norm(gamma, beta, mean, var, epsilon: float = 1e-5):
    """BatchNorm weight, bias, running mean, running var [C] (numpy) -> FrozenBatchNorm (scale, bias) [C]."""
    scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + epsilon)
    bias = np.asarray(beta, np.float64) - np.asarray(mean, np.float64) * scale
    return scale.astype(np.float32), bias.astype(np.float32)


NORMS = {"layernorm": LayerNorm, "rmsnorm": RMSNorm}


def make_norm(kind: str, **kwargs) -> nn.Module:
    """Norm module by name ('layernorm' | 'rmsnorm'); kwargs go to its constructor."""
    if kind not in NORMS:
        raise ValueError(f"norm={kind!r} is not one of {sorted(NORMS)}")
    return NORMS[kind](**kwargs)
