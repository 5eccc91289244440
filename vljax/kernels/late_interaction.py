"""Late-interaction (FILIP) similarity: naive jnp reference, chunked XLA and Pallas kernels (Triton, Mosaic).

For image i with patch tokens v_ik and text j with tokens t_jl, S_ij[k, l] = <v_ik, t_jl> and

  i2t[i, j] = mean_{k valid} max_{l valid} S_ij[k, l]     (each patch picks its best word)
  t2i[i, j] = mean_{l valid} max_{k valid} S_ij[k, l]     (each word picks its best patch)

Both outputs are indexed [image, text] and always float32. Masked entries take the finite value
MASK_VALUE (never -inf). A sample with no valid token gives score 0 in both directions against every
partner, with zero gradient. Ties in a max route the gradient to the first index (Pallas path);
the naive and chunked paths use XLA's rule (split evenly between tied entries).

The Pallas path never holds a whole [Nv, Nt] tile: each pair is scored in [chunk_v, Nt] pieces
with the feature dim summed in chunk_d slices. Its forward saves the inputs plus each pair's row
argmax ([Bi, Bt, Nv] int32, best word per patch) and column argmax ([Bi, Bt, Nt], best patch per
word), so the backward rebuilds the gradient routes from indices and makes one dot per tile, never
recomputing a score. On GPU the kernels are lowered through Triton. On TPU impl='pallas' takes a Mosaic
forward kernel (`mosaic`: one image against 128-text blocks, texts on lanes) with an XLA backward from
the same two argmaxes.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from vljax.kernels import tiling as tiles
from vljax.sharding import per_batch_shard

# NOTE: finite so that masked rows never produce inf - inf = NaN in the max or its gradient.
MASK_VALUE = -1e9
# NOTE: below this many entries in the [Bi, Bt, Nv, Nt] tensor, materializing it is cheapest.
NAIVE_MAX_ELEMENTS = 1 << 22
# NOTE: target entries per chunked-XLA tile [Bi, bt, Nv, Nt] (64 MiB in f32).
CHUNK_ELEMENTS = 1 << 24
IMPLS = ("auto", "naive", "chunked", "pallas")


def reduce_tile(s, mv, mt):
    """[..., Nv, Nt] scores x [..., Nv] x [..., Nt] float masks -> ([...], [...]) (i2t, t2i) masked max-means."""
    # NOTE: masks broadcast against s[..., :, 0] and s[..., 0, :] so one code serves the 4-D and the 2-D tile.
    best_text = jnp.max(jnp.where(mt[..., None, :] > 0.5, s, MASK_VALUE), axis=-1)
    best_image = jnp.max(jnp.where(mv[..., :, None] > 0.5, s, MASK_VALUE), axis=-2)
    nv = jnp.sum(mv, axis=-1)
    nt = jnp.sum(mt, axis=-1)
    i2t = jnp.sum(jnp.where(mv > 0.5, best_text, 0.0), axis=-1) / jnp.maximum(nv, 1.0)
    t2i = jnp.sum(jnp.where(mt > 0.5, best_image, 0.0), axis=-1) / jnp.maximum(nt, 1.0)
    return jnp.where(nt > 0.5, i2t, 0.0), jnp.where(nv > 0.5, t2i, 0.0)


def _precision(dtype):
    """Input dtype -> dot precision: exact float32 (no TF32, whose error flips near-tied maxima), native otherwise."""
    return lax.Precision.HIGHEST if dtype == jnp.float32 else None


def _token_scores(a, b):
    """[Na, D] x [Nb, D] -> [Na, Nb] float32 dot products."""
    return lax.dot_general(
        a, b, (((1,), (1,)), ((), ())), precision=_precision(a.dtype), preferred_element_type=jnp.float32
    )


def _route_dot(p, x, contract):
    """[cv, Nt] routes x [n, cd] tokens -> float32 gradient slice, contracting p's axis `contract` with x's 0.

    Routes are cast to the token dtype: bf16 tokens take the tensor-core path (routes are rounded to bf16,
    as the returned gradient is); float32 tokens keep exact float32.
    """
    return lax.dot_general(
        p.astype(x.dtype),
        x,
        (((contract,), (0,)), ((), ())),
        precision=_precision(x.dtype),
        preferred_element_type=jnp.float32,
    )


def _pick(row, j):
    """[n] x scalar index -> row[j] without a dynamic scalar gather (portable inside kernels)."""
    return jnp.sum(jnp.where(lax.broadcasted_iota(jnp.int32, row.shape, 0) == j, row, 0.0))


# ----------------------------------------------------------------------------- naive and chunked XLA


def naive(v, t, mv, mt):
    """[Bi, Nv, D] x [Bt, Nt, D] (+ float masks) -> ([Bi, Bt], [Bi, Bt]); materializes [Bi, Bt, Nv, Nt]."""
    s = jnp.einsum("ikd,jld->ijkl", v, t, preferred_element_type=jnp.float32)
    return reduce_tile(s, mv[:, None, :], mt[None, :, :])


def chunked(v, t, mv, mt, block_t=None):
    """[Bi, Nv, D] x [Bt, Nt, D] -> ([Bi, Bt], [Bi, Bt]); scans text blocks, backward recomputes each tile."""
    bi, nv, _ = v.shape
    bt, nt, d = t.shape
    if block_t is None:
        block_t = max(1, min(bt, CHUNK_ELEMENTS // max(1, bi * nv * nt)))
    n_blocks = -(-bt // block_t)
    pad = n_blocks * block_t - bt
    t_blocks = jnp.pad(t, ((0, pad), (0, 0), (0, 0))).reshape(n_blocks, block_t, nt, d)
    m_blocks = jnp.pad(mt, ((0, pad), (0, 0))).reshape(n_blocks, block_t, nt)

    # NOTE: checkpoint makes the scan keep only its inputs per step, never the [Bi, bt, Nv, Nt] tile.
    @jax.checkpoint
    def one_block(args):
        t_blk, m_blk = args
        return naive(v, t_blk, mv, m_blk)

    i2t, t2i = lax.map(one_block, (t_blocks, m_blocks))
    unblock = lambda x: jnp.moveaxis(x, 0, 1).reshape(bi, n_blocks * block_t)[:, :bt]
    return unblock(i2t), unblock(t2i)


# ----------------------------------------------------------------------------- Pallas


def _chunk_scores(v_ref, t_ref, ii, jj, k0, cv, cd, n_d):
    """Rows k0:k0+cv of image ii's patches x all tokens of text jj -> [cv, Nt] float32, summed over D chunks."""

    def d_step(dc, acc):
        d0 = pl.multiple_of(dc * cd, cd)
        v_c = v_ref[ii, pl.ds(k0, cv), pl.ds(d0, cd)]
        t_c = t_ref[jj, :, pl.ds(d0, cd)]
        return acc + _token_scores(v_c, t_c)

    return lax.fori_loop(0, n_d, d_step, jnp.zeros((cv, t_ref.shape[1]), jnp.float32))


def _chunk_routes(rowarg_c, colarg, mv_c, mt, k0, w_v, w_t, g_i2t, g_t2i):
    """Saved argmaxes of one patch chunk -> [cv, Nt] dL/dS, no scores needed.

    rowarg_c [cv] is each patch's first best word, colarg [Nt] each word's first best patch (absolute
    index); a patch row carries g_i2t * w_v at its best word, a word column g_t2i * w_t at its best patch.
    """
    cv, nt = rowarg_c.shape[0], colarg.shape[0]
    word = lax.broadcasted_iota(jnp.int32, (cv, nt), 1)
    patch = k0 + lax.broadcasted_iota(jnp.int32, (cv, nt), 0)
    hit_text = (word == rowarg_c[:, None]).astype(jnp.float32)
    hit_image = (patch == colarg[None, :]).astype(jnp.float32)
    return g_i2t * (w_v * mv_c)[:, None] * hit_text + g_t2i * w_t[None, :] * hit_image


def _pair_weights(nv, nt, mt):
    """Valid patch/word counts (scalars), text mask [Nt] -> (w_v 1/nv or 0, w_t [Nt] mt/nt or 0) of the two means."""
    w_v = jnp.where(nt > 0.5, 1.0 / jnp.maximum(nv, 1.0), 0.0)
    w_t = jnp.where(nv > 0.5, mt / jnp.maximum(nt, 1.0), 0.0)
    return w_v, w_t


def _fwd_kernel(v_ref, t_ref, mv_ref, mt_ref, nv_ref, nt_ref, i2t_ref, t2i_ref, rowarg_ref, colarg_ref, *, cv, cd):
    """One (image block, text block) program: per pair, patch chunks of [cv, Nt] tiles, never the whole tile.

    Also writes each pair's row argmax (first best word per patch, [Nv]) and column argmax (first best
    patch per word, [Nt]): with both saved, the backward routes gradients without recomputing a score.
    """
    block_i, block_t = v_ref.shape[0], t_ref.shape[0]
    n_k, n_d, nt = v_ref.shape[1] // cv, v_ref.shape[2] // cd, t_ref.shape[1]
    col = lax.broadcasted_iota(jnp.int32, (block_t,), 0)

    def image_step(ii, carry):
        nv = nv_ref[ii]

        def text_step(jj, rows):
            mt = mt_ref[jj]

            def chunk_step(kc, acc):
                row_sum, col_max, col_arg = acc
                k0 = pl.multiple_of(kc * cv, cv)
                s = _chunk_scores(v_ref, t_ref, ii, jj, k0, cv, cd, n_d)
                mv_c = mv_ref[ii, pl.ds(k0, cv)]
                s_t = jnp.where(mt[None, :] > 0.5, s, MASK_VALUE)
                best_text = jnp.max(s_t, axis=1)
                word = lax.broadcasted_iota(jnp.int32, s.shape, 1)
                rowarg_ref[ii, jj, pl.ds(k0, cv)] = jnp.min(jnp.where(s_t == best_text[:, None], word, nt), axis=1)
                row_sum += jnp.sum(jnp.where(mv_c > 0.5, best_text, 0.0))
                s_v = jnp.where(mv_c[:, None] > 0.5, s, MASK_VALUE)
                c_max = jnp.max(s_v, axis=0)
                k = lax.broadcasted_iota(jnp.int32, s.shape, 0)
                c_arg = k0 + jnp.min(jnp.where(s_v == c_max[None, :], k, cv), axis=0)
                # NOTE: strict '>' keeps the earlier chunk on ties, so the argmax is the first maximum overall.
                better = c_max > col_max
                return row_sum, jnp.where(better, c_max, col_max), jnp.where(better, c_arg, col_arg)

            init = (
                jnp.zeros((), jnp.float32),
                jnp.full((nt,), 2 * MASK_VALUE, jnp.float32),
                jnp.zeros((nt,), jnp.int32),
            )
            row_sum, col_max, col_arg = lax.fori_loop(0, n_k, chunk_step, init)
            n_t = nt_ref[jj]
            i2t = jnp.where(n_t > 0.5, row_sum / jnp.maximum(nv, 1.0), 0.0)
            t2i = jnp.where(nv > 0.5, jnp.sum(jnp.where(mt > 0.5, col_max, 0.0)) / jnp.maximum(n_t, 1.0), 0.0)
            colarg_ref[ii, jj] = col_arg
            return jnp.where(col == jj, i2t, rows[0]), jnp.where(col == jj, t2i, rows[1])

        zeros = jnp.zeros((block_t,), jnp.float32)
        i2t_row, t2i_row = lax.fori_loop(0, block_t, text_step, (zeros, zeros))
        i2t_ref[ii] = i2t_row
        t2i_ref[ii] = t2i_row
        return carry

    lax.fori_loop(0, block_i, image_step, 0)


def _dv_kernel(t_ref, mv_ref, mt_ref, nv_ref, nt_ref, rowarg_ref, colarg_ref, gi_ref, gt_ref, dv_ref, *, cd, block_g):
    """Grid (image, patch chunk): dv[i, chunk] = sum_j routes_ij [cv, Nt] @ t_j, accumulated in registers.

    Each program owns one [cv, D] slice of dv, so no two programs write the same output (GPU programs
    run concurrently); the loop over texts is inside the kernel.
    """
    cv, bt = rowarg_ref.shape[2], t_ref.shape[0]
    n_d = t_ref.shape[2] // cd
    k0 = pl.program_id(1) * cv
    mv_c, nv = mv_ref[0], nv_ref[0]

    def d_step(dc, carry):
        d0 = pl.multiple_of(dc * cd, cd)

        def text_step(jj, acc):
            # NOTE: cotangent rows are loaded one power-of-two block at a time and picked by mask (Triton-friendly).
            j0 = pl.multiple_of((jj // block_g) * block_g, block_g)
            g_i2t = _pick(gi_ref[0, pl.ds(j0, block_g)], jj - j0)
            g_t2i = _pick(gt_ref[0, pl.ds(j0, block_g)], jj - j0)
            mt = mt_ref[jj]
            w_v, w_t = _pair_weights(nv, nt_ref[jj], mt)
            p = _chunk_routes(rowarg_ref[0, jj], colarg_ref[0, jj], mv_c, mt, k0, w_v, w_t, g_i2t, g_t2i)
            return acc + _route_dot(p, t_ref[jj, :, pl.ds(d0, cd)], 1)

        acc = lax.fori_loop(0, bt, text_step, jnp.zeros((cv, cd), jnp.float32))
        dv_ref[0, :, pl.ds(d0, cd)] = acc
        return carry

    lax.fori_loop(0, n_d, d_step, 0)


def _dt_kernel(v_ref, mv_ref, mt_ref, nv_ref, nt_ref, rowarg_ref, colarg_ref, gi_ref, gt_ref, dt_ref, *, cv):
    """Grid (text, feature chunk): dt[j, :, chunk] = sum_i sum_k routes_ij^T @ v_i, accumulated in registers."""
    bi, n_k = v_ref.shape[0], v_ref.shape[1] // cv
    nt, cd = dt_ref.shape[1], dt_ref.shape[2]
    mt, n_t = mt_ref[0], nt_ref[0]

    def image_step(ii, acc):
        g_i2t, g_t2i = gi_ref[ii, 0], gt_ref[ii, 0]
        w_v, w_t = _pair_weights(nv_ref[ii], n_t, mt)
        colarg = colarg_ref[ii, 0]

        def chunk_step(kc, acc):
            k0 = pl.multiple_of(kc * cv, cv)
            p = _chunk_routes(
                rowarg_ref[ii, 0, pl.ds(k0, cv)], colarg, mv_ref[ii, pl.ds(k0, cv)], mt, k0, w_v, w_t, g_i2t, g_t2i
            )
            # NOTE: p^T v_c as a transposed-lhs matmul; no explicit transpose in the kernel.
            return acc + _route_dot(p, v_ref[ii, pl.ds(k0, cv), :], 0)

        return lax.fori_loop(0, n_k, chunk_step, acc)

    dt_ref[0] = lax.fori_loop(0, bi, image_step, jnp.zeros((nt, cd), jnp.float32))


def _align_varying(*xs):
    """Arrays -> same arrays, all varying over the union of their manual mesh axes (shard_map vma)."""
    axes = frozenset().union(*(jax.typeof(x).mat.varying for x in xs))
    return tuple(lax.pcast(x, tuple(axes - jax.typeof(x).mat.varying), to="varying") for x in xs)


def _out_struct(shape, like, dtype=jnp.float32):
    """Shape x array -> ShapeDtypeStruct carrying `like`'s manual-axis type (needed in shard_map)."""
    return jax.ShapeDtypeStruct(shape, dtype, manual_axis_type=jax.typeof(like).mat)


class _Tiling(NamedTuple):
    """Static kernel geometry: fwd grid blocks, patch chunk cv, feature chunk cd, GPU warps, interpret flag."""

    block_i: int
    block_t: int
    cv: int
    cd: int
    num_warps: int
    interpret: bool


def _call(kernel, tiling, **kwargs):
    """pl.pallas_call with the tiling's interpret flag and, on GPU, its Triton warps."""
    params = tiles.compiler_params(tiling.interpret, tiling.num_warps, num_stages=2)
    return pl.pallas_call(kernel, interpret=tiling.interpret, compiler_params=params, **kwargs)


def _pallas_forward(v, t, mv, mt, tiling):
    """Padded inputs -> padded (i2t, t2i) [Bi, Bt] float32, row argmax [Bi, Bt, Nv] and column argmax [Bi, Bt, Nt]."""
    (bi, nv, d), (bt, nt, _) = v.shape, t.shape
    block_i, block_t = tiling.block_i, tiling.block_t
    kernel = functools.partial(_fwd_kernel, cv=tiling.cv, cd=tiling.cd)
    pair = pl.BlockSpec((block_i, block_t), lambda a, b: (a, b))
    return _call(
        kernel,
        tiling,
        grid=(bi // block_i, bt // block_t),
        in_specs=[
            pl.BlockSpec((block_i, nv, d), lambda a, b: (a, 0, 0)),
            pl.BlockSpec((block_t, nt, d), lambda a, b: (b, 0, 0)),
            pl.BlockSpec((block_i, nv), lambda a, b: (a, 0)),
            pl.BlockSpec((block_t, nt), lambda a, b: (b, 0)),
            pl.BlockSpec((block_i,), lambda a, b: (a,)),
            pl.BlockSpec((block_t,), lambda a, b: (b,)),
        ],
        out_specs=[
            pair,
            pair,
            pl.BlockSpec((block_i, block_t, nv), lambda a, b: (a, b, 0)),
            pl.BlockSpec((block_i, block_t, nt), lambda a, b: (a, b, 0)),
        ],
        out_shape=[
            _out_struct((bi, bt), v),
            _out_struct((bi, bt), v),
            _out_struct((bi, bt, nv), v, jnp.int32),
            _out_struct((bi, bt, nt), v, jnp.int32),
        ],
    )(v, t, mv, mt, jnp.sum(mv, axis=-1), jnp.sum(mt, axis=-1))


def _argmax_routed(forward, backward):
    """Kernel forward + backward -> (a, b, c, d, static) -> (i2t, t2i) with a custom VJP that saves the argmaxes.

    `forward(a, b, c, d, static)` returns (i2t, t2i, row argmax, column argmax) for the four input arrays (images,
    texts and their masks, in the kernel's order); `backward(static, (a, b, c, d, rowarg, colarg), g)` returns the
    four input cotangents, rebuilding the gradient routes from the saved argmaxes. Shared by the Triton and the
    Mosaic paths.
    """

    @functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
    def scores(a, b, c, d, static):
        return forward(a, b, c, d, static)[:2]

    def scores_fwd(a, b, c, d, static):
        i2t, t2i, rowarg, colarg = forward(a, b, c, d, static)
        return (i2t, t2i), (a, b, c, d, rowarg, colarg)

    scores.defvjp(scores_fwd, backward)
    return scores


def _pallas_scores_bwd(tiling, res, g):
    """Two kernels (dv per image x patch chunk over all texts, dt per text x feature chunk over all images).

    Routes come from the saved argmaxes, so the backward makes one [cv, Nt] x [Nt, cd] dot per tile
    and never recomputes a score.
    """
    res = _align_varying(*res, *(x.astype(jnp.float32) for x in g))
    v, t, mv, mt, rowarg, colarg, g_i2t, g_t2i = res
    (bi, nv, d), (bt, nt, _) = v.shape, t.shape
    cv, cd = tiling.cv, tiling.cd
    n_v, n_t = jnp.sum(mv, axis=-1), jnp.sum(mt, axis=-1)
    block_g = tiling.block_t
    dv = _call(
        functools.partial(_dv_kernel, cd=cd, block_g=block_g),
        tiling,
        grid=(bi, nv // cv),
        in_specs=[
            pl.BlockSpec((bt, nt, d), lambda a, c: (0, 0, 0)),
            pl.BlockSpec((1, cv), lambda a, c: (a, c)),
            pl.BlockSpec((bt, nt), lambda a, c: (0, 0)),
            pl.BlockSpec((1,), lambda a, c: (a,)),
            pl.BlockSpec((bt,), lambda a, c: (0,)),
            pl.BlockSpec((1, bt, cv), lambda a, c: (a, 0, c)),
            pl.BlockSpec((1, bt, nt), lambda a, c: (a, 0, 0)),
            pl.BlockSpec((1, bt), lambda a, c: (a, 0)),
            pl.BlockSpec((1, bt), lambda a, c: (a, 0)),
        ],
        out_specs=pl.BlockSpec((1, cv, d), lambda a, c: (a, c, 0)),
        out_shape=_out_struct((bi, nv, d), v),
    )(t, mv, mt, n_v, n_t, rowarg, colarg, g_i2t, g_t2i)
    dt = _call(
        functools.partial(_dt_kernel, cv=cv),
        tiling,
        grid=(bt, d // cd),
        in_specs=[
            pl.BlockSpec((bi, nv, cd), lambda a, c: (0, 0, c)),
            pl.BlockSpec((bi, nv), lambda a, c: (0, 0)),
            pl.BlockSpec((1, nt), lambda a, c: (a, 0)),
            pl.BlockSpec((bi,), lambda a, c: (0,)),
            pl.BlockSpec((1,), lambda a, c: (a,)),
            pl.BlockSpec((bi, 1, nv), lambda a, c: (0, a, 0)),
            pl.BlockSpec((bi, 1, nt), lambda a, c: (0, a, 0)),
            pl.BlockSpec((bi, 1), lambda a, c: (0, a)),
            pl.BlockSpec((bi, 1), lambda a, c: (0, a)),
        ],
        out_specs=pl.BlockSpec((1, nt, cd), lambda a, c: (a, 0, c)),
        out_shape=_out_struct((bt, nt, d), v),
    )(v, mv, mt, n_v, n_t, rowarg, colarg, g_i2t, g_t2i)
    return dv.astype(v.dtype), dt.astype(t.dtype), jnp.zeros_like(mv), jnp.zeros_like(mt)


# NOTE: padded [Bi, Nv, D] x [Bt, Nt, D] (+ masks) -> padded ([Bi, Bt], [Bi, Bt]) with the argmax-routing VJP.
_pallas_scores = _argmax_routed(_pallas_forward, _pallas_scores_bwd)


def pallas(v, t, mv, mt, block_i=8, block_t=8, chunk_v=32, chunk_d=128, num_warps=4, interpret=None):
    """[Bi, Nv, D] x [Bt, Nt, D] (+ float masks) -> ([Bi, Bt], [Bi, Bt]) via the Pallas kernels.

    Tiles are [chunk_v, Nt] (patches x words) with the feature dim summed in chunk_d slices, so
    registers and shared memory hold O(chunk_v * Nt + (chunk_v + Nt) * chunk_d) values per pair; the
    backward accumulates [chunk_v, chunk_d] (dv) and [Nt, chunk_d] (dt) blocks in registers. The
    default 32 x 128 with 4 warps was the fastest of five tilings on an H200 (docs/kernels.md).
    Saved for the backward: two int32 argmax arrays, [Bi, Bt, Nv] and [Bi, Bt, Nt].
    """
    backend = tiles.backend()
    interpret = tiles.resolve_interpret(interpret, "late_interaction impl='pallas'")
    (bi, nv, d), (bt, nt, _) = v.shape, t.shape
    # NOTE: block sizes are powers of two (Triton) and at most the padded batch, so tiny batches are not padded to 8.
    block_i = min(block_i, pl.next_power_of_2(bi))
    block_t = min(block_t, pl.next_power_of_2(bt))
    pbi, pbt = tiles.round_up(bi, block_i), tiles.round_up(bt, block_t)
    cv, pnv = tiles.tile(nv, chunk_v, backend)
    cd, pd = tiles.tile(d, chunk_d, backend)
    # NOTE: the word axis is never chunked (each patch's max runs over all words): one power of two on GPU.
    pnt = tiles.padded_length(nt, backend)
    # NOTE: padded tokens and padded samples are masked out; padded features are zeros and do not change dots.
    v = jnp.pad(v, ((0, pbi - bi), (0, pnv - nv), (0, pd - d)))
    t = jnp.pad(t, ((0, pbt - bt), (0, pnt - nt), (0, pd - d)))
    mv = jnp.pad(mv, ((0, pbi - bi), (0, pnv - nv)))
    mt = jnp.pad(mt, ((0, pbt - bt), (0, pnt - nt)))
    v, t, mv, mt = _align_varying(v, t, mv, mt)
    tiling = _Tiling(block_i, block_t, cv, cd, num_warps, bool(interpret))
    i2t, t2i = _pallas_scores(v, t, mv, mt, tiling)
    return i2t[:bi, :bt], t2i[:bi, :bt]


# ----------------------------------------------------------------------------- Pallas: Mosaic (TPU)

# NOTE: texts go 128 (a lane tile) to an output block, and within a program `MOSAIC_TEXTS` at a time (one inner
# grid step, the VMEM-resident text block).
_LANES, _SUBLANES = tiles.TPU_LANES, tiles.TPU_SUBLANES
MOSAIC_TEXTS = 16


def _mosaic_fwd_kernel(v_ref, mv_ref, t_ref, mt_ref, i2t_ref, t2i_ref, rowarg_ref, colarg_ref):
    """Grid (image, block of 128 texts, sub-block of MOSAIC_TEXTS texts); one image against each text in turn.

    v_ref [1, Nv, D], mv_ref [1, Nv, 1], t_ref [tb, Nt, D], mt_ref [tb, Nt]. Outputs stay resident across the
    innermost (sub-block) axis: i2t / t2i [1, 1, 128] (the block's texts on lanes), rowarg [1, Nv, 128] (each
    text's best word per patch in its lane), colarg [1, 128, Nt] (each text's best patch per word in its row).
    Every pair's [Nv, Nt] score tile reduces over lanes (best word per patch, a column) and over sublanes (best
    patch per word, a row) and lands in the outputs by masked selects: no transposes, no dynamic lane slices.
    """
    tb, nt = t_ref.shape[0], t_ref.shape[1]
    nv = v_ref.shape[1]
    sub = pl.program_id(2)

    @pl.when(sub == 0)
    def _init():
        i2t_ref[...] = jnp.zeros(i2t_ref.shape, jnp.float32)
        t2i_ref[...] = jnp.zeros(t2i_ref.shape, jnp.float32)
        rowarg_ref[...] = jnp.zeros(rowarg_ref.shape, jnp.int32)
        colarg_ref[...] = jnp.zeros(colarg_ref.shape, jnp.int32)

    v = v_ref[0]
    mv = mv_ref[0]  # [Nv, 1]
    n_v = jnp.sum(mv, axis=0, keepdims=True)  # [1, 1]
    word = lax.broadcasted_iota(jnp.int32, (nv, nt), 1).astype(jnp.float32)
    patch = lax.broadcasted_iota(jnp.int32, (nv, nt), 0).astype(jnp.float32)
    lane = lax.broadcasted_iota(jnp.int32, (1, _LANES), 1)
    lane_v = lax.broadcasted_iota(jnp.int32, (nv, _LANES), 1)
    row_t = lax.broadcasted_iota(jnp.int32, (_LANES, nt), 0)
    for jj in range(tb):  # NOTE: static, so every ref index below is static or a lane/sublane mask
        j = sub * tb + jj  # this text's lane within the 128-text block
        s = _token_scores(v, t_ref[jj])  # [Nv, Nt]
        mt = mt_ref[pl.ds(jj, 1), :]  # [1, Nt]
        n_t = jnp.sum(mt, axis=1, keepdims=True)  # [1, 1]
        s_t = jnp.where(mt > 0.5, s, MASK_VALUE)
        best_word = jnp.max(s_t, axis=1, keepdims=True)  # [Nv, 1]
        arg_word = jnp.min(jnp.where(s_t == best_word, word, float(nt)), axis=1, keepdims=True)
        s_v = jnp.where(mv > 0.5, s, MASK_VALUE)
        best_patch = jnp.max(s_v, axis=0, keepdims=True)  # [1, Nt]
        arg_patch = jnp.min(jnp.where(s_v == best_patch, patch, float(nv)), axis=0, keepdims=True)
        i2t = jnp.sum(jnp.where(mv > 0.5, best_word, 0.0), axis=0, keepdims=True) / jnp.maximum(n_v, 1.0)
        t2i = jnp.sum(jnp.where(mt > 0.5, best_patch, 0.0), axis=1, keepdims=True) / jnp.maximum(n_t, 1.0)
        i2t = jnp.where(n_t > 0.5, i2t, 0.0)
        t2i = jnp.where(n_v > 0.5, t2i, 0.0)
        i2t_ref[0] = jnp.where(lane == j, i2t, i2t_ref[0])
        t2i_ref[0] = jnp.where(lane == j, t2i, t2i_ref[0])
        rowarg_ref[0] = jnp.where(lane_v == j, arg_word.astype(jnp.int32), rowarg_ref[0])
        colarg_ref[0] = jnp.where(row_t == j, arg_patch.astype(jnp.int32), colarg_ref[0])


def _mosaic_forward(v, mv, t, mt, interpret):
    """Padded v [Bi, Nv, D], mv [Bi, Nv], t [Bt, Nt, D], mt [Bt, Nt] (Bt a multiple of 128) -> padded
    (i2t, t2i) [Bi, Bt], row argmax [Bi, Nv, Bt] and column argmax [Bi, Bt, Nt] (int32)."""
    (bi, nv, d), (bt, nt, _) = v.shape, t.shape
    tb = MOSAIC_TEXTS
    grid = (bi, bt // _LANES, _LANES // tb)
    params = None if interpret else pltpu.CompilerParams(dimension_semantics=("parallel", "parallel", "arbitrary"))
    lanes = lambda i, b, c: (i, 0, b)
    i2t, t2i, rowarg, colarg = pl.pallas_call(
        _mosaic_fwd_kernel,
        grid=grid,
        in_specs=[
            pl.BlockSpec((1, nv, d), lambda i, b, c: (i, 0, 0)),
            pl.BlockSpec((1, nv, 1), lambda i, b, c: (i, 0, 0)),
            pl.BlockSpec((tb, nt, d), lambda i, b, c: (b * (_LANES // tb) + c, 0, 0)),
            pl.BlockSpec((tb, nt), lambda i, b, c: (b * (_LANES // tb) + c, 0)),
        ],
        out_specs=[
            pl.BlockSpec((1, 1, _LANES), lanes),
            pl.BlockSpec((1, 1, _LANES), lanes),
            pl.BlockSpec((1, nv, _LANES), lanes),
            pl.BlockSpec((1, _LANES, nt), lambda i, b, c: (i, b, 0)),
        ],
        out_shape=[
            _out_struct((bi, 1, bt), v),
            _out_struct((bi, 1, bt), v),
            _out_struct((bi, nv, bt), v, jnp.int32),
            _out_struct((bi, bt, nt), v, jnp.int32),
        ],
        # NOTE: off-TPU, jax's TPU interpreter, which runs the grid with a TPU's block pipelining and write-back.
        interpret=pltpu.InterpretParams() if interpret else False,
        compiler_params=params,
    )(v, mv[..., None], t, mt)
    return i2t[:, 0], t2i[:, 0], rowarg, colarg


def _routes(rowarg, colarg, mv, mt, g_i2t, g_t2i):
    """Saved argmaxes of a text block -> dL/dS [Bi, bt, Nv, Nt] (float32): the Triton kernels' routes per pair.

    rowarg [Bi, Nv, bt], colarg [Bi, bt, Nt], masks mv [Bi, Nv], mt [bt, Nt], cotangents [Bi, bt].
    """

    def pair(rowarg_ij, colarg_ij, mv_i, mt_j, g_i2t_ij, g_t2i_ij):
        w_v, w_t = _pair_weights(jnp.sum(mv_i), jnp.sum(mt_j), mt_j)
        return _chunk_routes(rowarg_ij, colarg_ij, mv_i, mt_j, 0, w_v, w_t, g_i2t_ij, g_t2i_ij)

    per_text = jax.vmap(pair, in_axes=(1, 0, None, 0, 0, 0))
    return jax.vmap(per_text, in_axes=(0, 0, 0, None, 0, 0))(rowarg, colarg, mv, mt, g_i2t, g_t2i)


def _mosaic_scores_bwd(interpret, res, g):
    """Routes rebuilt from the saved argmaxes, one block of texts at a time, and two einsums per block:
    dv += dS @ t_j, dt_j = dS^T @ v. No score is recomputed. Blocks hold a power of two up to 128 texts,
    as many as keep the [Bi, block, Nv, Nt] tile within CHUNK_ELEMENTS (the chunked path's budget)."""
    del interpret
    v, mv, t, mt, rowarg, colarg = res
    g_i2t, g_t2i = (x.astype(jnp.float32) for x in g)
    (bi, nv, d), (bt, nt, _) = v.shape, t.shape
    block = _LANES
    while block > 1 and bi * block * nv * nt > CHUNK_ELEMENTS:
        block //= 2
    n_blocks = bt // block
    blocks = lambda x, axis: jnp.moveaxis(x.reshape(*x.shape[:axis], n_blocks, block, *x.shape[axis + 1:]), axis, 0)
    xs = (blocks(t, 0), blocks(mt, 0), blocks(rowarg, 2), blocks(colarg, 1), blocks(g_i2t, 1), blocks(g_t2i, 1))

    def one_block(dv, args):
        t_b, mt_b, row_b, col_b, gi_b, gt_b = args
        ds = _routes(row_b, col_b, mv, mt_b, gi_b, gt_b)
        dv = dv + jnp.einsum("ijkl,jld->ikd", ds.astype(t.dtype), t_b, preferred_element_type=jnp.float32)
        dt_b = jnp.einsum("ijkl,ikd->jld", ds.astype(v.dtype), v, preferred_element_type=jnp.float32)
        return dv, dt_b

    dv, dt = lax.scan(one_block, jnp.zeros((bi, nv, d), jnp.float32), xs)
    dt = dt.reshape(bt, nt, d)
    return dv.astype(v.dtype), jnp.zeros_like(mv), dt.astype(t.dtype), jnp.zeros_like(mt)


# NOTE: padded (v, mv, t, mt) -> padded (i2t, t2i) [Bi, Bt]: the Mosaic forward, an XLA backward from its argmaxes.
_mosaic_scores = _argmax_routed(_mosaic_forward, _mosaic_scores_bwd)


def mosaic(v, t, mv, mt, interpret=None):
    """[Bi, Nv, D] x [Bt, Nt, D] (+ float masks) -> ([Bi, Bt], [Bi, Bt]) via the Mosaic (TPU) forward kernel.

    The same contract as `pallas`, written for TPU's (8, 128) tiles: one image per program against blocks of
    128 texts (the outputs' lanes), MOSAIC_TEXTS texts per inner step; Nv and Nt padded to multiples of 8
    and 128, D to 128, Bt to 128. The backward is XLA: the routes rebuilt from the saved argmaxes (ties go to
    the first index, as in `pallas`) and two einsums per block of texts, a power of two up to 128 that keeps
    the [Bi, block, Nv, Nt] tile within CHUNK_ELEMENTS. Compiled on TPU, run by jax's TPU interpreter on CPU;
    refused on GPU.
    """
    interpret = tiles.resolve_interpret_tpu(interpret, "late_interaction impl='pallas' (Mosaic)")
    (_, nv, d), (bt, nt, _) = v.shape, t.shape
    pnv, pnt = tiles.round_up(nv, _SUBLANES), tiles.round_up(nt, _LANES)
    pd, pbt = tiles.round_up(d, _LANES), tiles.round_up(bt, _LANES)
    v = jnp.pad(v, ((0, 0), (0, pnv - nv), (0, pd - d)))
    t = jnp.pad(t, ((0, pbt - bt), (0, pnt - nt), (0, pd - d)))
    mv = jnp.pad(mv, ((0, 0), (0, pnv - nv)))
    mt = jnp.pad(mt, ((0, pbt - bt), (0, pnt - nt)))
    v, mv, t, mt = _align_varying(v, mv, t, mt)
    i2t, t2i = _mosaic_scores(v, mv, t, mt, bool(interpret))
    return i2t[:, :bt], t2i[:, :bt]


def pick_impl(bi, bt, nv, nt, backend=None):
    """Shape sizes (+ backend) -> 'naive' (tiny), 'pallas' (GPU) or 'chunked' (other backends).

    On an H200 at B=512, Nv=196, Nt=77, D=256 (bf16, docs/kernels.md) the Pallas kernel took 0.80x
    the naive time at 1/72 of its memory, the chunked XLA path 1.50x at 1/247. That kernel is Triton's
    (Mosaic rejects its block shapes, vljax.kernels.tiling); the Mosaic one (`mosaic`) is opt-in on TPU
    (impl='pallas') until measured there, so TPU and CPU take the chunked path.
    """
    if bi * bt * nv * nt <= NAIVE_MAX_ELEMENTS:
        return "naive"
    backend = backend or tiles.backend()
    return "pallas" if backend == "gpu" else "chunked"


def _check_mask(name, mask, shape):
    """Validates an optional [B, N] mask and returns it as float32 (all ones when None)."""
    if mask is None:
        return jnp.ones(shape, jnp.float32)
    if mask.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {mask.shape}")
    return mask.astype(jnp.float32)


def late_interaction(v, t, mv=None, mt=None, impl="auto", interpret=None):
    """[Bi, Nv, D] x [Bt, Nt, D] (masks [Bi, Nv], [Bt, Nt] bool) -> (i2t [Bi, Bt], t2i [Bi, Bt]) float32."""
    if v.ndim != 3:
        raise ValueError(f"v must be [Bi, Nv, D], got shape {v.shape}")
    if t.ndim != 3:
        raise ValueError(f"t must be [Bt, Nt, D], got shape {t.shape}")
    if v.shape[-1] != t.shape[-1]:
        raise ValueError(f"v and t must share the feature dim D, got {v.shape[-1]} and {t.shape[-1]}")
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    mv = _check_mask("mv", mv, v.shape[:2])
    mt = _check_mask("mt", mt, t.shape[:2])
    if impl == "auto":
        impl = pick_impl(v.shape[0], t.shape[0], v.shape[1], t.shape[1])
    if impl == "naive":
        return naive(v, t, mv, mt)
    if impl == "chunked":
        return chunked(v, t, mv, mt)
    # NOTE: the Triton kernel on GPU (and in the interpreter on CPU), the Mosaic one on TPU. XLA does not partition
    # a kernel's custom call: under a mesh that splits the batch, each device scores its own images against all
    # texts (rows of both outputs) instead of gathering every image.
    kernel = mosaic if tiles.backend() == "tpu" else pallas
    return per_batch_shard(lambda v, mv, t, mt: kernel(v, t, mv, mt, interpret=interpret), v, mv, t, mt, replicated=2)
