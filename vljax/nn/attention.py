"""Multi-head attention: self/cross, key-padding and causal masks, RoPE, grouped-query (GQA)."""

import logging
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vljax.kernels import tiling as tiles
from vljax.nn.embeddings import apply_rope
from vljax.nn.rope_scaling import rope_inv_freq
from vljax.sharding import per_batch_shard

Dtype = Any

# NOTE: a large finite negative instead of -inf: a fully masked row then gives a uniform (finite)
# softmax rather than NaN, and NaN-free gradients.
MASK_VALUE = float(np.finfo(np.float32).min)
_FALLBACK_WARNED: set[str] = set()
# 'xla': the einsum path below (any backend, masks, bias, dropout). 'cudnn': cuDNN's fused flash
# attention through jax.nn.dot_product_attention (GPU, 16-bit). 'pallas': jax's Pallas flash attention for
# unmasked self-attention, xla for the rest: the Triton kernel (GPU; interpret mode on CPU), on TPU jax's
# Mosaic one. 'auto': cudnn where it applies, else xla ('pallas' is opt-in until measured on a GPU / TPU).
ATTENTION_IMPLS = ("auto", "xla", "cudnn", "pallas")
# NOTE: Pallas flash attention tiles the sequence in blocks of this many tokens (padded, masked by segment ids).
PALLAS_BLOCK = 64


def resolve_attention_impl(impl: str, *, dtype, head_dim: int, masked: bool, dropout: bool, backend: str | None = None):
    """impl ('auto' | 'xla' | 'cudnn' | 'pallas') + call facts -> the impl to run ('xla', 'cudnn' or 'pallas').

    'auto' takes cuDNN only where it is known to apply and to help: a GPU, bf16/f16 compute, no mask
    or logit bias (the ViT's plain self-attention, the bulk of a two-tower step), no dropout, head
    dim a multiple of 8 up to 128. Masked text attention stays on XLA (its [B, L, L] mask would
    become a materialized cuDNN bias). 'cudnn' asked for explicitly fails loudly off-GPU. 'pallas'
    runs jax's Pallas flash-attention kernel on unmasked, dropout-free calls and XLA on the rest
    (dot_product_attention also keeps cross-attention and GQA calls on XLA).
    """
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"attention_impl={impl!r} is not one of {ATTENTION_IMPLS}")
    backend = backend or tiles.backend()
    if impl == "cudnn":
        if backend != "gpu":
            raise ValueError(f"attention_impl='cudnn' needs a GPU backend, this one is {backend!r}; use 'auto' or 'xla'")
        if dropout:
            raise ValueError("attention_impl='cudnn' does not support attention dropout; use 'xla'")
        return "cudnn"
    if impl == "pallas":
        # NOTE: the kernel has no mask, bias or dropout: such calls (a two-tower model's padded text
        # tower) keep the XLA path, so one model-wide setting serves both towers.
        return "xla" if masked or dropout else "pallas"
    if impl == "xla":
        return "xla"
    half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
    fits = head_dim % 8 == 0 and head_dim <= 128
    return "cudnn" if backend == "gpu" and half and fits and not masked and not dropout else "xla"


def fused_attention(q, k, v, mask=None, *, bias=None, dtype=jnp.bfloat16, implementation="cudnn"):
    """[B, Nq, H, K] x [B, Nk, Hkv, K] x [B, Nk, Hkv, K] (+ bool [B, Nq, Nk], bias) -> [B, Nq, H, K] via jax.nn.

    The layout, scale (1/sqrt(K)) and GQA grouping match `dot_product_attention`; implementation='xla'
    runs the same call on any backend (the CPU test of this adaptor).
    """
    b, nq, h, _ = q.shape
    nk = k.shape[1]
    if bias is not None:
        bias = jnp.broadcast_to(bias.astype(dtype), (b, h, nq, nk))
    if mask is not None:
        mask = mask[:, None, :, :]
    return jax.nn.dot_product_attention(
        q.astype(dtype), k.astype(dtype), v.astype(dtype), bias=bias, mask=mask, implementation=implementation
    )


def make_attention_mask(kv_mask: jax.Array | None, causal: bool, nq: int, nk: int, batch: int) -> jax.Array | None:
    """bool [B, Nk] key padding (True = keep) + causal flag -> bool [B, Nq, Nk] or None."""
    mask = None
    if kv_mask is not None:
        if kv_mask.shape != (batch, nk):
            raise ValueError(f"kv_mask must be [B, Nk] = {(batch, nk)}, got {kv_mask.shape}")
        mask = jnp.broadcast_to(kv_mask.astype(bool)[:, None, :], (batch, nq, nk))
    if causal:
        # NOTE: queries are aligned to the end of the keys so Nq < Nk (cached prefix) stays causal.
        qpos = jnp.arange(nq)[:, None] + (nk - nq)
        tri = qpos >= jnp.arange(nk)[None, :]
        mask = tri[None] if mask is None else mask & tri[None]
        mask = jnp.broadcast_to(mask, (batch, nq, nk))
    return mask


def _padding_segments(b: int, n: int, padded: int):
    """-> [b, padded] int32 segment ids of the flash kernels (1 = one of the n real tokens, 0 = padding), None if
    nothing is padded."""
    if padded == n:
        return None
    return jnp.broadcast_to((jnp.arange(padded) < n).astype(jnp.int32), (b, padded))


def tpu_flash_attention(q, k, v, *, dtype=jnp.bfloat16):
    """[B, N, H, K] x3 (self-attention, H kv heads) -> [B, N, H, K] via jax's Pallas flash attention for TPU.

    jax.experimental.pallas.ops.tpu.flash_attention (Mosaic kernels, forward and backward), which tiles the
    sequence in blocks of 128: N is padded to a multiple of 128 and padded keys get segment id 0 (real ones
    1), so real queries never attend to padding. Compiled on TPU. Off-TPU it runs only in jax's TPU
    interpreter: trace and compile the whole computation inside `pltpu.force_tpu_interpret_mode()` (the
    kernel's backward is traced after the forward, so a context around this call alone is not enough).
    """
    from jax.experimental.pallas.ops.tpu import flash_attention as tpu_fa

    b, n, _, kdim = q.shape
    blk = tpu_fa.MIN_BLOCK_SIZE
    padded = tiles.round_up(n, blk)
    # NOTE: the TPU kernel is head-major ([B, H, N, K]).
    prep = lambda x: jnp.pad(x.astype(dtype), ((0, 0), (0, padded - n), (0, 0), (0, 0))).transpose(0, 2, 1, 3)
    ids = _padding_segments(b, n, padded)
    segments = None if ids is None else tpu_fa.SegmentIds(q=ids, kv=ids)
    sizes = tpu_fa.BlockSizes(
        block_q=blk, block_k_major=blk, block_k=blk, block_b=1, block_q_major_dkv=blk, block_k_major_dkv=blk,
        block_k_dkv=blk, block_q_dkv=blk, block_k_major_dq=blk, block_k_dq=blk, block_q_dq=blk,
    )
    out = tpu_fa.flash_attention(prep(q), prep(k), prep(v), segment_ids=segments, sm_scale=kdim**-0.5,
                                 block_sizes=sizes)
    return out.transpose(0, 2, 1, 3)[:, :n]


def pallas_attention(q, k, v, *, dtype=jnp.bfloat16, block: int = PALLAS_BLOCK, interpret: bool | None = None):
    """[B, N, H, K] x3 (self-attention, H kv heads) -> [B, N, H, K] via jax's Pallas flash-attention kernel.

    N is padded to a multiple of the block; padded keys get segment id 0 and real ones 1, so real queries
    never attend to padding. Forward and backward are Triton kernels on GPU and run in the interpreter on
    CPU; on TPU it is jax's TPU (Mosaic) flash attention instead (`tpu_flash_attention`, blocks of 128;
    `interpret` applies to the Triton kernel only). Under a mesh that splits the batch the kernel runs on each
    batch shard (vljax.sharding.per_batch_shard).
    """
    from jax.experimental.pallas.ops.gpu import attention as pallas_mha

    _, n, h, kdim = q.shape
    if k.shape[1] != n or k.shape[2] != h:
        raise ValueError(
            f"attention_impl='pallas' needs self-attention with as many kv heads as heads; got q {q.shape}, "
            f"k {k.shape}"
        )
    if tiles.backend() == "tpu":
        return per_batch_shard(lambda q, k, v: tpu_flash_attention(q, k, v, dtype=dtype), q, k, v)
    interpret = tiles.resolve_interpret(interpret, "attention_impl='pallas'")
    # NOTE: Triton blocks are powers of two >= 16 (the shared tile arithmetic of vljax's own kernels).
    blk = min(block, tiles.padded_length(n, "gpu"))
    padded = tiles.round_up(n, blk)
    pad = lambda x: jnp.pad(x.astype(dtype), ((0, 0), (0, padded - n), (0, 0), (0, 0)))
    sizes = pallas_mha.BlockSizes(
        block_q=blk, block_k=blk, block_q_dkv=min(32, blk), block_kv_dkv=min(32, blk), block_q_dq=min(32, blk),
        block_kv_dq=min(32, blk),
    )

    def call(q, k, v):
        """One batch shard [b, N, H, K] x3 -> [b, N, H, K]."""
        segments = _padding_segments(q.shape[0], n, padded)
        out = pallas_mha.mha(pad(q), pad(k), pad(v), segments, sm_scale=kdim**-0.5, block_sizes=sizes,
                             interpret=interpret)
        return out[:, :n]

    return per_batch_shard(call, q, k, v)


def dot_product_attention(
    q,
    k,
    v,
    mask=None,
    *,
    bias=None,
    dropout_rate: float = 0.0,
    dropout_rng=None,
    dtype: Dtype = jnp.float32,
    impl: str = "xla",
):
    """[B, Nq, H, K] x [B, Nk, Hkv, K] x [B, Nk, Hkv, Kv] (+ bool [B, Nq, Nk], bias -> [B, H, Nq, Nk]) -> [B, Nq, H, Kv].

    `bias` is any float array broadcastable to [B, H, Nq, Nk], added to the logits before the mask
    (e.g. ToMe's proportional attention: log token sizes, [B, 1, 1, Nk]). `impl` as in
    resolve_attention_impl ('xla' default: the einsum path, logits and softmax in float32).
    """
    use_dropout = dropout_rate > 0.0 and dropout_rng is not None
    resolved = resolve_attention_impl(
        impl, dtype=dtype, head_dim=q.shape[-1], masked=mask is not None or bias is not None, dropout=use_dropout
    )
    if resolved == "cudnn":
        try:
            return fused_attention(q, k, v, mask, bias=bias, dtype=dtype)
        except (NotImplementedError, RuntimeError, ValueError) as e:
            # NOTE: jax checks the cuDNN version / GPU generation at trace time; 'auto' then falls
            # back to the XLA path (saying why, once per reason), an explicit 'cudnn' raises.
            if impl == "cudnn":
                raise
            reason = f"{type(e).__name__}: {e}"
            if reason not in _FALLBACK_WARNED:
                _FALLBACK_WARNED.add(reason)
                logging.getLogger(__name__).warning("attention_impl='auto': cuDNN attention unavailable (%s); "
                                                    "using the XLA path", reason)
    # NOTE: the Pallas kernel is self-attention with equal head counts; cross-attention and GQA use XLA.
    if resolved == "pallas" and k.shape[1:3] == q.shape[1:3]:
        return pallas_attention(q, k, v, dtype=dtype)
    b, nq, h, kdim = q.shape
    hkv = k.shape[2]
    if h % hkv:
        raise ValueError(f"num_heads={h} is not a multiple of num_kv_heads={hkv}")
    g = h // hkv
    # NOTE: 4-D head-major operands (q [b, hkv, g * q, k], k/v [b, hkv, s, k]), the query groups of GQA
    # folded into the query axis: XLA:CPU then runs two plain batched matmuls on contiguous operands.
    # The 5-D einsums this replaces ("bqhgk,bshk->bhgqs", transposing implicitly) measured 1.45x slower
    # fwd+bwd at the tiny preset's shape (128 x 64 tokens x 3 heads x 32).
    q = q.reshape(b, nq, hkv, g, kdim).transpose(0, 2, 3, 1, 4).reshape(b, hkv, g * nq, kdim)
    q = q * jnp.asarray(kdim**-0.5, q.dtype)
    k = k.transpose(0, 2, 1, 3)
    v = v.transpose(0, 2, 1, 3)
    # NOTE: logits and softmax in float32 regardless of the compute dtype.
    logits = jnp.einsum("bhqk,bhsk->bhqs", q, k, preferred_element_type=jnp.float32)
    nk = logits.shape[-1]
    if bias is not None:
        bias = jnp.broadcast_to(bias.astype(jnp.float32), (b, h, nq, nk))
        logits = logits + bias.reshape(b, hkv, g * nq, nk)
    if mask is not None:
        logits = jnp.where(jnp.tile(mask, (1, g, 1))[:, None], logits, MASK_VALUE)
    probs = jax.nn.softmax(logits, axis=-1)
    if use_dropout:
        keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, probs.shape)
        probs = jnp.where(keep, probs / (1.0 - dropout_rate), 0.0)
    out = jnp.einsum("bhqs,bhsv->bhqv", probs.astype(dtype), v.astype(dtype))
    dv = out.shape[-1]
    return out.reshape(b, hkv, g, nq, dv).transpose(0, 3, 1, 2, 4).reshape(b, nq, h, dv)


class MultiHeadAttention(nn.Module):
    """[B, Nq, D] (x [B, Nk, Dkv]) -> [B, Nq, D] attention with optional GQA, RoPE, masks, dropout."""

    num_heads: int
    num_kv_heads: int | None = None
    head_dim: int | None = None
    out_features: int | None = None
    causal: bool = False
    use_rope: bool = False
    rope_max_wavelength: float = 10_000.0
    rope_scaling: dict | None = None  # e.g. dict(rope_type='llama3', factor=8, ...); see nn/rope_scaling.py
    use_bias: bool = True
    out_bias: bool | None = None  # None: same as use_bias (Qwen2 has q/k/v biases but none on the output)
    dropout_rate: float = 0.0
    attention_impl: str = "auto"  # 'auto' | 'xla' | 'cudnn' | 'pallas', see resolve_attention_impl
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    kernel_init: Any = None  # None: Xavier-uniform over (in, out) with the 3-D kernel's axes

    def _proj(self, x, heads, head_dim, name):
        """[B, N, D] -> [B, N, heads, head_dim] with a 3-D kernel [D, heads, head_dim]."""
        # NOTE: nn.DenseGeneral initializes a flattened 2-D kernel, which breaks 3-D logical
        # partitioning under a mesh; a 3-D param + einsum keeps ("embed", "heads", "kv") exact.
        init = (
            self.kernel_init
            if self.kernel_init is not None
            else nn.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=0, out_axis=(1, 2))
        )
        kernel = self.param(
            f"{name}_kernel",
            nn.with_logical_partitioning(init, ("embed", "heads", "kv")),
            (x.shape[-1], heads, head_dim),
            self.param_dtype,
        )
        y = jnp.einsum("bnd,dhk->bnhk", x.astype(self.dtype), kernel.astype(self.dtype))
        if self.use_bias:
            bias = self.param(
                f"{name}_bias",
                nn.with_logical_partitioning(nn.initializers.zeros, ("heads", "kv")),
                (heads, head_dim),
                self.param_dtype,
            )
            y = y + bias.astype(self.dtype)
        return y

    @nn.compact
    def __call__(
        self,
        x_q,
        x_kv=None,
        *,
        kv_mask=None,
        mask=None,
        bias=None,
        positions_q=None,
        positions_kv=None,
        deterministic: bool = True,
        return_keys: bool = False,
    ):
        """[B, Nq, D], optional [B, Nk, Dkv], bool kv_mask [B, Nk], bool mask [B, Nq, Nk] -> [B, Nq, D].

        `bias` (broadcastable to [B, H, Nq, Nk]) is added to the logits; with return_keys=True the result
        is ([B, Nq, D], keys [B, Nk, Hkv, K]), the keys as they enter the logits (token merging's metric).
        """
        x_kv = x_q if x_kv is None else x_kv
        b, nq, d = x_q.shape
        nk = x_kv.shape[1]
        if d % self.num_heads and self.head_dim is None:
            raise ValueError(f"width {d} is not divisible by num_heads={self.num_heads}; set head_dim")
        head_dim = self.head_dim or d // self.num_heads
        num_kv = self.num_kv_heads or self.num_heads
        if self.num_heads % num_kv:
            raise ValueError(f"num_heads={self.num_heads} is not a multiple of num_kv_heads={num_kv}")

        q = self._proj(x_q, self.num_heads, head_dim, "query")
        k = self._proj(x_kv, num_kv, head_dim, "key")
        v = self._proj(x_kv, num_kv, head_dim, "value")
        names = ("batch", "length", "act_heads", "act_kv")
        q, k, v = (nn.with_logical_constraint(t, names) for t in (q, k, v))
        if self.use_rope:
            pq = jnp.broadcast_to(jnp.arange(nq), (b, nq)) if positions_q is None else positions_q
            pk = jnp.broadcast_to(jnp.arange(nk), (b, nk)) if positions_kv is None else positions_kv
            inv_freq = None
            if self.rope_scaling:
                inv_freq = rope_inv_freq(head_dim, self.rope_max_wavelength, self.rope_scaling, seq_len=jnp.max(pk) + 1)
            q = apply_rope(q, pq, self.rope_max_wavelength, inv_freq)
            k = apply_rope(k, pk, self.rope_max_wavelength, inv_freq)

        full_mask = make_attention_mask(kv_mask, self.causal, nq, nk, b)
        if mask is not None:
            if mask.shape != (b, nq, nk):
                raise ValueError(f"mask must be [B, Nq, Nk] = {(b, nq, nk)}, got {mask.shape}")
            full_mask = mask if full_mask is None else full_mask & mask
        use_dropout = self.dropout_rate > 0.0 and not deterministic
        out = dot_product_attention(
            q,
            k,
            v,
            full_mask,
            bias=bias,
            dropout_rate=self.dropout_rate if use_dropout else 0.0,
            dropout_rng=self.make_rng("dropout") if use_dropout else None,
            dtype=self.dtype,
            impl=self.attention_impl,
        )
        out = nn.with_logical_constraint(out, names)
        d_out = self.out_features or d
        out_init = (
            self.kernel_init
            if self.kernel_init is not None
            else nn.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=(0, 1), out_axis=2)
        )
        w_out = self.param(
            "out_kernel",
            nn.with_logical_partitioning(out_init, ("heads", "kv", "embed")),
            (self.num_heads, head_dim, d_out),
            self.param_dtype,
        )
        out = jnp.einsum("bnhk,hkd->bnd", out.astype(self.dtype), w_out.astype(self.dtype))
        use_out_bias = self.use_bias if self.out_bias is None else self.out_bias
        if use_out_bias:
            out = out + self.param(
                "out_bias", nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)), (d_out,), self.param_dtype
            ).astype(self.dtype)
        out = nn.with_logical_constraint(out, ("batch", "length", "act_embed"))
        return (out, k) if return_keys else out
