"""Token merging by bipartite soft matching (ToMe, Bolya et al. 2023; SimVLG's TomeFormer variant).

Tokens alternate into set A (even indices) and set B (odd indices). Each A token finds its most
cosine-similar B token; the r A tokens with the best matches are merged into their B partners.
Output order: [unmerged A tokens, B tokens]; the unmerged A tokens keep their original order (CLS first) when the
CLS is protected, and otherwise follow the reference (ToMe's) order, by match score, in the argsort paths and their
original order in the Pallas kernels' plan (`plan_from_ranks`): equal as sets, so one merge gives the same tokens,
but the next layer's A/B split differs (docs/kernels.md). The matching step has
Pallas kernels (best partner, best score and the rank of every A token by counting, no sort): one for
Triton (GPU, `match_pallas`) and one for Mosaic (TPU, `match_mosaic`), and an argsort reference; the
gather/scatter merge is plain JAX. Indices carry no gradient; values do.
Ties: the first B index wins a row's max; equal scores rank the lower A index first.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from vljax.kernels import tiling
from vljax.sharding import per_batch_shard

# NOTE: finite stand-in for ToMe's -inf (cosines lie in [-1, 1]); keeps max/argmax NaN-free.
PROTECT_VALUE = -1e9
IMPLS = ("auto", "reference", "pallas")
SCHEDULES = ("constant", "decreasing", "increasing")
MODES = ("weighted", "mean")


class MergePlan(NamedTuple):
    """Indices of one merge step: unm_idx [B, Na-r], src_idx [B, r] (into A), dst_idx [B, r] (into B)."""

    unm_idx: jax.Array
    src_idx: jax.Array
    dst_idx: jax.Array


def max_merge(n_tokens, protect_cls=True):
    """Token count -> the most tokens one step may merge (the CLS, if protected, never is)."""
    return (n_tokens - 1) // 2 if protect_cls else n_tokens // 2


def metric_from_keys(keys):
    """[B, N, H, Dh] attention keys -> [B, N, Dh] matching metric (mean over heads)."""
    return jnp.mean(keys, axis=2)


def _normalize(x):
    """[..., C] -> rows scaled to unit L2 norm in float32 (zero rows stay zero)."""
    x = x.astype(jnp.float32)
    return x * lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-24))


# ----------------------------------------------------------------------------- matching: reference


def match_reference(metric, protect_cls=True):
    """[B, N, C] -> (best_idx [B, Na] int32, best_score [B, Na] f32, rank [B, Na] int32) via argsort."""
    m = _normalize(metric)
    scores = jnp.einsum("bic,bjc->bij", m[:, ::2], m[:, 1::2], precision=lax.Precision.HIGHEST)
    if protect_cls:
        scores = scores.at[:, 0, :].set(PROTECT_VALUE)
    best_score = jnp.max(scores, axis=-1)
    best_idx = jnp.argmax(scores, axis=-1).astype(jnp.int32)
    order = jnp.argsort(-best_score, axis=-1, stable=True)
    na = best_score.shape[1]
    rank = jnp.zeros_like(order).at[jnp.arange(order.shape[0])[:, None], order].set(jnp.arange(na))
    return best_idx, best_score, rank.astype(jnp.int32)


# ----------------------------------------------------------------------------- matching: Pallas


def _cosines(a, b):
    """[Na, C] x [Nb, C] -> [Na, Nb] float32 cosine similarities (exact float32, no TF32)."""
    return lax.dot_general(_normalize(a), _normalize(b), (((1,), (1,)), ((), ())),
                           precision=lax.Precision.HIGHEST, preferred_element_type=jnp.float32)


def _best_kernel(a_ref, b_ref, idx_ref, score_ref, *, na, nb, protect_cls, chunk_b):
    """One (sample, block of A rows) program: best B partner and score per row, B scanned in chunks."""
    block_a = a_ref.shape[1]
    a = a_ref[0]
    row = pl.program_id(1) * block_a + lax.broadcasted_iota(jnp.int32, (block_a, chunk_b), 0)
    col = lax.broadcasted_iota(jnp.int32, (block_a, chunk_b), 1)
    # NOTE: padded A rows get the protect value too; they sit after every real row, so ties never lift them.
    dead_row = row >= na
    if protect_cls:
        dead_row = dead_row | (row == 0)

    def chunk_step(c, carry):
        best, idx = carry
        j0 = pl.multiple_of(c * chunk_b, chunk_b)
        s = jnp.where(dead_row | (j0 + col >= nb), PROTECT_VALUE, _cosines(a, b_ref[0, pl.ds(j0, chunk_b), :]))
        c_best = jnp.max(s, axis=1)
        c_idx = j0 + jnp.min(jnp.where(s == c_best[:, None], col, chunk_b), axis=1)
        # NOTE: strict '>' keeps the earlier chunk on ties: the first B index wins, as in argmax.
        better = c_best > best
        return jnp.where(better, c_best, best), jnp.where(better, c_idx, idx)

    init = (jnp.full((block_a,), 2 * PROTECT_VALUE, jnp.float32), jnp.zeros((block_a,), jnp.int32))
    best, idx = lax.fori_loop(0, b_ref.shape[1] // chunk_b, chunk_step, init)
    idx_ref[0] = idx
    score_ref[0] = best


def _rank_kernel(best_ref, rank_ref, *, chunk_a):
    """One (sample, block of A rows) program: rank_i = #{j : s_j > s_i or (s_j == s_i and j < i)}, no sort."""
    block_a = rank_ref.shape[1]
    i0 = pl.multiple_of(pl.program_id(1) * block_a, block_a)
    mine = best_ref[0, pl.ds(i0, block_a)][:, None]
    ai = i0 + lax.broadcasted_iota(jnp.int32, (block_a, chunk_a), 0)
    aj = lax.broadcasted_iota(jnp.int32, (block_a, chunk_a), 1)

    def chunk_step(c, count):
        j0 = pl.multiple_of(c * chunk_a, chunk_a)
        other = best_ref[0, pl.ds(j0, chunk_a)][None, :]
        before = (other > mine) | ((other == mine) & (j0 + aj < ai))
        return count + jnp.sum(before.astype(jnp.int32), axis=1)

    rank_ref[0] = lax.fori_loop(0, best_ref.shape[1] // chunk_a, chunk_step, jnp.zeros((block_a,), jnp.int32))


def match_pallas(metric, protect_cls=True, interpret=None, block=64, chunk=128):
    """[B, N, C] -> (best_idx [B, Na] int32, best_score [B, Na] f32, rank [B, Na] int32) via two kernels.

    The first finds each A token's best B partner (blocks of `block` A rows, B in chunks of `chunk`),
    the second ranks A tokens by counting over `block`-sized chunks of all best scores, so on-chip
    memory stays O(block * chunk) whatever the token count.
    """
    backend = tiling.backend()
    interpret = tiling.resolve_interpret(interpret, "token merging impl='pallas'")
    a, b = metric[:, ::2], metric[:, 1::2]
    (bsz, na, c), nb = a.shape, b.shape[1]
    # NOTE: A rows are blocked (and ranked in chunks) by `block`, B tokens scanned by `chunk`.
    block_a, pna = tiling.tile(na, block, backend)
    chunk_b, pnb = tiling.tile(nb, chunk, backend)
    pc = tiling.padded_length(c, backend)
    a = jnp.pad(a, ((0, 0), (0, pna - na), (0, pc - c)))
    b = jnp.pad(b, ((0, 0), (0, pnb - nb), (0, pc - c)))
    # NOTE: the manual-axis type lets the calls sit inside a vma-checked shard_map (data parallel).
    out = lambda dt: jax.ShapeDtypeStruct((bsz, pna), dt, manual_axis_type=jax.typeof(a).mat)
    params = tiling.compiler_params(bool(interpret))
    grid = (bsz, pna // block_a)
    row_block = pl.BlockSpec((1, block_a), lambda i, r: (i, r))
    idx, score = pl.pallas_call(
        functools.partial(_best_kernel, na=na, nb=nb, protect_cls=protect_cls, chunk_b=chunk_b),
        grid=grid,
        in_specs=[pl.BlockSpec((1, block_a, pc), lambda i, r: (i, r, 0)),
                  pl.BlockSpec((1, pnb, pc), lambda i, r: (i, 0, 0))],
        out_specs=[row_block, row_block],
        out_shape=[out(jnp.int32), out(jnp.float32)],
        interpret=bool(interpret),
        compiler_params=params,
    )(a, b)
    rank = pl.pallas_call(
        functools.partial(_rank_kernel, chunk_a=block_a),
        grid=grid,
        in_specs=[pl.BlockSpec((1, pna), lambda i, r: (i, 0))],
        out_specs=row_block,
        out_shape=out(jnp.int32),
        interpret=bool(interpret),
        compiler_params=params,
    )(score)
    return idx[:, :na], score[:, :na], rank[:, :na]


# ----------------------------------------------------------------------------- matching: Mosaic (TPU)

# NOTE: every in-kernel array here is a whole number of Mosaic's (8, 128) tiles.
_LANES, _SUBLANES = tiling.TPU_LANES, tiling.TPU_SUBLANES


def _mosaic_kernel(a_ref, b_ref, idx_ref, score_ref, rank_ref, *, na, nb, protect_cls, chunk_b, chunk_r):
    """One sample per program, laid out for TPU: A tokens on lanes, B tokens (and ranked tokens) on sublanes.

    a_ref [1, pNa, pC], b_ref [1, pNb, pC] -> idx, score, rank [1, 1, pNa]. Scores are [chunk_b, pNa] tiles
    (B chunk x all A), so every reduction runs over sublanes and leaves a lane-major [1, pNa] row, the
    layout of the outputs. Index and count reductions run in float32 (exact below 2^24).
    """
    pna = a_ref.shape[1]
    a = _normalize(a_ref[0])
    a_col = lax.broadcasted_iota(jnp.int32, (chunk_b, pna), 1)
    b_row = lax.broadcasted_iota(jnp.int32, (chunk_b, pna), 0)
    # NOTE: padded A columns get the protect value too; they sit after every real column, so rank ties never lift them.
    dead = a_col >= na
    if protect_cls:
        dead = dead | (a_col == 0)

    def best_step(c, carry):
        best, idx = carry
        j0 = pl.multiple_of(c * chunk_b, chunk_b)
        bc = _normalize(b_ref[0, pl.ds(j0, chunk_b), :])
        s = lax.dot_general(bc, a, (((1,), (1,)), ((), ())), precision=lax.Precision.HIGHEST,
                            preferred_element_type=jnp.float32)
        s = jnp.where(dead | (j0 + b_row >= nb), PROTECT_VALUE, s)
        c_best = jnp.max(s, axis=0, keepdims=True)
        c_idx = jnp.min(jnp.where(s == c_best, (j0 + b_row).astype(jnp.float32), float(nb)), axis=0, keepdims=True)
        # NOTE: strict '>' keeps the earlier chunk on ties: the first B index wins, as in argmax.
        better = c_best > best
        return jnp.where(better, c_best, best), jnp.where(better, c_idx, idx)

    init = (jnp.full((1, pna), 2 * PROTECT_VALUE, jnp.float32), jnp.zeros((1, pna), jnp.float32))
    best, idx = lax.fori_loop(0, b_ref.shape[1] // chunk_b, best_step, init)
    idx_ref[0] = idx.astype(jnp.int32)
    score_ref[0] = best

    r_col = lax.broadcasted_iota(jnp.int32, (chunk_r, pna), 1)
    r_row = lax.broadcasted_iota(jnp.int32, (chunk_r, pna), 0)
    spread = jnp.broadcast_to(best, (chunk_r, pna))

    def rank_step(c, count):
        j0 = pl.multiple_of(c * chunk_r, chunk_r)
        j = j0 + r_row
        # NOTE: token j's score moved from lanes to sublanes by a masked lane reduction (no transpose).
        other = jnp.max(jnp.where(r_col == j, spread, 2 * PROTECT_VALUE), axis=1, keepdims=True)
        before = (other > best) | ((other == best) & (j < r_col))
        return count + jnp.sum(before.astype(jnp.float32), axis=0, keepdims=True)

    count = lax.fori_loop(0, pna // chunk_r, rank_step, jnp.zeros((1, pna), jnp.float32))
    rank_ref[0] = count.astype(jnp.int32)


def match_mosaic(metric, protect_cls=True, interpret=None, chunk=128):
    """[B, N, C] -> (best_idx [B, Na] int32, best_score [B, Na] f32, rank [B, Na] int32): one Mosaic (TPU) kernel.

    The same contract as match_reference and match_pallas, written for TPU's (8, 128) tiles: one program per
    sample holds its A tokens ([Na, C], padded to multiples of 128) and scans B in chunks of `chunk` tokens,
    then ranks by counting in chunks of 128. Compiled on TPU, run by jax's TPU interpreter on CPU; on GPU it is refused
    (match_pallas is the Triton kernel). On-chip memory per program: O((Na + chunk) * C + chunk * Na).
    """
    interpret = tiling.resolve_interpret_tpu(interpret, "token merging impl='pallas' (Mosaic)")
    a, b = metric[:, ::2], metric[:, 1::2]
    (bsz, na, c), nb = a.shape, b.shape[1]
    pna = tiling.round_up(na, _LANES)
    chunk_b = min(tiling.round_up(chunk, _SUBLANES), tiling.round_up(nb, _SUBLANES))
    pnb = tiling.round_up(nb, chunk_b)
    pc = tiling.round_up(c, _LANES)
    a = jnp.pad(a, ((0, 0), (0, pna - na), (0, pc - c)))
    b = jnp.pad(b, ((0, 0), (0, pnb - nb), (0, pc - c)))
    out = lambda dt: jax.ShapeDtypeStruct((bsz, 1, pna), dt, manual_axis_type=jax.typeof(a).mat)
    row = pl.BlockSpec((1, 1, pna), lambda i: (i, 0, 0))
    idx, score, rank = pl.pallas_call(
        functools.partial(_mosaic_kernel, na=na, nb=nb, protect_cls=protect_cls, chunk_b=chunk_b, chunk_r=_LANES),
        grid=(bsz,),
        in_specs=[pl.BlockSpec((1, pna, pc), lambda i: (i, 0, 0)), pl.BlockSpec((1, pnb, pc), lambda i: (i, 0, 0))],
        out_specs=[row, row, row],
        out_shape=[out(jnp.int32), out(jnp.float32), out(jnp.int32)],
        # NOTE: off-TPU, jax's TPU interpreter, which runs the grid with a TPU's block pipelining and write-back.
        interpret=pltpu.InterpretParams() if interpret else False,
    )(a, b)
    return idx[:, 0, :na], score[:, 0, :na], rank[:, 0, :na]


# ----------------------------------------------------------------------------- plan, merge, unmerge


def plan_from_ranks(best_idx, rank, r):
    """[B, Na] best B index x [B, Na] rank x static r -> MergePlan (unmerged A kept in original order)."""
    bsz, na = rank.shape
    rows = jnp.arange(bsz)[:, None]
    a_idx = jnp.broadcast_to(jnp.arange(na, dtype=jnp.int32), (bsz, na))
    # NOTE: out-of-range targets are dropped, so each scatter writes only its own subset of A tokens.
    src_idx = jnp.zeros((bsz, r), jnp.int32).at[rows, jnp.where(rank < r, rank, r)].set(a_idx, mode="drop")
    keep = rank >= r
    slot = jnp.where(keep, jnp.cumsum(keep, axis=1) - 1, na)
    unm_idx = jnp.zeros((bsz, na - r), jnp.int32).at[rows, slot].set(a_idx, mode="drop")
    dst_idx = jnp.take_along_axis(best_idx, src_idx, axis=1)
    return MergePlan(unm_idx, src_idx, dst_idx)


def bipartite_soft_matching(metric, r, protect_cls=True, impl="auto", interpret=None):
    """[B, N, C] metric x static r -> MergePlan merging min(r, max_merge(N)) A tokens into B."""
    if metric.ndim != 3:
        raise ValueError(f"metric must be [B, N, C], got shape {metric.shape}")
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if r < 0:
        raise ValueError(f"r must be >= 0, got {r}")
    r = min(int(r), max_merge(metric.shape[1], protect_cls))
    backend = tiling.backend()
    if impl == "auto":
        # NOTE: the Triton kernel on GPU; on TPU the Mosaic kernel is opt-in (impl='pallas') until it is measured
        # on a TPU (docs/kernels.md), so 'auto' keeps the reference there.
        impl = "pallas" if backend == "gpu" else "reference"
    metric = lax.stop_gradient(metric)
    if impl == "pallas":
        match = match_mosaic if backend == "tpu" else match_pallas
        # NOTE: per sample, so under a mesh that splits the batch each device matches its own rows.
        best_idx, _, rank = per_batch_shard(lambda m: match(m, protect_cls, interpret), metric)
        return plan_from_ranks(best_idx, rank, r)
    best_idx, _, rank = match_reference(metric, protect_cls)
    order = jnp.argsort(rank, axis=1).astype(jnp.int32)
    unm_idx = jnp.sort(order[:, r:], axis=1) if protect_cls else order[:, r:]
    src_idx = order[:, :r]
    return MergePlan(unm_idx, src_idx, jnp.take_along_axis(best_idx, src_idx, axis=1))


def _gather(x, idx):
    """[B, N, C] x [B, K] -> [B, K, C]."""
    return jnp.take_along_axis(x, idx[..., None], axis=1)


def _scatter_add(x, idx, updates):
    """[B, N, C] += [B, K, C] at rows [B, K] (repeated indices accumulate)."""
    return jax.vmap(lambda x, i, u: x.at[i].add(u))(x, idx, updates)


def merge(x, plan, sizes=None, mode="weighted"):
    """[B, N, C] tokens, [B, N, 1] sizes -> ([B, N-r, C], [B, N-r, 1]) merged tokens and summed sizes."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    sizes = jnp.ones(x.shape[:2] + (1,), jnp.float32) if sizes is None else sizes.astype(jnp.float32)
    if plan.src_idx.shape[1] == 0:
        # NOTE: as in ToMe, r = 0 keeps the original token order instead of regrouping into [A, B].
        return x, sizes
    xf = x.astype(jnp.float32)
    a, b = xf[:, ::2], xf[:, 1::2]
    sa, sb = sizes[:, ::2], sizes[:, 1::2]
    # NOTE: 'weighted' is ToMe's size-weighted average; 'mean' is SimVLG's plain average over dst and its srcs.
    wa, wb = (sa, sb) if mode == "weighted" else (jnp.ones_like(sa), jnp.ones_like(sb))
    num = _scatter_add(b * wb, plan.dst_idx, _gather(a * wa, plan.src_idx))
    den = _scatter_add(wb, plan.dst_idx, _gather(wa, plan.src_idx))
    new_sb = _scatter_add(sb, plan.dst_idx, _gather(sa, plan.src_idx))
    out = jnp.concatenate([_gather(a, plan.unm_idx), num / den], axis=1)
    return out.astype(x.dtype), jnp.concatenate([_gather(sa, plan.unm_idx), new_sb], axis=1)


def unmerge(x, plan):
    """[B, N-r, C] merged tokens -> [B, N, C]: every source token takes its destination's value."""
    n_unm, r = plan.unm_idx.shape[1], plan.src_idx.shape[1]
    if r == 0:
        return x
    unm, dst = x[:, :n_unm], x[:, n_unm:]
    n = n_unm + r + dst.shape[1]
    out = jnp.zeros((x.shape[0], n, x.shape[2]), x.dtype)
    out = out.at[:, 1::2].set(dst)
    rows = jnp.arange(x.shape[0])[:, None]
    out = out.at[rows, 2 * plan.unm_idx].set(unm)
    return out.at[rows, 2 * plan.src_idx].set(_gather(dst, plan.dst_idx))


def size_bias(sizes):
    """[B, N, 1] token sizes -> [B, 1, 1, N] additive attention bias log(size) (proportional attention)."""
    return jnp.log(sizes[..., 0])[:, None, None, :]


def r_schedule(kind, r, depth, n_tokens, protect_cls=True):
    """Schedule name, r, layers, tokens -> list[int] per-layer merges, capped so tokens never run out."""
    if kind not in SCHEDULES:
        raise ValueError(f"kind must be one of {SCHEDULES}, got {kind!r}")
    if r < 0 or depth < 1 or n_tokens < 1:
        raise ValueError(f"need r >= 0, depth >= 1, n_tokens >= 1; got r={r}, depth={depth}, n_tokens={n_tokens}")
    if kind == "constant" or depth == 1:
        wanted = [r] * depth
    else:
        # NOTE: ToMe's parse_r with inflection -1 (decreasing) / +1 (increasing): a linear ramp from 2r to 0 (or 0
        # to 2r), each layer's count truncated as int() does there, so the total is at most r * depth.
        lo, hi = (2 * r, 0) if kind == "decreasing" else (0, 2 * r)
        step = (hi - lo) / (depth - 1)
        wanted = [int(lo + step * l) for l in range(depth)]
    out, n = [], n_tokens
    for want in wanted:
        step = min(want, max_merge(n, protect_cls))
        out.append(step)
        n -= step
    return out
