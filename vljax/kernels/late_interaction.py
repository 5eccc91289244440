"""Late-interaction (FILIP) similarity: naive jnp reference, chunked XLA and a Pallas kernel.

For image i with patch tokens v_ik and text j with tokens t_jl, S_ij[k, l] = <v_ik, t_jl> and

  i2t[i, j] = mean_{k valid} max_{l valid} S_ij[k, l]     (each patch picks its best word)
  t2i[i, j] = mean_{l valid} max_{k valid} S_ij[k, l]     (each word picks its best patch)

Both outputs are indexed [image, text] and always float32. Masked entries take the finite value
MASK_VALUE (never -inf). A sample with no valid token gives score 0 in both directions against every
partner, with zero gradient. Ties in a max route the gradient to the first index (Pallas path);
the naive and chunked paths use XLA's rule (split evenly between tied entries).

The Pallas path never holds a whole [Nv, Nt] tile: each pair is scored in [chunk_v, Nt] pieces
with the feature dim summed in chunk_d slices. Its forward saves the inputs plus each pair's
column argmax ([Bi, Bt, Nt] int32, the one quantity a patch chunk cannot see); the backward
recomputes every tile. On GPU the kernels are lowered through Triton.
"""
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from vljax.kernels import tiling as tiles

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


def _first_max_onehot(x, axis):
  """[..., n, ...] -> same-shape {0, 1} float marking the first maximum along `axis`."""
  pos = lax.broadcasted_iota(jnp.int32, x.shape, axis)
  top = jnp.max(x, axis=axis, keepdims=True)
  first = jnp.min(jnp.where(x == top, pos, x.shape[axis]), axis=axis, keepdims=True)
  return (pos == first).astype(jnp.float32)


def _precision(dtype):
  """Input dtype -> dot precision: exact float32 (no TF32, whose error flips near-tied maxima), native otherwise."""
  return lax.Precision.HIGHEST if dtype == jnp.float32 else None


def _token_scores(a, b):
  """[Na, D] x [Nb, D] -> [Na, Nb] float32 dot products."""
  return lax.dot_general(a, b, (((1,), (1,)), ((), ())), precision=_precision(a.dtype),
                         preferred_element_type=jnp.float32)


def _route_dot(p, x, contract):
  """[cv, Nt] routes x [n, cd] tokens -> float32 gradient slice, contracting p's axis `contract` with x's 0.

  Routes are cast to the token dtype: bf16 tokens take the tensor-core path (routes are rounded to bf16,
  as the returned gradient is); float32 tokens keep exact float32.
  """
  return lax.dot_general(p.astype(x.dtype), x, (((contract,), (0,)), ((), ())), precision=_precision(x.dtype),
                         preferred_element_type=jnp.float32)


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


def _chunk_routes(s, mv_c, mt, colarg, k0, w_v, w_t, g_i2t, g_t2i):
  """[cv, Nt] scores of one patch chunk -> [cv, Nt] dL/dS: each row's first max word, each column's argmax patch."""
  hit_text = _first_max_onehot(jnp.where(mt[None, :] > 0.5, s, MASK_VALUE), axis=1)
  k = k0 + lax.broadcasted_iota(jnp.int32, s.shape, 0)
  hit_image = (k == colarg[None, :]).astype(jnp.float32)
  return g_i2t * (w_v * mv_c)[:, None] * hit_text + g_t2i * w_t[None, :] * hit_image


def _pair_weights(nv, nt, mt):
  """Valid patch/word counts (scalars), text mask [Nt] -> (w_v 1/nv or 0, w_t [Nt] mt/nt or 0) of the two means."""
  w_v = jnp.where(nt > 0.5, 1.0 / jnp.maximum(nv, 1.0), 0.0)
  w_t = jnp.where(nv > 0.5, mt / jnp.maximum(nt, 1.0), 0.0)
  return w_v, w_t


def _fwd_kernel(v_ref, t_ref, mv_ref, mt_ref, nv_ref, nt_ref, i2t_ref, t2i_ref, colarg_ref, *, cv, cd):
  """One (image block, text block) program: per pair, patch chunks of [cv, Nt] tiles, never the whole tile.

  Also writes each pair's column argmax (first patch with the best score per word) for the backward.
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
        best_text = jnp.max(jnp.where(mt[None, :] > 0.5, s, MASK_VALUE), axis=1)
        row_sum += jnp.sum(jnp.where(mv_c > 0.5, best_text, 0.0))
        s_v = jnp.where(mv_c[:, None] > 0.5, s, MASK_VALUE)
        c_max = jnp.max(s_v, axis=0)
        k = lax.broadcasted_iota(jnp.int32, s.shape, 0)
        c_arg = k0 + jnp.min(jnp.where(s_v == c_max[None, :], k, cv), axis=0)
        # NOTE: strict '>' keeps the earlier chunk on ties, so the argmax is the first maximum overall.
        better = c_max > col_max
        return row_sum, jnp.where(better, c_max, col_max), jnp.where(better, c_arg, col_arg)

      init = (jnp.zeros((), jnp.float32), jnp.full((nt,), 2 * MASK_VALUE, jnp.float32), jnp.zeros((nt,), jnp.int32))
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


def _route_pair(refs, ii, jj, g_i2t, g_t2i, cv, cd, add):
  """Recomputes pair (ii, jj) patch chunk by patch chunk; calls add(k0, d0, routes [cv, Nt]) per feature slice.

  refs = (v, t, mv, mt, nv, nt, colarg) block refs; ii / jj index the image / text inside their blocks.
  """
  v_ref, t_ref, mv_ref, mt_ref, nv_ref, nt_ref, colarg_ref = refs
  n_k, n_d = v_ref.shape[1] // cv, v_ref.shape[2] // cd
  mt = mt_ref[jj]
  w_v, w_t = _pair_weights(nv_ref[ii], nt_ref[jj], mt)
  colarg = colarg_ref[ii, jj]

  def chunk_step(kc, c):
    k0 = pl.multiple_of(kc * cv, cv)
    s = _chunk_scores(v_ref, t_ref, ii, jj, k0, cv, cd, n_d)
    p = _chunk_routes(s, mv_ref[ii, pl.ds(k0, cv)], mt, colarg, k0, w_v, w_t, g_i2t, g_t2i)

    def d_step(dc, c):
      add(k0, pl.multiple_of(dc * cd, cd), p)
      return c

    return lax.fori_loop(0, n_d, d_step, c)

  lax.fori_loop(0, n_k, chunk_step, 0)


def _dv_kernel(v_ref, t_ref, mv_ref, mt_ref, nv_ref, nt_ref, colarg_ref, gi_ref, gt_ref, dv_ref, *, cv, cd, block_t):
  """Grid over image blocks; each program loops over every text, so no two programs write one dv row."""
  refs = (v_ref, t_ref, mv_ref, mt_ref, nv_ref, nt_ref, colarg_ref)
  block_i, bt = v_ref.shape[0], t_ref.shape[0]

  def image_step(ii, carry):
    def zero_step(kc, c):
      dv_ref[ii, pl.ds(pl.multiple_of(kc * cv, cv), cv), :] = jnp.zeros((cv, dv_ref.shape[2]), jnp.float32)
      return c

    lax.fori_loop(0, v_ref.shape[1] // cv, zero_step, 0)

    def text_step(jj, c):
      # NOTE: cotangent rows are loaded one power-of-two block at a time and picked by mask (Triton-friendly).
      j0 = pl.multiple_of((jj // block_t) * block_t, block_t)
      g_i2t = _pick(gi_ref[ii, pl.ds(j0, block_t)], jj - j0)
      g_t2i = _pick(gt_ref[ii, pl.ds(j0, block_t)], jj - j0)

      def add(k0, d0, p):
        dv_ref[ii, pl.ds(k0, cv), pl.ds(d0, cd)] += _route_dot(p, t_ref[jj, :, pl.ds(d0, cd)], 1)

      _route_pair(refs, ii, jj, g_i2t, g_t2i, cv, cd, add)
      return c

    lax.fori_loop(0, bt, text_step, 0)
    return carry

  lax.fori_loop(0, block_i, image_step, 0)


def _dt_kernel(v_ref, t_ref, mv_ref, mt_ref, nv_ref, nt_ref, colarg_ref, gi_ref, gt_ref, dt_ref, *, cv, cd):
  """Grid over text blocks; each program loops over every image, so no two programs write one dt row."""
  refs = (v_ref, t_ref, mv_ref, mt_ref, nv_ref, nt_ref, colarg_ref)
  bi, block_t = v_ref.shape[0], t_ref.shape[0]

  def text_step(jj, carry):
    dt_ref[jj] = jnp.zeros(dt_ref.shape[1:], jnp.float32)

    def image_step(ii, c):
      def add(k0, d0, p):
        # NOTE: p^T v_c as a transposed-lhs matmul; no explicit transpose in the kernel.
        dt_ref[jj, :, pl.ds(d0, cd)] += _route_dot(p, v_ref[ii, pl.ds(k0, cv), pl.ds(d0, cd)], 0)

      _route_pair(refs, ii, jj, _pick(gi_ref[ii], jj), _pick(gt_ref[ii], jj), cv, cd, add)
      return c

    lax.fori_loop(0, bi, image_step, 0)
    return carry

  lax.fori_loop(0, block_t, text_step, 0)


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
  """Padded inputs -> padded (i2t, t2i) [Bi, Bt] float32 and the column argmax [Bi, Bt, Nt] int32."""
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
      out_specs=[pair, pair, pl.BlockSpec((block_i, block_t, nt), lambda a, b: (a, b, 0))],
      out_shape=[_out_struct((bi, bt), v), _out_struct((bi, bt), v), _out_struct((bi, bt, nt), v, jnp.int32)],
  )(v, t, mv, mt, jnp.sum(mv, axis=-1), jnp.sum(mt, axis=-1))


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _pallas_scores(v, t, mv, mt, tiling):
  """Padded [Bi, Nv, D] x [Bt, Nt, D] -> padded ([Bi, Bt], [Bi, Bt]) with an argmax-routing VJP."""
  i2t, t2i, _ = _pallas_forward(v, t, mv, mt, tiling)
  return i2t, t2i


def _pallas_scores_fwd(v, t, mv, mt, tiling):
  """Forward saving the inputs and the [Bi, Bt, Nt] column argmax; the backward recomputes every tile."""
  i2t, t2i, colarg = _pallas_forward(v, t, mv, mt, tiling)
  return (i2t, t2i), (v, t, mv, mt, colarg)


def _pallas_scores_bwd(tiling, res, g):
  """Two kernels (dv per image block over all texts, dt per text block over all images), each recomputing tiles."""
  v, t, mv, mt, colarg = res
  v, t, mv, mt, colarg, g_i2t, g_t2i = _align_varying(v, t, mv, mt, colarg, *(x.astype(jnp.float32) for x in g))
  (bi, nv, d), (bt, nt, _) = v.shape, t.shape
  n_v, n_t = jnp.sum(mv, axis=-1), jnp.sum(mt, axis=-1)
  # NOTE: the backward grids hold one sample per program: the other side is looped inside the kernel,
  # because GPU programs run concurrently and may not accumulate into one output block.
  dv = _call(
      functools.partial(_dv_kernel, cv=tiling.cv, cd=tiling.cd, block_t=tiling.block_t),
      tiling,
      grid=(bi,),
      in_specs=[
          pl.BlockSpec((1, nv, d), lambda a: (a, 0, 0)),
          pl.BlockSpec((bt, nt, d), lambda a: (0, 0, 0)),
          pl.BlockSpec((1, nv), lambda a: (a, 0)),
          pl.BlockSpec((bt, nt), lambda a: (0, 0)),
          pl.BlockSpec((1,), lambda a: (a,)),
          pl.BlockSpec((bt,), lambda a: (0,)),
          pl.BlockSpec((1, bt, nt), lambda a: (a, 0, 0)),
          pl.BlockSpec((1, bt), lambda a: (a, 0)),
          pl.BlockSpec((1, bt), lambda a: (a, 0)),
      ],
      out_specs=pl.BlockSpec((1, nv, d), lambda a: (a, 0, 0)),
      out_shape=_out_struct((bi, nv, d), v),
  )(v, t, mv, mt, n_v, n_t, colarg, g_i2t, g_t2i)
  block_t = tiling.block_t
  dt = _call(
      functools.partial(_dt_kernel, cv=tiling.cv, cd=tiling.cd),
      tiling,
      grid=(bt // block_t,),
      in_specs=[
          pl.BlockSpec((bi, nv, d), lambda a: (0, 0, 0)),
          pl.BlockSpec((block_t, nt, d), lambda a: (a, 0, 0)),
          pl.BlockSpec((bi, nv), lambda a: (0, 0)),
          pl.BlockSpec((block_t, nt), lambda a: (a, 0)),
          pl.BlockSpec((bi,), lambda a: (0,)),
          pl.BlockSpec((block_t,), lambda a: (a,)),
          pl.BlockSpec((bi, block_t, nt), lambda a: (0, a, 0)),
          pl.BlockSpec((bi, block_t), lambda a: (0, a)),
          pl.BlockSpec((bi, block_t), lambda a: (0, a)),
      ],
      out_specs=pl.BlockSpec((block_t, nt, d), lambda a: (a, 0, 0)),
      out_shape=_out_struct((bt, nt, d), v),
  )(v, t, mv, mt, n_v, n_t, colarg, g_i2t, g_t2i)
  return dv.astype(v.dtype), dt.astype(t.dtype), jnp.zeros_like(mv), jnp.zeros_like(mt)


_pallas_scores.defvjp(_pallas_scores_fwd, _pallas_scores_bwd)


def pallas(v, t, mv, mt, block_i=8, block_t=8, chunk_v=32, chunk_d=64, num_warps=4, interpret=None):
  """[Bi, Nv, D] x [Bt, Nt, D] (+ float masks) -> ([Bi, Bt], [Bi, Bt]) via the Pallas kernels.

  Tiles are [chunk_v, Nt] (patches x words) with the feature dim summed in chunk_d slices, so
  registers and shared memory hold O(chunk_v * Nt + (chunk_v + Nt) * chunk_d) values per pair.
  """
  backend = jax.default_backend()
  if interpret is None:
    interpret = backend not in ("gpu", "tpu")
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


def pick_impl(bi, bt, nv, nt, backend=None):
  """Shape sizes (+ backend) -> 'naive' (tiny) or 'chunked' (large); 'pallas' only when asked for.

  On an H200 at B=512, Nv=196, Nt=77, D=256 (bf16, docs/kernels.md) the chunked XLA path took 1.5x
  the naive time at 1/247 of its memory and the Pallas kernel 3.7x at 1/106, so the kernel is not
  the default on GPU; no TPU measurement exists, so TPU gets the chunked path too.
  """
  del backend  # NOTE: kept in the signature: the choice is per backend once a faster kernel is measured.
  if bi * bt * nv * nt <= NAIVE_MAX_ELEMENTS:
    return "naive"
  return "chunked"


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
  return pallas(v, t, mv, mt, interpret=interpret)
