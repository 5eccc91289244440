"""Late-interaction (FILIP) similarity: naive jnp reference, chunked XLA and a Pallas kernel.

For image i with patch tokens v_ik and text j with tokens t_jl, S_ij[k, l] = <v_ik, t_jl> and

  i2t[i, j] = mean_{k valid} max_{l valid} S_ij[k, l]     (each patch picks its best word)
  t2i[i, j] = mean_{l valid} max_{k valid} S_ij[k, l]     (each word picks its best patch)

Both outputs are indexed [image, text] and always float32. Masked entries take the finite value
MASK_VALUE (never -inf). A sample with no valid token gives score 0 in both directions against every
partner, with zero gradient. Ties in a max route the gradient to the first index (Pallas path);
the naive and chunked paths use XLA's rule (split evenly between tied entries).
"""
import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

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


def route_tile(s, mv, mt, g_i2t, g_t2i):
  """[Nv, Nt] scores, [Nv], [Nt] masks, scalar cotangents -> [Nv, Nt] dL/dS (non-zero only at argmaxes)."""
  nv = jnp.sum(mv)
  nt = jnp.sum(mt)
  w_v = jnp.where(nt > 0.5, mv / jnp.maximum(nv, 1.0), 0.0)
  w_t = jnp.where(nv > 0.5, mt / jnp.maximum(nt, 1.0), 0.0)
  hit_text = _first_max_onehot(jnp.where(mt[None, :] > 0.5, s, MASK_VALUE), axis=1)
  hit_image = _first_max_onehot(jnp.where(mv[:, None] > 0.5, s, MASK_VALUE), axis=0)
  return g_i2t * w_v[:, None] * hit_text + g_t2i * w_t[None, :] * hit_image


def _token_scores(a, b):
  """[Na, D] x [Nb, D] -> [Na, Nb] float32 dot products."""
  return lax.dot_general(a, b, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)


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


def _fwd_kernel(v_ref, t_ref, mv_ref, mt_ref, i2t_ref, t2i_ref):
  """One (image block, text block) program: loops over its pairs, one [Nv, Nt] tile each."""
  block_i, block_t = v_ref.shape[0], t_ref.shape[0]
  col = lax.broadcasted_iota(jnp.int32, (block_t,), 0)

  def image_step(ii, carry):
    v_i, mv_i = v_ref[ii], mv_ref[ii]

    def text_step(jj, rows):
      i2t, t2i = reduce_tile(_token_scores(v_i, t_ref[jj]), mv_i, mt_ref[jj])
      return jnp.where(col == jj, i2t, rows[0]), jnp.where(col == jj, t2i, rows[1])

    zeros = jnp.zeros((block_t,), jnp.float32)
    i2t_row, t2i_row = lax.fori_loop(0, block_t, text_step, (zeros, zeros))
    i2t_ref[ii] = i2t_row
    t2i_ref[ii] = t2i_row
    return carry

  lax.fori_loop(0, block_i, image_step, 0)


def _dv_kernel(v_ref, t_ref, mv_ref, mt_ref, gi_ref, gt_ref, dv_ref):
  """Grid (image block, text block); text blocks are the reduction axis accumulated into dv."""
  block_i, block_t = v_ref.shape[0], t_ref.shape[0]

  @pl.when(pl.program_id(1) == 0)
  def _():
    dv_ref[...] = jnp.zeros(dv_ref.shape, dv_ref.dtype)

  def image_step(ii, carry):
    v_i, mv_i, gi, gt = v_ref[ii], mv_ref[ii], gi_ref[ii], gt_ref[ii]

    def text_step(jj, acc):
      t_j = t_ref[jj]
      p = route_tile(_token_scores(v_i, t_j), mv_i, mt_ref[jj], _pick(gi, jj), _pick(gt, jj))
      return acc + jnp.dot(p, t_j.astype(jnp.float32), preferred_element_type=jnp.float32)

    dv_ref[ii] += lax.fori_loop(0, block_t, text_step, jnp.zeros(dv_ref.shape[1:], jnp.float32))
    return carry

  lax.fori_loop(0, block_i, image_step, 0)


def _dt_kernel(v_ref, t_ref, mv_ref, mt_ref, gi_ref, gt_ref, dt_ref):
  """Grid (text block, image block); image blocks are the reduction axis accumulated into dt."""
  block_i, block_t = v_ref.shape[0], t_ref.shape[0]

  @pl.when(pl.program_id(1) == 0)
  def _():
    dt_ref[...] = jnp.zeros(dt_ref.shape, dt_ref.dtype)

  def text_step(jj, carry):
    t_j, mt_j = t_ref[jj], mt_ref[jj]

    def image_step(ii, acc):
      v_i = v_ref[ii]
      p = route_tile(_token_scores(v_i, t_j), mv_ref[ii], mt_j, _pick(gi_ref[ii], jj), _pick(gt_ref[ii], jj))
      # NOTE: p^T v_i as a transposed-lhs matmul; no explicit transpose in the kernel.
      return acc + lax.dot_general(p, v_i.astype(jnp.float32), (((0,), (0,)), ((), ())),
                                   preferred_element_type=jnp.float32)

    dt_ref[jj] += lax.fori_loop(0, block_i, image_step, jnp.zeros(dt_ref.shape[1:], jnp.float32))
    return carry

  lax.fori_loop(0, block_t, text_step, 0)


def _specs(block_i, block_t, nv, nt, d, image_first):
  """BlockSpecs for (v, t, mv, mt, g_i2t, g_t2i) on a grid ordered (image, text) or (text, image)."""
  if image_first:
    img, txt = (lambda a, b: a), (lambda a, b: b)
  else:
    img, txt = (lambda a, b: b), (lambda a, b: a)
  return [
      pl.BlockSpec((block_i, nv, d), lambda a, b: (img(a, b), 0, 0)),
      pl.BlockSpec((block_t, nt, d), lambda a, b: (txt(a, b), 0, 0)),
      pl.BlockSpec((block_i, nv), lambda a, b: (img(a, b), 0)),
      pl.BlockSpec((block_t, nt), lambda a, b: (txt(a, b), 0)),
      pl.BlockSpec((block_i, block_t), lambda a, b: (img(a, b), txt(a, b))),
      pl.BlockSpec((block_i, block_t), lambda a, b: (img(a, b), txt(a, b))),
  ]


def _align_varying(*xs):
  """Arrays -> same arrays, all varying over the union of their manual mesh axes (shard_map vma)."""
  axes = frozenset().union(*(jax.typeof(x).mat.varying for x in xs))
  return tuple(lax.pcast(x, tuple(axes - jax.typeof(x).mat.varying), to="varying") for x in xs)


def _out_struct(shape, like):
  """Shape x array -> float32 ShapeDtypeStruct carrying `like`'s manual-axis type (needed in shard_map)."""
  return jax.ShapeDtypeStruct(shape, jnp.float32, manual_axis_type=jax.typeof(like).mat)


def _pallas_forward(v, t, mv, mt, block_i, block_t, interpret):
  """Padded inputs -> padded (i2t, t2i) [Bi, Bt] float32."""
  (bi, nv, d), (bt, nt, _) = v.shape, t.shape
  out = _out_struct((bi, bt), v)
  return pl.pallas_call(
      _fwd_kernel,
      grid=(bi // block_i, bt // block_t),
      in_specs=_specs(block_i, block_t, nv, nt, d, image_first=True)[:4],
      out_specs=[pl.BlockSpec((block_i, block_t), lambda a, b: (a, b))] * 2,
      out_shape=[out, out],
      interpret=interpret,
  )(v, t, mv, mt)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _pallas_scores(v, t, mv, mt, block_i, block_t, interpret):
  """Padded [Bi, Nv, D] x [Bt, Nt, D] -> padded ([Bi, Bt], [Bi, Bt]) with an argmax-routing VJP."""
  return tuple(_pallas_forward(v, t, mv, mt, block_i, block_t, interpret))


def _pallas_scores_fwd(v, t, mv, mt, block_i, block_t, interpret):
  """Forward saving only the inputs: the backward recomputes every tile."""
  return _pallas_scores(v, t, mv, mt, block_i, block_t, interpret), (v, t, mv, mt)


def _pallas_scores_bwd(block_i, block_t, interpret, res, g):
  """Two kernels (dv over text blocks, dt over image blocks), each recomputing the tiles it needs."""
  v, t, mv, mt = res
  v, t, mv, mt, g_i2t, g_t2i = _align_varying(v, t, mv, mt, *(x.astype(jnp.float32) for x in g))
  (bi, nv, d), (bt, nt, _) = v.shape, t.shape
  dv = pl.pallas_call(
      _dv_kernel,
      grid=(bi // block_i, bt // block_t),
      in_specs=_specs(block_i, block_t, nv, nt, d, image_first=True),
      out_specs=pl.BlockSpec((block_i, nv, d), lambda a, b: (a, 0, 0)),
      out_shape=_out_struct((bi, nv, d), v),
      interpret=interpret,
  )(v, t, mv, mt, g_i2t, g_t2i)
  dt = pl.pallas_call(
      _dt_kernel,
      grid=(bt // block_t, bi // block_i),
      in_specs=_specs(block_i, block_t, nv, nt, d, image_first=False),
      out_specs=pl.BlockSpec((block_t, nt, d), lambda a, b: (a, 0, 0)),
      out_shape=_out_struct((bt, nt, d), v),
      interpret=interpret,
  )(v, t, mv, mt, g_i2t, g_t2i)
  return dv.astype(v.dtype), dt.astype(t.dtype), jnp.zeros_like(mv), jnp.zeros_like(mt)


_pallas_scores.defvjp(_pallas_scores_fwd, _pallas_scores_bwd)


def _round_up(n, multiple):
  """int, int -> smallest multiple of `multiple` that is >= n."""
  return -(-n // multiple) * multiple


def _padded_size(n, backend):
  """Token/feature length -> padded length: Triton needs powers of two >= 16, others multiples of 8."""
  if backend == "gpu":
    return max(16, pl.next_power_of_2(n))
  return _round_up(n, 8)


def pallas(v, t, mv, mt, block_i=8, block_t=8, interpret=None):
  """[Bi, Nv, D] x [Bt, Nt, D] (+ float masks) -> ([Bi, Bt], [Bi, Bt]) via the Pallas kernel."""
  backend = jax.default_backend()
  if interpret is None:
    interpret = backend not in ("gpu", "tpu")
  (bi, nv, d), (bt, nt, _) = v.shape, t.shape
  # NOTE: block sizes are powers of two (Triton) and at most the padded batch, so tiny batches are not padded to 8.
  block_i = min(block_i, pl.next_power_of_2(bi))
  block_t = min(block_t, pl.next_power_of_2(bt))
  pbi, pbt = _round_up(bi, block_i), _round_up(bt, block_t)
  pnv, pnt, pd = (_padded_size(n, backend) for n in (nv, nt, d))
  # NOTE: padded tokens and padded samples are masked out; padded features are zeros and do not change dots.
  v = jnp.pad(v, ((0, pbi - bi), (0, pnv - nv), (0, pd - d)))
  t = jnp.pad(t, ((0, pbt - bt), (0, pnt - nt), (0, pd - d)))
  mv = jnp.pad(mv, ((0, pbi - bi), (0, pnv - nv)))
  mt = jnp.pad(mt, ((0, pbt - bt), (0, pnt - nt)))
  v, t, mv, mt = _align_varying(v, t, mv, mt)
  i2t, t2i = _pallas_scores(v, t, mv, mt, block_i, block_t, bool(interpret))
  return i2t[:bi, :bt], t2i[:bi, :bt]


def pick_impl(bi, bt, nv, nt, backend=None):
  """Shape sizes -> 'naive' (tiny), 'pallas' (large on GPU/TPU) or 'chunked' (large elsewhere)."""
  backend = backend or jax.default_backend()
  if bi * bt * nv * nt <= NAIVE_MAX_ELEMENTS:
    return "naive"
  return "pallas" if backend in ("gpu", "tpu") else "chunked"


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
