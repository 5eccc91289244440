"""3D objects of the synthetic world: primitive surface samplers and the point-splat rasterizer (WORLD.md 3.7, 5.3).

A surface is a table of analytic *patches* (parallelogram, triangle, disk, cylinder side, cone side, sphere zone,
torus); points are drawn area-weighted over the patches, so density is uniform on every primitive. One splat
rasterizer (scatter-min z-buffer over pixel bins) serves orthographic depth, Lambert RGB and pinhole RGB-D.

Object frame: z up, x forward (azimuth 0), y left. View (elevation e, azimuth a) in degrees puts the camera on the
direction c = (cos e cos a, cos e sin a, sin e); image right is (-sin a, cos a, 0), image up is c x right.
"""
from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import ml_collections
import numpy as np

from vljax.data.world import concepts
from vljax.data.world.rng import stream_generator

# Patch kinds; `frame` columns are (e1, e2, e3): for flat kinds e1/e2 are the edge vectors and e3 the unit normal,
# for curved kinds the frame is orthonormal with e3 the axis.
PARA, TRI, DISK, CYL, CONE, SPHERE, TORUS = range(7)
SPLAT_RADIUS = 0.02          # orthographic splat radius in image half-widths (CLIP2Point)
CAMERA_DISTANCE = 2.0        # orthographic camera distance; xy is scaled by CAMERA_DISTANCE / distance
DEPTH_MAX = 200.0 / 255.0    # foreground depth range [0, DEPTH_MAX]; background 1.0
DISTANCE_JITTER = 0.1        # depth_pair: distance x (1 + U(-0.1, 0.1)) per copy
SCALE_RANGE = (0.7, 1.0)     # object3d: bounding radius after the random scale
RGB_VIEW_ELEVATION = (-20.0, 60.0)
COLOR_JITTER = 8.0 / 255.0
# NOTE: CLIP2Point's tables; zeroshot6 = front, right, back, left, top, bottom. pretrain10 is the card's list as is
# (its elevations past 90 degrees look from the far side, upside down).
VIEW_SETS = {
    "zeroshot6": ((0, 0), (0, 90), (0, 180), (0, 270), (90, 0), (-90, 0)),
    "pretrain10": ((0, 0), (90, 0), (180, 0), (270, 0), (225, -45), (225, 45), (315, -45), (315, 45),
                   (0, -90), (0, 90)),
}
RANDOM_VIEWS = 6


def default_config() -> ml_collections.ConfigDict:
    """-> the config sections the 3D generators read (defaults of WORLD.md 5.2); a full world config also works."""
    c = ml_collections.ConfigDict()
    c.resolution = 64
    c.points = ml_collections.ConfigDict(dict(n=1024, classes=10, views="zeroshot6"))
    c.room = ml_collections.ConfigDict(dict(
        count=(4, 10), max=10, classes=8, colors=4, points_per_object=256, scene_points=2048,
        rgbd_views=4, proposal_jitter=0.05))
    c.ref = ml_collections.ConfigDict(dict(per_sample=4))
    return c


# ----------------------------------------------------------------------------------------------- patches


@dataclasses.dataclass
class Patches:
    """A surface as P analytic patches: kind [P], origin [P,3], frame [P,3,3], dims [P,4], area [P], owner [P]."""

    kind: np.ndarray
    origin: np.ndarray
    frame: np.ndarray
    dims: np.ndarray
    area: np.ndarray
    owner: np.ndarray

    @staticmethod
    def build(rows: list, owner: int = 0) -> "Patches":
        """list of (kind, origin, frame, dims, area) rows -> Patches (one owner id for all rows)."""
        kind, origin, frame, dims, area = zip(*rows)
        return Patches(np.array(kind, np.int32), np.array(origin, np.float64), np.array(frame, np.float64),
                       np.array(dims, np.float64), np.array(area, np.float64), np.full(len(rows), owner, np.int32))

    @staticmethod
    def concat(parts: list) -> "Patches":
        """list[Patches] -> one Patches."""
        return Patches(*(np.concatenate([getattr(p, f.name) for p in parts])
                         for f in dataclasses.fields(Patches)))

    def transformed(self, scale: float = 1.0, rot=None, shift=(0.0, 0.0, 0.0), owner: int | None = None) -> "Patches":
        """x -> rot @ (scale * x) + shift on every patch (uniform scale keeps every primitive analytic)."""
        frame = self.frame.copy()
        frame[self.kind <= TRI, :, :2] *= scale
        origin = self.origin * scale
        if rot is not None:
            rot = np.asarray(rot, np.float64)
            origin, frame = origin @ rot.T, rot @ frame
        return Patches(self.kind, origin + np.asarray(shift, np.float64), frame, self.dims * scale,
                       self.area * scale * scale, self.owner if owner is None else np.full_like(self.owner, owner))

    def bounds(self) -> tuple:
        """-> ([3] lo, [3] hi) axis-aligned bounds (exact for patches whose axis is a coordinate axis)."""
        k, d, e3 = self.kind, self.dims, self.frame[:, :, 2]
        flat = k <= TRI
        u, v = self.frame[:, :, 0], self.frame[:, :, 1]
        corners = (self.origin[:, None] + np.stack([0 * u, u, v, np.where((k == PARA)[:, None], u + v, v)], 1))[flat]
        # NOTE: each curved patch is bounded by an upright cylinder (base, axis e3, radius rho, height h).
        r = d[:, 0]
        zone_rho = np.where((d[:, 1] <= 0) & (d[:, 2] >= 0), r,
                            np.sqrt(np.maximum(r * r - np.minimum(d[:, 1] ** 2, d[:, 2] ** 2), 0)))
        rho = np.select([k == SPHERE, k == TORUS], [zone_rho, d[:, 0] + d[:, 1]], r)
        z0 = np.select([k == SPHERE, k == TORUS], [d[:, 1], -d[:, 1]], 0.0)
        h = np.select([k == SPHERE, k == TORUS, k == DISK], [d[:, 2] - d[:, 1], 2 * d[:, 1], 0.0], d[:, 1])
        base = self.origin + z0[:, None] * e3
        ends = np.stack([base, base + h[:, None] * e3], 1)[~flat]
        half = (rho[:, None] * np.sqrt(np.clip(1 - e3 * e3, 0, 1)))[~flat, None]
        pts = np.concatenate([corners.reshape(-1, 3), (ends - half).reshape(-1, 3), (ends + half).reshape(-1, 3)])
        return pts.min(0), pts.max(0)


_I = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
_DOWN = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, -1.0))   # disk facing -z (handedness is irrelevant here)


def _flat(kind: int, origin, u, v) -> tuple:
    # NOTE: plain-float math: numpy calls on 3-vectors cost more than the arithmetic (patches are built per sample).
    n = (u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0])
    a = math.sqrt(n[0] ** 2 + n[1] ** 2 + n[2] ** 2)
    frame = tuple((float(u[i]), float(v[i]), n[i] / a) for i in range(3))
    return (kind, tuple(float(x) for x in origin), frame, (0.0, 0.0, 0.0, 0.0), a if kind == PARA else a / 2)


def _add(a, b, s=1.0) -> tuple:
    return tuple(float(x) + s * float(y) for x, y in zip(a, b))


def box_rows(center, size) -> list:
    """(center [3], size [3]) -> 6 outward-facing parallelogram rows of an axis-aligned box."""
    lo = _add(center, size, -0.5)
    hi = _add(center, size, 0.5)
    ex, ey, ez = (size[0], 0.0, 0.0), (0.0, size[1], 0.0), (0.0, 0.0, size[2])
    return [_flat(PARA, lo, ey, ex), _flat(PARA, (lo[0], lo[1], hi[2]), ex, ey),      # bottom, top
            _flat(PARA, lo, ex, ez), _flat(PARA, (lo[0], hi[1], lo[2]), ez, ex),      # -y, +y
            _flat(PARA, lo, ez, ey), _flat(PARA, (hi[0], lo[1], lo[2]), ey, ez)]      # -x, +x


def cylinder_rows(base, r, h, bottom=True, top=True) -> list:
    """(base center [3], radius, height) -> side (+ caps) rows of a z-axis cylinder."""
    b = tuple(float(x) for x in base)
    rows = [(CYL, b, _I, (r, h, 0.0, 0.0), 2 * math.pi * r * h)]
    if bottom:
        rows.append((DISK, b, _DOWN, (r, 0.0, 0.0, 0.0), math.pi * r * r))
    if top:
        rows.append((DISK, (b[0], b[1], b[2] + h), _I, (r, 0.0, 0.0, 0.0), math.pi * r * r))
    return rows


def cone_rows(base, r, h, bottom=True) -> list:
    """(base center [3], radius, height) -> side (+ base) rows of a z-axis cone, apex up."""
    b = tuple(float(x) for x in base)
    rows = [(CONE, b, _I, (r, h, 0.0, 0.0), math.pi * r * math.hypot(r, h))]
    return rows + ([(DISK, b, _DOWN, (r, 0.0, 0.0, 0.0), math.pi * r * r)] if bottom else [])


def sphere_rows(center, r, z0=None, z1=None) -> list:
    """(center [3], radius, z range along the axis) -> a sphere zone row (the whole sphere by default)."""
    z0, z1 = -r if z0 is None else z0, r if z1 is None else z1
    return [(SPHERE, tuple(float(x) for x in center), _I, (r, z0, z1, 0.0), 2 * math.pi * r * (z1 - z0))]


def torus_rows(center, major, minor) -> list:
    """(center [3], major radius, minor radius) -> a z-axis torus row."""
    return [(TORUS, tuple(float(x) for x in center), _I, (major, minor, 0.0, 0.0), 4 * math.pi ** 2 * major * minor)]


def extrusion_rows(poly, height, fan_from: int = 0) -> list:
    """(CCW polygon [k,2] star-shaped about vertex fan_from, height) -> side rectangles and fan-triangulated caps."""
    k = len(poly)
    rows = []
    for i in range(k):
        a, b = poly[i], poly[(i + 1) % k]
        rows.append(_flat(PARA, (a[0], a[1], 0.0), (b[0] - a[0], b[1] - a[1], 0.0), (0.0, 0.0, height)))
    o = poly[fan_from]
    for j in range(1, k - 1):
        a, b = poly[(fan_from + j) % k], poly[(fan_from + j + 1) % k]
        u, v = (a[0] - o[0], a[1] - o[1], 0.0), (b[0] - o[0], b[1] - o[1], 0.0)
        rows.append(_flat(TRI, (o[0], o[1], height), u, v))
        rows.append(_flat(TRI, (o[0], o[1], 0.0), v, u))
    return rows


def pyramid_rows(side, height) -> list:
    """(base side, height) -> square-base pyramid rows (base at z=0, centered)."""
    h = side / 2
    c = ((-h, -h, 0.0), (h, -h, 0.0), (h, h, 0.0), (-h, h, 0.0))
    apex = (0.0, 0.0, height)
    rows = [_flat(PARA, c[0], _add(c[3], c[0], -1), _add(c[1], c[0], -1))]
    for i in range(4):
        a, b = c[i], c[(i + 1) % 4]
        rows.append(_flat(TRI, a, _add(b, a, -1), _add(apex, a, -1)))
    return rows


_X_UP = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])   # rotation about x: y -> z (stands extrusions up)


def primitive_patches(name: str, rng: np.random.Generator | None = None, center: bool = True) -> Patches:
    """primitive name (+ rng for shape-parameter jitter; None = canonical) -> Patches (centered on their AABB)."""
    def j(lo, hi):
        return (lo + hi) / 2 if rng is None else float(rng.uniform(lo, hi))
    if name == "cube":
        rows = box_rows((0, 0, 0), (1, 1, 1))
    elif name == "sphere":
        rows = sphere_rows((0, 0, 0), 0.5)
    elif name == "cylinder":
        rows = cylinder_rows((0, 0, 0), 0.5, j(0.6, 1.6))
    elif name == "cone":
        rows = cone_rows((0, 0, 0), 0.5, j(0.7, 1.5))
    elif name == "torus":
        rows = torus_rows((0, 0, 0), 0.5, j(0.1, 0.2))
    elif name == "pyramid":
        rows = pyramid_rows(1.0, j(0.6, 1.2))
    elif name == "capsule":
        r, h = 0.3, j(0.4, 1.0)
        rows = sphere_rows((0, 0, 0), r, -r, 0.0) + cylinder_rows((0, 0, 0), r, h, False, False) + sphere_rows(
            (0, 0, h), r, 0.0, r)
    elif name == "prism":
        # NOTE: the triangle is extruded along y (after _X_UP), so the prism lies on a face like a roof.
        rows = extrusion_rows(((-0.5, 0.0), (0.5, 0.0), (0.0, np.sqrt(3) / 2)), j(0.8, 1.6))
    elif name == "plane":
        rows = [_flat(PARA, (-0.5, -0.5, 0.0), (1.0, 0.0, 0.0), (0.0, j(0.5, 1.0), 0.0))]
    elif name == "l_shape":
        t, b = j(0.3, 0.45), j(0.6, 1.0)
        rows = extrusion_rows(((0.0, 0.0), (1.0, 0.0), (1.0, t), (t, t), (t, b), (0.0, b)), j(0.3, 0.6), fan_from=3)
    else:
        raise ValueError(f"unknown 3D primitive {name!r}; valid: {', '.join(concepts.SHAPES_3D)}")
    p = Patches.build(rows)
    if name in ("prism", "l_shape"):
        p = p.transformed(rot=_X_UP)
    if not center:
        return p
    lo, hi = p.bounds()
    return p.transformed(shift=-(lo + hi) / 2)


# ----------------------------------------------------------------------------------------------- sampling


def _torus_angle(u: np.ndarray, k: np.ndarray) -> np.ndarray:
    """[n] uniforms, [n] minor/major ratio -> [n] minor angles with density prop. to 1 + k cos(phi) (Newton)."""
    target = 2 * np.pi * u
    phi = target.copy()
    for _ in range(8):
        phi -= (phi + k * np.sin(phi) - target) / (1 + k * np.cos(phi))
    return phi


def surface_at(p: Patches, pidx: np.ndarray, u1: np.ndarray, u2: np.ndarray) -> tuple:
    """patches, [n] patch ids, [n] x2 uniforms -> ([n,3] points, [n,3] unit outward normals)."""
    # NOTE: np.take(axis=0) gathers rows several times faster than fancy indexing (same values).
    kind = p.kind[pidx]
    d = np.take(p.dims, pidx, axis=0)
    local = np.zeros((len(pidx), 3))
    nloc = np.zeros((len(pidx), 3))
    nloc[:, 2] = 1.0
    # NOTE: the few patch kinds instead of np.unique over every point (a sort); absent kinds are skipped.
    for k in (np.unique(p.kind) if len(p.kind) < len(pidx) else np.unique(kind)).tolist():
        m = kind == k
        cnt = np.count_nonzero(m)
        if not cnt:
            continue
        if cnt == len(kind):
            m, a, b, dk = slice(None), u1, u2, d      # NOTE: one kind: no boolean gathers and scatters
        else:
            a, b, dk = u1[m], u2[m], d[m]
        if k == PARA or k == TRI:
            if k == TRI:
                flip = a + b > 1
                a, b = np.where(flip, 1 - a, a), np.where(flip, 1 - b, b)
            local[m, 0], local[m, 1] = a, b
            continue
        th = 2 * np.pi * b
        ct, st = np.cos(th), np.sin(th)
        r = dk[:, 0]
        if k == DISK:
            rho = r * np.sqrt(a)
            local[m] = np.stack([rho * ct, rho * st, np.zeros_like(a)], -1)
        elif k == CYL:
            local[m] = np.stack([r * ct, r * st, dk[:, 1] * a], -1)
            nloc[m] = np.stack([ct, st, np.zeros_like(a)], -1)
        elif k == CONE:
            h = dk[:, 1]
            rho = r * np.sqrt(a)
            local[m] = np.stack([rho * ct, rho * st, h * (1 - rho / r)], -1)
            nloc[m] = np.stack([h * ct, h * st, r], -1) / np.hypot(h, r)[:, None]
        elif k == SPHERE:
            z = dk[:, 1] + (dk[:, 2] - dk[:, 1]) * a
            rho = np.sqrt(np.maximum(r * r - z * z, 0.0))
            local[m] = np.stack([rho * ct, rho * st, z], -1)
            nloc[m] = local[m] / r[:, None]
        else:  # TORUS
            phi = _torus_angle(a, dk[:, 1] / r)
            ring = r + dk[:, 1] * np.cos(phi)
            local[m] = np.stack([ring * ct, ring * st, dk[:, 1] * np.sin(phi)], -1)
            nloc[m] = np.stack([np.cos(phi) * ct, np.cos(phi) * st, np.sin(phi)], -1)
    frame = np.take(p.frame, pidx, axis=0)
    pts = np.take(p.origin, pidx, axis=0) + np.einsum("nij,nj->ni", frame, local)
    flat = kind <= TRI
    if flat.all():
        # NOTE: flat patches carry their normal in the frame: skip the curved-normal product (same values).
        return pts, frame[:, :, 2].copy()
    normals = np.where(flat[:, None], frame[:, :, 2], np.einsum("nij,nj->ni", frame, nloc))
    return pts, normals


def sample_surface(p: Patches, n: int, rng: np.random.Generator, return_patch: bool = False) -> tuple:
    """patches, n -> ([n,3] points, [n,3] normals[, [n] patch ids]), area-weighted, grouped by patch."""
    area = p.area
    counts = rng.multinomial(n, area / area.sum())
    pidx = np.repeat(np.arange(len(area)), counts)
    u = rng.random((2, n))
    pts, normals = surface_at(p, pidx, u[0], u[1])
    return (pts, normals, pidx) if return_patch else (pts, normals)


# ----------------------------------------------------------------------------------------------- rendering


def splat(u, v, z, radius_px, height: int, width: int, want_index: bool = False, index_views: slice | None = None):
    """[V,N] column, row (pixels), depth, radius -> ([V,H,W] z-buffer, inf = empty; [V',H,W] winning point or -1).

    A point covers its own pixel and every pixel whose center lies within radius_px of it; the nearest point wins
    (scatter-min over pixel bins). Points with non-finite z are absent. `index_views` (a step-1 slice of views)
    limits the winner maps to those views (V' of them; all V by default).
    """
    # NOTE: float32/int32 halve the memory traffic, which dominates at these sizes; pixel error stays < 1e-4.
    u, v, z = (np.asarray(a, np.float32) for a in (u, v, z))
    n_views, n = u.shape
    if np.ndim(radius_px) == 0:
        # NOTE: a scalar radius stays a float32 scalar: the same arithmetic without [V,N] radius passes.
        r = np.float32(radius_px)
        r_eff = max(r, np.float32(0.5))
        r_max = r_min = r
    else:
        r = np.broadcast_to(np.asarray(radius_px, np.float32), u.shape)
        r_eff = np.maximum(r, 0.5)
        r_max, r_min = (r_eff.max(), r.min()) if r.size else (np.float32(0.5), np.float32(1.0))
    k = int(min(np.floor(2 * max(r_max, np.float32(0.5))), 15)) + 1 if n else 1
    # NOTE: a margin of m pixels around the canvas catches footprints that leave the image (and absent points),
    # so no per-candidate bounds checks are needed; the margin is cropped at the end.
    m = k + 1
    hp, wp = height + 2 * m, width + 2 * m
    absent = ~np.isfinite(z)
    if absent.any():
        u, v = np.where(absent, np.float32(-1e9), u), np.where(absent, np.float32(-1e9), v)
        z = np.where(absent, np.float32(np.inf), z)
    off = np.arange(k, dtype=np.float32)[:, None, None]
    j0 = np.clip(np.ceil(u - r_eff - 0.5), -m, width + m - k)
    i0 = np.clip(np.ceil(v - r_eff - 0.5), -m, height + m - k)
    # NOTE: offsets lead and points trail ([k,k,V,N]) so every numpy inner loop runs over the long point axis.
    dx = j0 + 0.5 - u + off                                                # [k,V,N] column offsets
    dy = i0 + 0.5 - v + off                                                # [k,V,N] row offsets
    hit = dy[:, None] ** 2 + dx[None] ** 2 <= r * r                        # [k(row),k(col),V,N]
    if n and r_min < 0.7072:    # NOTE: below half a pixel diagonal the own pixel may miss the disc
        hit |= (np.abs(dy) <= 0.5)[:, None] & (np.abs(dx) <= 0.5)[None]
    base = (np.arange(n_views, dtype=np.int32)[:, None] * hp + i0.astype(np.int32) + m) * wp + j0.astype(np.int32) + m
    # NOTE: one flatnonzero per footprint cell (cell-major, the order of flatnonzero(hit)) instead of an int64
    # divmod over every hit: the same candidates in the same order at a fraction of the cost.
    hit = hit.reshape(k * k, n_views * n)
    base = base.ravel()
    points = [np.flatnonzero(hit[c]) for c in range(k * k)]
    point = np.concatenate(points)                                         # flat [V*N] point id
    cand = np.concatenate([base[p] + np.int32((c // k) * wp + c % k) for c, p in enumerate(points)])
    zc = z.ravel()[point]
    zbuf = np.full(n_views * hp * wp, np.inf, np.float32)
    np.minimum.at(zbuf, cand, zc)
    out = zbuf.reshape(n_views, hp, wp)[:, m:m + height, m:m + width]
    if not want_index:
        return out
    lo, hi, _ = (index_views or slice(None)).indices(n_views)
    if (lo, hi) != (0, n_views):
        # NOTE: candidates are ordered cell-major, so the kept subset keeps the write order (ties resolve alike).
        keep = (point >= lo * n) & (point < hi * n)
        point, cand, zc = point[keep], cand[keep], zc[keep]
    win = zc == zbuf[cand]
    index = np.full(max(hi - lo, 0) * hp * wp, -1, np.int32)
    index[cand[win] - lo * hp * wp] = point[win] % max(n, 1)
    return out, index.reshape(max(hi - lo, 0), hp, wp)[:, m:m + height, m:m + width]


def view_frames(views) -> tuple:
    """[V,2] (elevation, azimuth) degrees -> ([V,3] toward-camera c, [V,3] image right, [V,3] image up)."""
    e, a = np.deg2rad(np.asarray(views, np.float64)).T
    ce, se, ca, sa = np.cos(e), np.sin(e), np.cos(a), np.sin(a)
    c = np.stack([ce * ca, ce * sa, se], -1)
    right = np.stack([-sa, ca, np.zeros_like(a)], -1)
    return c, right, np.stack([-se * ca, -se * sa, ce], -1)     # c x right


def orthographic(xyz, views, distance, res: int, frames: tuple | None = None) -> tuple:
    """[N,3] points, [V,2] views, [V] camera distances -> [V,N] (column, row, depth) for an H=W=res image.

    `frames` = `view_frames(views)` when the caller already has it (fixed view tables are computed once).
    """
    c, right, up = view_frames(views) if frames is None else frames
    dist = np.asarray(distance, np.float64)
    half = res / 2
    # NOTE: one [3V,3] x [3,N] product in float32; the affine pixel mapping is folded into the rows.
    rows = np.concatenate([right * (CAMERA_DISTANCE / dist * half)[:, None],
                           -up * (CAMERA_DISTANCE / dist * half)[:, None], -c]).astype(np.float32)
    proj = rows @ np.asarray(xyz, np.float32).T
    v = len(dist)
    z = proj[2 * v:] + dist[:, None].astype(np.float32)
    return proj[:v] + np.float32(half), proj[v:2 * v] + np.float32(half), z


def normalize_depth(zbuf: np.ndarray) -> np.ndarray:
    """[V,H,W] raw z-buffer (inf = empty) -> CLIP2Point depth: (z - z_min) / z_max * 200/255, background 1.0."""
    shape = np.shape(zbuf)
    # NOTE: [V, H*W] rows make every broadcast below run over long contiguous rows.
    z = np.ascontiguousarray(zbuf, np.float32).reshape(shape[0], -1)
    fg = np.isfinite(z)
    # NOTE: masked numpy ops (where / boolean assignment) cost 10x plain arithmetic here, so the selections are
    # arithmetic: the background is +inf (splat never writes -inf or nan), so the plain min is the foreground min,
    # and inf * 0 = nan is skipped by fmax.
    zmin = z.min(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        zmax = np.fmax.reduce(z * fg, axis=1, keepdims=True)
        zmin = np.where(np.isfinite(zmin), zmin, np.float32(0.0))
        d = z - zmin
        d /= np.where(zmax > 0, zmax, np.float32(1.0))
    d *= np.float32(DEPTH_MAX)
    if (zmin >= 0).all():
        # NOTE: 0 <= z - z_min <= z_max, so the foreground stays <= DEPTH_MAX < 1 and min(d, 1) only maps inf to 1.
        np.minimum(d, np.float32(1.0), out=d)
    else:
        d = np.where(fg, d, np.float32(1.0))
    return d.reshape(shape)


def lambert(rgb, normals, light) -> np.ndarray:
    """[N,3] albedo, [N,3] normals, [N,3] or [3] unit light -> [N,3] two-sided Lambert shading in [0,1]."""
    d = normals * light
    dot = (d[..., 0] + d[..., 1]) + d[..., 2]     # NOTE: = np.sum(d, -1) bit for bit, without a length-3 reduction
    return np.clip(rgb * (0.3 + 0.7 * np.abs(dot))[:, None], 0.0, 1.0)


# ----------------------------------------------------------------------------------------------- object3d


def _wanted(path: str, fields) -> bool:
    """Is `path` (a field group) needed: selected by a requested prefix, or holding a requested sub-path?"""
    return fields is None or any(path == f or path.startswith(f + "/") or f.startswith(path + "/") for f in fields)


class Object3DSettings(NamedTuple):
    """The config values `sample_object3d` reads, checked once (ConfigDict lookups cost more than a sample)."""

    n: int
    classes: int
    views: str
    view_table: np.ndarray | None     # float64 [V, 2] (elevation, azimuth) degrees; None for "random"
    view_table_frames: tuple | None   # view_frames(view_table)
    n_views: int
    res: int


def compile_object3d(cfg) -> Object3DSettings:
    """world config (or Object3DSettings) -> checked Object3DSettings; ValueError naming a bad field."""
    if isinstance(cfg, Object3DSettings):
        return cfg
    pc = cfg.points
    if not 1 <= int(pc.classes) <= len(concepts.SHAPES_3D):
        raise ValueError(f"points.classes={pc.classes} must be in 1..{len(concepts.SHAPES_3D)}")
    if int(pc.n) < 1:
        raise ValueError(f"points.n={pc.n} must be >= 1")
    if pc.views not in (*VIEW_SETS, "random"):
        raise ValueError(f"points.views={pc.views!r}; valid: {', '.join((*VIEW_SETS, 'random'))}")
    if not 8 <= int(cfg.resolution) <= 512:
        raise ValueError(f"resolution={cfg.resolution} outside 8..512")
    table = None if pc.views == "random" else np.asarray(VIEW_SETS[pc.views], np.float64)
    frames = None if table is None else view_frames(table)
    n_views = RANDOM_VIEWS if table is None else len(table)
    return Object3DSettings(int(pc.n), int(pc.classes), str(pc.views), table, frames, n_views, int(cfg.resolution))


def _check_points_cfg(cfg) -> tuple:
    s = compile_object3d(cfg)
    return s.n, s.classes, s.n_views, s.res


def spec_object3d(cfg) -> dict:
    """config -> {path: (shape, dtype)} of an object3d sample."""
    n, _, v, res = _check_points_cfg(cfg)
    f32, i32, u8 = np.dtype(np.float32), np.dtype(np.int32), np.dtype(np.uint8)
    return {"points": ((n, 6), f32), "normals": ((n, 3), f32), "labels/shape3d": ((), i32),
            "depth": ((v, res, res), f32), "views": ((v, 2), f32), "rgb_view": ((res, res, 3), u8),
            "rgb_view_angle": ((2,), f32), "depth_pair": ((2, res, res), f32)}


def jittered_rgb(color: int, rng: np.random.Generator) -> np.ndarray:
    """color id -> [3] float rgb in [0,1] with +-8/255 jitter."""
    return np.clip(np.asarray(concepts.COLOR_RGB[color]) / 255.0 + rng.uniform(-COLOR_JITTER, COLOR_JITTER, 3), 0, 1)


def rotation_z(angle: float) -> np.ndarray:
    """radians -> [3,3] rotation about z."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def sample_object3d(cfg, seed: int, split: str, index: int, fields=None) -> dict:
    """(config, seed, split, index) -> object3d sample: points [N,6], normals [N,3], depth [V,H,W], ... (3.7).

    `cfg` is a world config or its `compile_object3d(cfg)` (cheaper when called per sample).
    """
    st = compile_object3d(cfg)
    n, res = st.n, st.res
    # NOTE: one re-keyed generator per stream, used strictly in sequence (points, then rgbd).
    rng = stream_generator(seed, split, index, "points")
    label = int(rng.integers(st.classes))
    out = {"labels/shape3d": np.int32(label)}
    views_needed = any(_wanted(p, fields) for p in ("depth", "views", "rgb_view", "rgb_view_angle", "depth_pair"))
    if not (views_needed or _wanted("points", fields) or _wanted("normals", fields)):
        return out
    color = int(rng.integers(len(concepts.COLORS)))
    rgb = jittered_rgb(color, rng)
    patches = primitive_patches(concepts.SHAPES_3D[label], rng, center=False)
    rot = rotation_z(rng.uniform(0, 2 * np.pi))
    scale = rng.uniform(*SCALE_RANGE)
    pts, nrm = sample_surface(patches, n, rng)
    perm = rng.permutation(n)
    pts, nrm = np.take(pts, perm, axis=0), np.take(nrm, perm, axis=0)
    # NOTE: reductions over the long axis of a [3, N] copy: numpy reduces [N, 3] along N 20x slower. The squared
    # norm is the left fold (x^2 + y^2) + z^2, which is exactly what np.sum over a length-3 axis computes.
    cols = pts.T.copy()
    pts -= (cols.max(1) + cols.min(1)) / 2
    cols = pts.T * pts.T
    pts *= scale / np.sqrt(np.max((cols[0] + cols[1]) + cols[2]))
    pts, nrm = pts @ rot.T, nrm @ rot.T
    if _wanted("points", fields):
        cloud = np.empty((n, 6), np.float32)
        cloud[:, :3] = pts
        cloud[:, 3:] = rgb
        out["points"] = cloud
    if _wanted("normals", fields):
        out["normals"] = nrm.astype(np.float32)
    if not views_needed:
        return out
    vrng = stream_generator(seed, split, index, "rgbd")
    angle = np.array([vrng.uniform(*RGB_VIEW_ELEVATION), vrng.uniform(-180.0, 180.0)])
    jitter = 1 + vrng.uniform(-DISTANCE_JITTER, DISTANCE_JITTER, 2)
    rgb_frames = view_frames(angle[None])
    if st.view_table is None:
        views = np.stack([np.rad2deg(np.arcsin(vrng.uniform(-1, 1, RANDOM_VIEWS))),
                          vrng.uniform(-180.0, 180.0, RANDOM_VIEWS)], -1)
        frames = view_frames(views)
    else:
        views, frames = st.view_table, st.view_table_frames
    # NOTE: view frames are per-view functions, so the fixed table's are computed once and the RGB view's once.
    frames = tuple(np.concatenate([f, np.repeat(g, 3, 0)]) for f, g in zip(frames, rgb_frames))
    v = len(views)
    # NOTE: one splat call for every map (V depth views, the RGB view, the jittered pair) keeps overhead per object.
    all_views = np.concatenate([views, np.repeat(angle[None], 3, 0)])
    dist = np.concatenate([np.full(v + 1, CAMERA_DISTANCE), CAMERA_DISTANCE * jitter])
    want_rgb = _wanted("rgb_view", fields)
    uu, vv, zz = orthographic(pts, all_views, dist, res, frames)
    zbuf = splat(uu, vv, zz, SPLAT_RADIUS * res / 2, res, res, want_index=want_rgb, index_views=slice(v, v + 1))
    if want_rgb:
        zbuf, index_map = zbuf
        light = rgb_frames[0][0]
        shade = np.concatenate([lambert(rgb[None], nrm, light), np.ones((1, 3))])   # row n = white background
        # NOTE: quantize the N+1 shades, then gather: the same bytes as quantizing the gathered image.
        out["rgb_view"] = np.take(np.round(shade * 255).astype(np.uint8), index_map[0], axis=0)  # NOTE: 4x fancy
    depth = normalize_depth(zbuf)
    if _wanted("depth", fields):
        out["depth"] = depth[:v]
    if _wanted("views", fields):
        out["views"] = views.astype(np.float32)
    if _wanted("rgb_view_angle", fields):
        out["rgb_view_angle"] = angle.astype(np.float32)
    if _wanted("depth_pair", fields):
        out["depth_pair"] = depth[v + 1:]
    return out
