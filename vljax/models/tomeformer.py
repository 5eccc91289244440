"""Token merging inside transformer stacks (ToMe, Bolya et al. 2023) and SimVLG's TomeFormer connector.

Each block runs attention, then merges r_l tokens by bipartite soft matching on the attention keys
(averaged over heads), then runs the MLP on the shorter sequence. Token sizes are tracked; with
proportional attention the next attention adds log(size) to the logits, so a merged token weighs as
much as the tokens it stands for.

    config: dict(r=8, schedule='constant'|'decreasing'|'increasing', mode='weighted'|'mean', prop_attn=True)
"""

from typing import Any, Mapping

import flax.linen as nn
import jax.numpy as jnp

from vljax.kernels import token_merging as tm
from vljax.nn.norms import make_norm
from vljax.nn.transformer import block_class

Dtype = Any

MERGING_KEYS = ("r", "schedule", "mode", "prop_attn", "impl")
# NOTE: impl is the matching's (tm.IMPLS): 'auto' = the Triton kernel on GPU, the reference elsewhere; 'pallas' also
# takes the Mosaic kernel on TPU (opt-in there until measured on a TPU, docs/kernels.md).
DEFAULT_MERGING = dict(r=0, schedule="constant", mode="weighted", prop_attn=True, impl="auto")


def parse_token_merging(cfg: Mapping | None) -> dict | None:
    """None | {r, schedule, mode, prop_attn, impl} -> validated dict with defaults filled, or None (off)."""
    if cfg is None:
        return None
    cfg = dict(cfg)
    unknown = sorted(set(cfg) - set(MERGING_KEYS))
    if unknown:
        raise ValueError(f"token_merging: unknown keys {unknown}; valid: {MERGING_KEYS}")
    out = dict(DEFAULT_MERGING, **cfg)
    if not isinstance(out["r"], int) or out["r"] < 0:
        raise ValueError(f"token_merging.r must be an int >= 0, got {out['r']!r}")
    if out["schedule"] not in tm.SCHEDULES:
        raise ValueError(f"token_merging.schedule must be one of {tm.SCHEDULES}, got {out['schedule']!r}")
    if out["mode"] not in tm.MODES:
        raise ValueError(f"token_merging.mode must be one of {tm.MODES}, got {out['mode']!r}")
    if out["impl"] not in tm.IMPLS:
        raise ValueError(f"token_merging.impl must be one of {tm.IMPLS}, got {out['impl']!r}")
    out["prop_attn"] = bool(out["prop_attn"])
    return out


def merge_schedule(cfg: dict | None, depth: int, n_tokens: int, protect_cls: bool) -> list[int]:
    """Parsed config (or None) x depth x tokens -> per-layer merge counts (all 0 when off)."""
    if cfg is None:
        return [0] * depth
    return tm.r_schedule(cfg["schedule"], cfg["r"], depth, n_tokens, protect_cls)


def attention_bias(sizes, prop_attn: bool):
    """[B, N, 1] sizes (or None before any merge) -> [B, 1, 1, N] log-size logit bias, or None."""
    if sizes is None or not prop_attn:
        return None
    return tm.size_bias(sizes)


def merge_tokens(x, keys, sizes, r: int, mode: str, protect_cls: bool, impl: str = "auto"):
    """[B, N, D] tokens x keys [B, N, H, K] x sizes [B, N, 1] | None -> ([B, N-r, D], [B, N-r, 1])."""
    plan = tm.bipartite_soft_matching(tm.metric_from_keys(keys), r, protect_cls=protect_cls, impl=impl)
    return tm.merge(x, plan, sizes, mode=mode)


def weighted_mean(x, sizes):
    """[B, N, D] x [B, N, 1] sizes | None -> [B, D] mean over the original tokens each merged one stands for."""
    if sizes is None:
        return jnp.mean(x, axis=1)
    total = jnp.sum(x.astype(jnp.float32) * sizes, axis=1)
    return (total / jnp.sum(sizes, axis=1)).astype(x.dtype)


def run_blocks(blocks, x, schedule, cfg: dict | None, protect_cls: bool):
    """Blocks x [B, N, D] x per-layer r -> ([B, N', D], sizes [B, N', 1] or None if nothing merged)."""
    sizes = None
    for blk, r in zip(blocks, schedule):
        bias = attention_bias(sizes, cfg is not None and cfg["prop_attn"])
        if r > 0:
            x, keys = blk.attention_branch_with_keys(x, bias=bias)
            x, sizes = merge_tokens(x, keys, sizes, r, cfg["mode"], protect_cls, cfg["impl"])
        else:
            # NOTE: without merging (and before the first merge) this is exactly the plain block.
            x = blk.attention_branch(x, bias=bias)
        x = blk.mlp_branch(x)
    return x, sizes


class TomeFormer(nn.Module):
    """[B, N, D] -> [B, N', D] bidirectional (BERT-style) encoder that merges tokens between attention and MLP.

    SimVLG's connector: it shortens a visual token sequence before a language model. Defaults follow SimVLG's code
    (EVLGen's BertLayer): plain-average merging (`mode='mean'`), no proportional attention, token 0 (the CLS) never
    merged. `mode='weighted'` with `prop_attn=True` is ToMe's merging instead.
    """

    depth: int
    num_heads: int
    mlp_dim: int
    r: int = 0
    schedule: str = "constant"
    mode: str = "mean"
    prop_attn: bool = False
    protect_first: bool = True
    impl: str = "auto"  # the matching's, as token_merging.impl
    activation: str = "gelu"
    norm: str = "layernorm"
    dropout_rate: float = 0.0
    remat: str = "none"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def merging(self) -> dict:
        """-> the validated merging config of this module."""
        return parse_token_merging(
            dict(r=self.r, schedule=self.schedule, mode=self.mode, prop_attn=self.prop_attn, impl=self.impl)
        )

    def output_length(self, n_tokens: int) -> int:
        """Input length -> output length N' after all merges."""
        return n_tokens - sum(merge_schedule(self.merging(), self.depth, n_tokens, self.protect_first))

    @nn.compact
    def __call__(self, x, *, train: bool = False, return_sizes: bool = False):
        """[B, N, D] -> [B, N', D] (or ([B, N', D], sizes [B, N', 1]) with return_sizes=True)."""
        if x.ndim != 3:
            raise ValueError(f"x must be [B, N, D], got shape {x.shape}")
        cfg = self.merging()
        schedule = merge_schedule(cfg, self.depth, x.shape[1], self.protect_first)
        cls = block_class(self.remat)
        blocks = [
            cls(
                num_heads=self.num_heads,
                mlp_dim=self.mlp_dim,
                activation=self.activation,
                norm=self.norm,
                dropout_rate=self.dropout_rate,
                deterministic=not train,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=f"block_{i:02d}",
            )
            for i in range(self.depth)
        ]
        x = nn.with_logical_constraint(x.astype(self.dtype), ("batch", "length", "act_embed"))
        x, sizes = run_blocks(blocks, x, schedule, cfg, self.protect_first)
        x = make_norm(self.norm, dtype=self.dtype, param_dtype=self.param_dtype, name="norm_out")(x)
        if return_sizes:
            return x, (jnp.ones(x.shape[:2] + (1,), jnp.float32) if sizes is None else sizes)
        return x
