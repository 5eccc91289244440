"""True 2D relation triples of a scene (WORLD.md 2.3), resolution-free (from the SceneSpec).

Predicate ids index `concepts.RELATIONS`. Spatial predicates need a center difference above
`MARGIN`; `near` is a center distance below `NEAR`. `overlaps` is tested on the shapes' radial
profiles (boundary samples of one inside the other), so it never depends on the resolution;
`in_front_of` is `overlaps` plus a higher paint order `z`.
"""
from __future__ import annotations

import numpy as np

from vljax.data.world import concepts
from vljax.data.world.raster2d import N_BINS, PROFILES
from vljax.data.world.scene_spec import SceneSpec

MARGIN = 0.05
NEAR = 0.25
PRED = {name: i for i, name in enumerate(concepts.RELATIONS)}
_N_BOUNDARY = 64


def _inside(points: np.ndarray, spec: SceneSpec, j: int) -> np.ndarray:
    """[P, 2] normalized points -> bool [P]: inside object j's outer profile."""
    d = points - spec.center[j]
    c, s = np.cos(spec.angle[j]), np.sin(spec.angle[j])
    u, v = d[:, 0] * c + d[:, 1] * s, d[:, 1] * c - d[:, 0] * s
    rho = np.hypot(u, v)
    bins = (np.arctan2(v, u) * (N_BINS / (2 * np.pi))).astype(np.int64) % N_BINS
    return rho < PROFILES[spec.shape[j], 1, bins] * spec.scale[j]


def _boundary(spec: SceneSpec, i: int) -> np.ndarray:
    """-> [64, 2] points on object i's outer boundary (slightly inside)."""
    b = np.arange(0, N_BINS, N_BINS // _N_BOUNDARY)
    th = (b + 0.5) * (2 * np.pi / N_BINS)
    r = PROFILES[spec.shape[i], 1, b] * spec.scale[i] * 0.98
    a = th + spec.angle[i]
    return spec.center[i] + np.stack([r * np.cos(a), r * np.sin(a)], -1)


def overlap_matrix(spec: SceneSpec) -> np.ndarray:
    """SceneSpec -> bool [O, O] symmetric: the two shapes intersect (diagonal False)."""
    o = spec.valid.shape[0]
    out = np.zeros((o, o), bool)
    idx = np.flatnonzero(spec.valid)
    for a_pos, i in enumerate(idx):
        for j in idx[a_pos + 1:]:
            if np.hypot(*(spec.center[i] - spec.center[j])) >= spec.scale[i] + spec.scale[j]:
                continue
            hit = (_inside(_boundary(spec, i), spec, j).any() or _inside(_boundary(spec, j), spec, i).any()
                   or _inside(spec.center[i][None], spec, j).any())
            out[i, j] = out[j, i] = hit
    return out


def all_relations(spec: SceneSpec, may_overlap: bool = True) -> np.ndarray:
    """SceneSpec -> int32 [N, 3] every true (subject slot, predicate id, object slot), pair-major order."""
    n = int(np.count_nonzero(spec.valid))  # NOTE: valid slots are contiguous from 0.
    if n < 2:
        return np.zeros((0, 3), np.int32)
    c = spec.center[:n]
    dx = c[None, :, 0] - c[:, None, 0]          # [s, o] object x minus subject x
    dy = c[None, :, 1] - c[:, None, 1]
    size, color, shape = spec.size[:n], spec.color[:n], spec.shape[:n]
    m = np.empty((len(concepts.RELATIONS), n, n), bool)
    np.greater(dx, MARGIN, out=m[PRED["left_of"]])
    np.less(dx, -MARGIN, out=m[PRED["right_of"]])
    np.greater(dy, MARGIN, out=m[PRED["above"]])  # NOTE: y points down: larger object y = subject above.
    np.less(dy, -MARGIN, out=m[PRED["below"]])
    np.less(np.hypot(dx, dy), NEAR, out=m[PRED["near"]])
    if may_overlap:
        ov = overlap_matrix(spec)[:n, :n]
        m[PRED["overlaps"]] = ov
        np.logical_and(ov, spec.z[:n, None] > spec.z[None, :n], out=m[PRED["in_front_of"]])
    else:
        m[PRED["overlaps"]] = m[PRED["in_front_of"]] = False
    np.greater(size[:, None], size[None, :], out=m[PRED["bigger_than"]])
    np.less(size[:, None], size[None, :], out=m[PRED["smaller_than"]])
    np.equal(color[:, None], color[None, :], out=m[PRED["same_color"]])
    np.equal(shape[:, None], shape[None, :], out=m[PRED["same_shape"]])
    # [a, b, direction, predicate] for a < b: direction 0 is (a, p, b), 1 is (b, p, a); nonzero() then
    # lists triples pair-major without a sort.
    t = np.empty((n, n, 2, m.shape[0]), bool)
    t[:, :, 0], t[:, :, 1] = m.transpose(1, 2, 0), m.transpose(2, 1, 0)
    t &= _upper(n)
    a, b, d, p = np.nonzero(t)
    out = np.empty((a.size, 3), np.int32)
    out[:, 0] = np.where(d == 0, a, b)
    out[:, 1] = p
    out[:, 2] = np.where(d == 0, b, a)
    return out


_UPPER = {}


def _upper(n: int) -> np.ndarray:
    """-> bool [n, n, 1, 1] mask of pairs a < b (cached)."""
    u = _UPPER.get(n)
    if u is None:
        u = _UPPER[n] = np.triu(np.ones((n, n), bool), 1)[:, :, None, None]
    return u


def relations_array(spec: SceneSpec, max_relations: int, may_overlap: bool = True) -> np.ndarray:
    """SceneSpec -> int32 [R, 3] true triples (first R in pair-major order), padded with -1."""
    out = np.full((max_relations, 3), -1, np.int32)
    tri = all_relations(spec, may_overlap)[:max_relations]
    out[:len(tri)] = tri
    return out
