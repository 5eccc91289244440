"""Vectorized 2D renderer of a SceneSpec (WORLD.md 5.3): radial profiles, textures, marks, styles.

Every 2D shape is star-shaped about its center, so it is a radial profile: a table
`PROFILES[n_shapes, 2, 256]` of inner/outer radius per angle bin (circumradius 1). All objects
of a scene are rasterized at once as `[O, K, K]` windows (K = pixel box of the largest object)
instead of `[O, H, W]`: the same broadcast math on ~10x fewer pixels at 64 px.
Alpha is `clip((r(theta) * s - rho) * res + 0.5, 0, 1)`, i.e. 1-px antialiasing; masks are alpha >= 0.5
and the topmost slot per pixel wins (paint order = `z`).
"""
from __future__ import annotations

import numpy as np

from vljax.data.world import concepts
from vljax.data.world.scene_spec import SceneSpec

N_BINS = 256
_THETA = (np.arange(N_BINS) + 0.5) * (2 * np.pi / N_BINS)
# NOTE: y points down in image coordinates, so angle -pi/2 is "up".
_UP = -np.pi / 2


def _polygon_radius(vertices: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """[V, 2] polygon (star-shaped about 0) x [T] angles -> [T] radius of the boundary along each ray."""
    a = vertices
    b = np.roll(vertices, -1, axis=0)
    d = np.stack([np.cos(theta), np.sin(theta)], -1)            # [T, 2]
    e = b - a                                                    # [V, 2]
    # Solve t*d = a + s*e for t (ray length) and s in [0, 1] (edge parameter).
    den = d[:, None, 0] * e[None, :, 1] - d[:, None, 1] * e[None, :, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (a[None, :, 0] * e[None, :, 1] - a[None, :, 1] * e[None, :, 0]) / den
        s = (a[None, :, 0] * d[:, None, 1] - a[None, :, 1] * d[:, None, 0]) / den
    ok = (np.abs(den) > 1e-12) & (s >= -1e-9) & (s <= 1 + 1e-9) & (t > 0)
    return np.where(ok, t, 0.0).max(axis=1)


def _regular(k: int, radii=(1.0,), phase: float = _UP) -> np.ndarray:
    """k-gon (or star with alternating radii) vertices, first vertex pointing up -> [k*len(radii), 2]."""
    n = k * len(radii)
    ang = phase + np.arange(n) * 2 * np.pi / n
    r = np.tile(np.asarray(radii, float), k)
    return np.stack([r * np.cos(ang), r * np.sin(ang)], -1)


def _heart() -> np.ndarray:
    """Heart curve polygon, centered on its area-center band and scaled to circumradius 1."""
    t = np.linspace(0, 2 * np.pi, 240, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y - 1.5], -1)  # NOTE: shift so the center sees the whole boundary (star-shaped).
    return pts / np.linalg.norm(pts, axis=1).max()


def _build_profiles() -> np.ndarray:
    """-> float32 [n_shapes, 2, 256] (inner, outer) radius per angle bin, circumradius 1."""
    th = _THETA
    prof = np.zeros((len(concepts.SHAPES), 2, N_BINS))
    prof[:, 0] = -1.0  # NOTE: inner radius -1 = solid (the inner alpha is then always 1).
    arm = 0.3
    cross = np.array([(arm, -1), (arm, -arm), (1, -arm), (1, arm), (arm, arm), (arm, 1), (-arm, 1),
                      (-arm, arm), (-1, arm), (-1, -arm), (-arm, -arm), (-arm, -1)], float)
    cross /= np.linalg.norm(cross, axis=1).max()
    ra, rb = 2 / np.sqrt(5), 1 / np.sqrt(5)
    outer = {
        "circle": np.ones_like(th),
        "square": _polygon_radius(_regular(4, phase=np.pi / 4), th),
        "triangle": _polygon_radius(_regular(3), th),
        "star": _polygon_radius(_regular(5, radii=(1.0, 0.45)), th),
        "diamond": _polygon_radius(np.array([(0, -1), (0.62, 0), (0, 1), (-0.62, 0)], float), th),
        "cross": _polygon_radius(cross, th),
        "hexagon": _polygon_radius(_regular(6), th),
        "heart": _polygon_radius(_heart(), th),
        "ellipse": 0.55 / np.sqrt((0.55 * np.cos(th)) ** 2 + np.sin(th) ** 2),
        "rectangle": _polygon_radius(np.array([(-ra, -rb), (ra, -rb), (ra, rb), (-ra, rb)]), th),
        "pentagon": _polygon_radius(_regular(5), th),
        "ring": np.ones_like(th),
        "sun": 0.58 + 0.42 * np.clip(1 - np.abs(((th - _UP) % (np.pi / 4)) - np.pi / 8) / 0.2, 0, 1),
    }
    for i, name in enumerate(concepts.SHAPES):
        prof[i, 1] = outer[name]
    prof[concepts.SHAPES.index("ring"), 0] = 0.55
    return prof.astype(np.float32)


PROFILES = _build_profiles()
# Area of each shape at circumradius 1: 0.5 * integral (r_out^2 - r_in^2) dtheta.
SHAPE_AREA = (0.5 * (PROFILES[:, 1] ** 2 - np.maximum(PROFILES[:, 0], 0) ** 2).sum(1)
              * (2 * np.pi / N_BINS)).astype(np.float64)

# 3x5 bitmap digits, rows top to bottom.
_DIGITS = ("111101101101111", "010110010010111", "111001111100111", "111001111001111",
           "101101111001001", "111100111001111", "111100111101111", "111001001001001",
           "111101111101111", "111101111001111")
GLYPHS = np.array([[int(c) for c in g] for g in _DIGITS], bool).reshape(10, 5, 3)

_TEX = {name: i for i, name in enumerate(concepts.TEXTURES)}
_STYLE = {name: i for i, name in enumerate(concepts.STYLES)}
_RING = concepts.SHAPES.index("ring")


class Raster2D:
    """Renders SceneSpecs at one resolution; precomputes tables once per World."""

    def __init__(self, resolution: int, antialias: bool = True, mark_size: float = 4 / 128,
                 seed: int = 0):
        self.res = int(resolution)
        self.antialias = bool(antialias)
        self.mark_size = float(mark_size)
        self.prof_in = np.ascontiguousarray(PROFILES[:, 0]).ravel()
        self.prof_out = np.ascontiguousarray(PROFILES[:, 1]).ravel()
        # NOTE: the 'noisy' texture reads a fixed per-world value-noise field, so it costs a lookup.
        g = np.random.Generator(np.random.Philox(key=(int(seed) & 0xFFFFFFFF, 0x7E57)))
        self.tex_noise = g.random((self.res, self.res), dtype=np.float32)
        self._pix_cache = {}
        self._ar_cache = {}

    def render(self, spec: SceneSpec, style: int | None = None, masks: bool = False,
               noise_rng: np.random.Generator | None = None) -> dict:
        """SceneSpec -> {image uint8 [H,W,3], boxes f32 [O,4], area f32 [O], instance_map i16 [H,W], masks?}."""
        r = self.res
        o_max = spec.valid.shape[0]
        style = spec.style if style is None else int(style)
        n = int(np.count_nonzero(spec.valid))  # NOTE: valid slots are contiguous from 0 (SceneSpec).
        slots = self._arange(n)
        boxes = np.zeros((o_max, 4), np.float32)
        area = np.zeros((o_max,), np.float32)
        if n == 0:
            inst = np.full((r, r), -1, np.int16)
            img = self._style(self._canvas(spec, r, 0), np.zeros((r, r), np.float32), style, noise_rng)
            return self._pack(img, boxes, area, inst, masks, o_max)

        cen = spec.center[:n]
        s = spec.scale[:n]
        k = int(2 * max(s.tolist()) * r) + 4
        # NOTE: float32 throughout; pixel centers of each object's window, relative to its center.
        ox = (cen[:, 0] * r).astype(np.int64) - k // 2               # window origin (pixels)
        oy = (cen[:, 1] * r).astype(np.int64) - k // 2
        px = self._pix(k)
        inv = np.float32(1.0 / r)
        dx = ((ox * inv).astype(np.float32) - cen[:, 0])[:, None, None] + px[None, None, :]  # [n, 1, K]
        dy = ((oy * inv).astype(np.float32) - cen[:, 1])[:, None, None] + px[None, :, None]  # [n, K, 1]
        ang = spec.angle[:n]
        if np.count_nonzero(ang):
            c, sn = np.cos(ang)[:, None, None], np.sin(ang)[:, None, None]
            u, v = dx * c + dy * sn, dy * c - dx * sn
        else:
            u, v = dx, dy
        rho = np.sqrt(u * u + v * v)                                  # [n, K, K]
        theta = np.arctan2(v, u)
        theta *= np.float32(N_BINS / (2 * np.pi))
        theta += np.float32(N_BINS)
        flat = theta.astype(np.int32)
        flat &= N_BINS - 1
        flat += (spec.shape[:n] * N_BINS)[:, None, None]
        sr = (s * r)[:, None, None]
        rho *= np.float32(r)                                          # rho in pixels from here on
        d_out = np.take(self.prof_out, flat)
        d_out *= sr
        d_out -= rho
        d_out += np.float32(0.5)                                      # signed distance in px (+0.5)
        alpha = self._edge(d_out)
        ring = spec.shape[:n] == _RING
        if np.count_nonzero(ring):
            d_in = rho[ring] - np.take(self.prof_in, flat[ring]) * sr[ring] + 0.5
            alpha[ring] = np.minimum(alpha[ring], self._edge(d_in))

        rgb = spec.rgb[:n]
        col = self._textures(spec.texture[:n], rgb, u, v, rho, s, d_out, ox, oy, k)  # [n,3,K,K] / [n,3,1,1]
        col = self._marks(spec.mark[:n], rgb, col, u, v, k)

        # NOTE: the canvas margin is just what the windows need (not k): fewer bytes to fill and crop.
        oy_l, ox_l = oy.tolist(), ox.tolist()
        pad = max(0, -min(min(ox_l), min(oy_l)), max(max(ox_l), max(oy_l)) + k - r)
        size = r + 2 * pad
        canvas = self._canvas(spec, size, pad)                        # planar [3, S, S]
        noisy = style in (_STYLE["noisy_bg"], _STYLE["texture_noise"])
        cov = np.zeros((size, size), np.float32) if noisy else None
        inst = np.empty((size, size), np.int16)
        inst.fill(-1)
        order = spec.z[:n].argsort(kind="stable").tolist() if n > 1 else (0,)
        outline = style == _STYLE["outlined"]
        on = alpha >= 0.5
        for j in order:
            y0, x0 = oy_l[j] + pad, ox_l[j] + pad
            sl = canvas[:, y0:y0 + k, x0:x0 + k]
            tmp = col[j] - sl
            tmp *= alpha[j]
            sl += tmp
            if outline:
                band = np.clip(d_out[j], 0, 1) - np.clip(d_out[j] - 1.5, 0, 1)
                sl -= (band * alpha[j]) * sl
            if noisy:
                csl = cov[y0:y0 + k, x0:x0 + k]
                csl += alpha[j] * (1 - csl)
            np.copyto(inst[y0:y0 + k, x0:x0 + k], slots[j], where=on[j], casting="unsafe")

        inst_img = inst[pad:pad + r, pad:pad + r]
        # NOTE: boxes and areas of all objects at once from the visible (topmost) instance map. A slot is only
        # ever written inside its own window, so [n, K, K] windows (margins cleared) replace [n, H, W] planes.
        if pad:
            inst[:pad], inst[pad + r:], inst[:, :pad], inst[:, pad + r:] = -1, -1, -1, -1
        win = np.empty((n, k, k), np.int16)                               # [n, K, K]
        for j in range(n):
            y0, x0 = oy_l[j] + pad, ox_l[j] + pad
            win[j] = inst[y0:y0 + k, x0:x0 + k]
        hot = win == slots[:, None, None]
        per_row = np.add.reduce(hot, axis=2)                              # [n, K] pixel counts
        rows, cols = per_row > 0, hot.any(1)                              # [n, K], [n, K]
        cnt = per_row.sum(1)
        b = np.empty((n, 4), np.float32)
        b[:, 0], b[:, 1] = ox + cols.argmax(1), oy + rows.argmax(1)
        b[:, 2], b[:, 3] = ox + k - cols[:, ::-1].argmax(1), oy + k - rows[:, ::-1].argmax(1)
        b *= inv
        b[cnt == 0] = 0
        boxes[:n] = b
        area[:n] = cnt * np.float32(1.0 / (r * r))
        img = self._style(canvas[:, pad:pad + r, pad:pad + r],
                          cov[pad:pad + r, pad:pad + r] if noisy else None, style, noise_rng)
        return self._pack(img, boxes, area, inst_img, masks, o_max, noisy)

    def _arange(self, k: int) -> np.ndarray:
        """-> int16 [k] arange, cached."""
        a = self._ar_cache.get(k)
        if a is None:
            a = self._ar_cache[k] = np.arange(k, dtype=np.int16)
        return a

    def _pix(self, k: int) -> np.ndarray:
        """-> float32 [k] pixel-center offsets (i + 0.5) / res, cached per window size."""
        p = self._pix_cache.get(k)
        if p is None:
            p = self._pix_cache[k] = ((np.arange(k) + 0.5) / self.res).astype(np.float32)
        return p

    def _canvas(self, spec: SceneSpec, size: int, pad: int) -> np.ndarray:
        """-> planar float32 [3, size, size] canvas with the background (image at [pad:pad+res])."""
        canvas = np.empty((3, size, size), np.float32)
        if spec.background == 2:
            ys = (np.arange(size, dtype=np.float32) - pad + 0.5) / self.res
            w = np.clip((ys - spec.horizon) / 0.1 + 0.5, 0, 1)
            for c in range(3):
                top, bottom = spec.background_rgb[c], spec.background_rgb[3 + c]
                canvas[c] = (top + w * (bottom - top))[:, None]
        else:
            for c in range(3):
                canvas[c] = spec.background_rgb[c]
        return canvas

    def _edge(self, d: np.ndarray) -> np.ndarray:
        """Signed pixel distance (+0.5) -> alpha (antialiased ramp or hard step)."""
        if self.antialias:
            out = np.maximum(d, np.float32(0))
            return np.minimum(out, np.float32(1), out=out)
        return (d >= 0.5).astype(np.float32)

    def _textures(self, tex, rgb, u, v, rho, s, d_out, ox, oy, k) -> np.ndarray:
        """Per-object texture -> planar fill colors [n, 3, K, K] (or [n, 3, 1, 1] when all solid)."""
        n = rgb.shape[0]
        if not np.count_nonzero(tex):  # NOTE: texture id 0 is solid
            return rgb[:, :, None, None]
        col = np.empty((n, 3, k, k), np.float32)
        col[:] = rgb[:, :, None, None]
        for j in np.flatnonzero(tex != _TEX["solid"]):
            t = int(tex[j])
            uu, vv, pp = u[j] / s[j], v[j] / s[j], rho[j] / (s[j] * self.res)  # NOTE: rho is in pixels
            if t == _TEX["striped"]:
                f = np.where((uu * 2.5) % 1.0 < 0.5, 1.0, 0.5) + 0 * vv
            elif t == _TEX["dotted"]:
                f = np.where(((uu / 0.4) % 1 - 0.5) ** 2 + ((vv / 0.4) % 1 - 0.5) ** 2 < 0.09, 0.5, 1.0)
            elif t == _TEX["checkered"]:
                f = np.where((np.floor(uu / 0.4) + np.floor(vv / 0.4)) % 2 == 0, 1.0, 0.55)
            elif t == _TEX["ringed"]:
                f = np.where(np.floor(pp / 0.25) % 2 == 0, 1.0, 0.55)
            elif t == _TEX["noisy"]:
                yy = (oy[j] + np.arange(k)) % self.res
                xx = (ox[j] + np.arange(k)) % self.res
                f = 0.6 + 0.4 * self.tex_noise[np.ix_(yy, xx)]
            else:  # outlined: pale interior, full-color rim of ~15% of the radius
                rim = d_out[j] < 0.15 * s[j] * self.res + 0.5
                col[j] = np.where(rim[None], rgb[j][:, None, None], 0.35 * rgb[j][:, None, None] + 0.65)
                continue
            col[j] = f[None].astype(np.float32) * rgb[j][:, None, None]
        return col

    def _marks(self, mark, rgb, col, u, v, k) -> np.ndarray:
        """Paints dot / digit / dots marks (object frame, unit `mark_size`) into the fill colors."""
        has = mark[:, 0] > 0
        if not np.count_nonzero(has):
            return col
        n = rgb.shape[0]
        if col.shape[2] == 1:
            col = np.ascontiguousarray(np.broadcast_to(col, (n, 3, k, k)))
        m = self.mark_size
        u, v = np.broadcast_arrays(u, v)
        for j in np.flatnonzero(has):
            kind, val = int(mark[j, 0]), int(mark[j, 1])
            lum = float(rgb[j] @ np.array([0.299, 0.587, 0.114], np.float32))
            ink = np.zeros(3, np.float32) if lum > 0.5 else np.ones(3, np.float32)
            if kind == 1:  # dot of a palette color
                on = u[j] ** 2 + v[j] ** 2 < (m / 2) ** 2
                ink = np.asarray(concepts.COLOR_RGB[val], np.float32) / 255
            elif kind == 2:  # 3x5 digit, cell = m / 2
                cell = m / 2
                ci = np.floor(u[j] / cell + 1.5).astype(np.int32)
                ri = np.floor(v[j] / cell + 2.5).astype(np.int32)
                inside = (ci >= 0) & (ci < 3) & (ri >= 0) & (ri < 5)
                on = inside & GLYPHS[val][np.clip(ri, 0, 4), np.clip(ci, 0, 2)]
            else:  # 1-4 dots in a row
                offs = (np.arange(val) - (val - 1) / 2) * 1.5 * m
                on = ((u[j][None] - offs[:, None, None]) ** 2 + v[j][None] ** 2 < (m / 2) ** 2).any(0)
            col[j] = np.where(on[None], ink[:, None, None], col[j])
        return col

    def _style(self, img, cov, style, noise_rng) -> np.ndarray:
        """Post-composition pixel transform of a style (never changes ground truth)."""
        if style == _STYLE["noisy_bg"] or style == _STYLE["texture_noise"]:
            if noise_rng is None:
                raise ValueError("style noisy_bg / texture_noise needs noise_rng")
            noise = noise_rng.standard_normal(img.shape, dtype=np.float32)
            w = (1 - cov) * 0.08 if style == _STYLE["noisy_bg"] else cov * 0.15
            img = img + noise * w
        elif style == _STYLE["inverted"]:
            img = 1.0 - img
        return img

    def _pack(self, img, boxes, area, inst, masks, o_max, noisy: bool = True) -> dict:
        """Quantizes the image and assembles the output dict."""
        # NOTE: compositing is convex, so only noisy styles can leave [0, 1]; float -> uint8 truncates.
        q = img * np.float32(255)
        q += np.float32(0.5)
        if noisy:
            np.clip(q, 0, 255, out=q)
        q = q.astype(np.uint8)
        # NOTE: planar -> interleaved one channel at a time: 2x cheaper than a transposed 3D copy.
        image = np.empty(q.shape[1:] + (3,), np.uint8)
        for c in range(3):
            image[:, :, c] = q[c]
        out = {
            "image": image,
            "boxes": boxes,
            "area": area,
            "instance_map": np.ascontiguousarray(inst, dtype=np.int16),
        }
        if masks:
            out["masks"] = inst[None] == np.arange(o_max, dtype=np.int16)[:, None, None]
        return out
