"""World domains beyond `natural` (WORLD.md 2.5, 2.6): medical X-ray-like scenes, aerial tiles, the web-pool mix.

- **medical**: a grayscale chest-like field (dark air outside a gray body, two dark lung ellipses, bright
  mediastinum, curved rib stripes, Gaussian noise) with 0-3 bright findings. A finding's type is its shape (round
  circle, spiculated star, oval ellipse, linear rectangle), its subtype its texture (solid, striped, dotted) and its
  zone (upper/lower x left/right) the quadrant of its center, so `kg.py` names it. `captions/report` is a
  radiology-like report whose KG words carry spans of type 11 (concept = KG entity id).
- **aerial**: top-down tiles on value-noise ground, 8 scene types (residential, farmland, river, airport, forest,
  parking, industrial, beach) drawn from the `class` stream; buildings, planes, cars, trees, boats, tanks are small
  shapes; `geo/*` feeds `captions/meta`. `caption` is a scene caption that names "aerial"/"satellite" with
  probability `keyword_p`.
- **domain_mix** (`{"natural": .8, "aerial": .2}`): the domain of an index is drawn on the `split` stream; every
  item carries the union schema (`labels/scene_type` -1 and `captions/meta` "" on natural items, `meta/domain`).
  `caption.mismatch_p` (any world) swaps in every caption field of a hashed other index and sets `meta/mismatched`.

Both domains build ordinary SceneSpecs (objects = findings / buildings, planes, ...), so the shared rasterizer,
relations, boxes, masks and the natural captions work unchanged; only the background layer (`_canvas`), the finding
textures and the domain text live here.
"""
from __future__ import annotations

import math

import numpy as np

from vljax.data.world import concepts
from vljax.data.world import kg
from vljax.data.world.language.lexicon import NUMBER_WORDS_EN
from vljax.data.world.raster2d import Raster2D
from vljax.data.world.rng import stream_uniforms
from vljax.data.world.scene2d import main_object
from vljax.data.world.scene_spec import SceneSpec

DOMAINS = ("natural", "medical", "aerial")
MIXABLE = ("natural", "medical", "aerial")
SCENE_TYPES = ("residential", "farmland", "river", "airport", "forest", "parking", "industrial", "beach")
SCENE_TYPE_NAMES = ("residential area", "farmland", "river", "airport", "forest", "parking lot", "industrial area",
                    "beach")
SEASONS = ("spring", "summer", "autumn", "winter")
KEYWORD_PREFIXES = ("an aerial image of", "an aerial photo of", "a satellite image of", "a satellite photo of")
# NOTE: the first ten equal annotate.QA_TYPES, so `qa/type` ids mean the same in every domain (WORLD.md 3.3 order).
QA_TYPES = ("color", "shape", "size", "texture", "count", "position", "existence", "relation", "compare", "two_hop",
            "fine_detail", "referred_attribute", "finding_type", "superclass", "zone", "scene_type")
MEDICAL_QA = ("finding_type", "zone", "superclass", "count")
AERIAL_QA = ("scene_type", "count")
MEDICAL_TASKS = ("finding", "finding_type", "zone", "superclass")
DOMAIN_TASKS = MEDICAL_TASKS + ("scene_type",)
TEMPLATES = {
    "aerial": ("an aerial photo of {}.", "a satellite image of {}.", "aerial imagery of {}.",
               "a satellite view of {}.", "{} seen from above.", "an overhead photo of {}."),
    "medical": ("a chest x-ray showing {}.", "an x-ray with {}.", "a radiograph with {}.", "findings: {}."),
}
MAX_SPANS = 48
ENTITY_SPAN, SHAPE_SPAN = 11, 4
# NOTE: canonical shape ids (concepts.SHAPES) of the finding types round, spiculated, oval, linear.
FINDING_SHAPES = tuple(concepts.SHAPES.index(s) for s in ("circle", "star", "ellipse", "rectangle"))
_SHAPE_TO_TYPE = {s: t for t, s in enumerate(FINDING_SHAPES)}
_WHITE, _SMALL = concepts.COLORS.index("white"), concepts.SIZES.index("small")
_SQ, _CI, _CR, _EL, _RE = (concepts.SHAPES.index(s) for s in ("square", "circle", "cross", "ellipse", "rectangle"))
_RED, _BLUE, _GREEN, _YELLOW, _ORANGE, _BROWN = (concepts.COLORS.index(c) for c in
                                                ("red", "blue", "green", "yellow", "orange", "brown"))
# (scene type, shape) -> noun of that object kind (aerial captions, meta captions and count QA).
NOUNS = {(0, _SQ): "house", (1, _SQ): "barn", (2, _EL): "boat", (3, _CR): "plane", (4, _CI): "tree",
         (5, _RE): "car", (6, _SQ): "building", (6, _CI): "storage tank", (7, _CI): "umbrella", (7, _EL): "boat"}
TYPE_NOUNS = tuple(tuple(n for (t, _), n in NOUNS.items() if t == k) for k in range(len(SCENE_TYPES)))
# Domain text reads caption-stream window 24 (annotate uses windows 0..7), so it never shares uniforms with it.
_WINDOW = 48
_TEXT_WINDOW = 24
# Medical geometry (normalized, y down): zone centers and the 3 finding anchors per zone (pairwise >= 0.146 apart;
# with +-0.008 jitter, two round findings at the largest circumradius 0.0715 overlap by at most 0.02, about 1 px at
# 64 px; other shapes sit inside their circumradius); lungs are centered on the zone grid.
_ZONE_CENTERS = np.array([(0.3, 0.33), (0.7, 0.33), (0.3, 0.67), (0.7, 0.67)])
_ANCHORS = np.array([(-0.075, -0.045), (0.075, -0.045), (0.0, 0.08)])
_PREFERRED_P = 0.7
_FINDING_SCALE = 0.065


def _plural(noun: str, n: int) -> str:
    """(noun, count) -> "house" / "houses" (English; every aerial noun takes -s)."""
    return noun if n == 1 else noun + "s"


def _number(n: int) -> str:
    """int -> English number word (digits past twelve)."""
    return NUMBER_WORDS_EN[n] if 0 <= n < len(NUMBER_WORDS_EN) else str(n)


def findings_of(spec: SceneSpec) -> tuple:
    """medical SceneSpec -> (finding id, finding type, zone) int32 [O] each, -1 padding.

    Type by shape, subtype by texture, zone by the quadrant of the center (upper = y < 0.5, left = x < 0.5).
    """
    o = spec.valid.shape[0]
    ftype = np.full(o, -1, np.int32)
    for i in np.flatnonzero(spec.valid):
        ftype[i] = _SHAPE_TO_TYPE[int(spec.shape[i])]
    fid = np.where(spec.valid, 3 * ftype + spec.texture, -1).astype(np.int32)
    zone = np.where(spec.valid, 2 * (spec.center[:, 1] >= 0.5) + (spec.center[:, 0] >= 0.5), -1).astype(np.int32)
    return fid, ftype, zone


class _Draws:
    """Cursor over a fixed window of uniforms; reads past the end wrap (deterministic)."""

    __slots__ = ("u", "i")

    def __init__(self, u):
        self.u, self.i = u, 0

    def int(self, n: int) -> int:
        """-> uniform int in [0, n)."""
        v = self.u[self.i % len(self.u)]
        self.i += 1
        return min(int(v * n), n - 1)

    def next(self) -> float:
        """-> next uniform in [0, 1)."""
        v = self.u[self.i % len(self.u)]
        self.i += 1
        return v


def _spec(o, grid, shape, color, scale, angle, center, rgb, n, style, noise_seed, domain, params) -> SceneSpec:
    """Padded per-object lists (length n) -> SceneSpec with O = o slots (cells on the layout grid, z = slot)."""
    ints = np.full((6, o), -1, np.int32)
    ints[0, :n], ints[1, :n], ints[2, :n], ints[3, :n] = shape[:n], color[:n], _SMALL, 0
    floats = np.zeros((2, o), np.float32)
    floats[0, :n], floats[1, :n] = scale[:n], angle[:n]
    cen = np.zeros((o, 2), np.float32)
    cen[:n] = np.asarray(center[:n], np.float32).reshape(n, 2)
    cidx = np.clip((cen[:n] * grid).astype(np.int64), 0, grid - 1)
    ints[4, :n] = cidx[:, 1] * grid + cidx[:, 0]
    ints[5, :n] = np.arange(n)
    col = np.zeros((o, 3), np.float32)
    col[:n] = np.asarray(rgb[:n], np.float32).reshape(n, 3)
    return SceneSpec(shape=ints[0], color=ints[1], size=ints[2], texture=ints[3], cell=ints[4], z=ints[5],
                     scale=floats[0], angle=floats[1], center=cen, mark=np.zeros((o, 2), np.int32), rgb=col,
                     valid=np.arange(o) < n, style=style, grid=grid, noise_seed=noise_seed, domain=domain,
                     domain_params=tuple(float(p) for p in params))


# ---------------------------------------------------------------------------------------------- medical
class MedicalScenes:
    """(split, index) -> medical SceneSpec: 0-3 findings at zone anchors, preferred zone with probability 0.7."""

    def __init__(self, cfg):
        self.seed, self.o, self.grid = int(cfg.seed), int(cfg.objects.max), int(cfg.layout.grid)
        self.lo, self.hi = (int(x) for x in cfg.medical.findings)
        self.style = concepts.STYLES.index(cfg.style)
        self.n_u = 1 + 9 * self.o + 12

    def sample(self, split: str, index: int) -> tuple:
        """(split, index) -> (SceneSpec, info {main})."""
        o = self.o
        u = stream_uniforms(self.seed, split, index, "attributes", self.n_u)
        n = min(self.lo + int(u[0] * (self.hi - self.lo + 1)), self.hi, o)
        w = u[1:1 + 9 * o].reshape(9, o)
        order = u[1 + 9 * o:].reshape(4, 3).argsort(1, kind="stable")    # anchor order per zone
        ftype = (w[0] * 4).astype(np.int64)
        sub = (w[1] * 3).astype(np.int64)
        pref = (3 * ftype + sub) % 4
        zone = np.where(w[2] < _PREFERRED_P, pref, (pref + 1 + (w[3] * 3).astype(np.int64)) % 4)
        used = [0, 0, 0, 0]
        center = np.zeros((o, 2))
        for i in range(n):
            z = int(zone[i])
            # NOTE: the k-th finding of a zone takes that zone's k-th anchor; a 4th one (medical.findings > 3)
            # reuses anchors with the same jitter, so it may overlap (never leaves its zone).
            center[i] = _ZONE_CENTERS[z] + _ANCHORS[order[z, used[z] % 3]] + 0.008 * (2 * w[4:6, i] - 1)
            used[z] += 1
        scale = _FINDING_SCALE * (1 + 0.1 * (2 * w[6] - 1))
        angle = np.where(ftype == 0, 0.0, 2 * np.pi * w[7])             # round findings are never rotated
        v = 0.78 + 0.14 * w[8]
        shape = np.asarray(FINDING_SHAPES)[ftype]
        us = stream_uniforms(self.seed, split, index, "style", 4)
        spec = _spec(o, self.grid, shape, np.full(o, _WHITE), scale, angle, center, np.stack([v, v, v], 1), n,
                     self.style, int(us[2] * 2**52), "medical", (us[0], 0.9 + 0.2 * us[1]))
        tex = spec.texture.copy()
        tex[:n] = sub[:n]
        spec = spec.replace(texture=tex)
        return spec, {"class": -1, "rule": -1, "composition": -1, "main": main_object(spec)}


class MedicalRaster(Raster2D):
    """Raster2D with the chest-like background and coarse finding textures (legible at 64 px)."""

    def _canvas(self, spec: SceneSpec, size: int, pad: int) -> np.ndarray:
        """-> planar float32 [3, size, size] gray field: body, lungs, ribs, mediastinum, noise."""
        c = (np.arange(size, dtype=np.float32) - pad + 0.5) / self.res
        x, y = c[None, :], c[:, None]
        rib_phase, gain = spec.domain_params[:2]
        body = np.clip((1 - ((x - 0.5) / 0.46) ** 2 - ((y - 0.6) / 0.56) ** 2) * 6, 0, 1)
        lung = np.maximum(np.clip((1 - ((x - 0.3) / 0.17) ** 2 - ((y - 0.5) / 0.33) ** 2) * 5, 0, 1),
                          np.clip((1 - ((x - 0.7) / 0.17) ** 2 - ((y - 0.5) / 0.33) ** 2) * 5, 0, 1))
        ribs = np.clip((np.cos(2 * np.pi * ((y + 0.3 * (x - 0.5) ** 2) * 7 + rib_phase)) - 0.45) * 4, 0, 1)
        med = np.clip((0.075 - np.abs(x - 0.5)) * 60, 0, 1) * (y > 0.1)
        val = 0.04 + body * (0.42 * gain - 0.26 * lung + 0.12 * ribs * lung + 0.3 * med)
        g = np.random.Generator(np.random.Philox(key=(int(spec.noise_seed), 0xC0DE)))
        val = val + 0.02 * g.standard_normal((size, size), dtype=np.float32)
        np.clip(val, 0, 1, out=val)
        return np.broadcast_to(val.astype(np.float32), (3, size, size)).copy()

    def _textures(self, tex, rgb, u, v, rho, s, d_out, ox, oy, k) -> np.ndarray:
        """Finding subtypes: striped = 1.25 bands per radius, dotted = dark holes on a 0.9-radius lattice."""
        n = rgb.shape[0]
        if not np.count_nonzero(tex):
            return rgb[:, :, None, None]
        col = np.empty((n, 3, k, k), np.float32)
        col[:] = rgb[:, :, None, None]
        for j in np.flatnonzero(tex):
            uu, vv = np.broadcast_arrays(u[j] / s[j], v[j] / s[j])
            if int(tex[j]) == 1:
                f = np.where((uu * 1.25) % 1.0 < 0.5, 1.0, 0.45)
            else:
                f = np.where(((uu / 0.9) % 1 - 0.5) ** 2 + ((vv / 0.9) % 1 - 0.5) ** 2 < 0.12, 0.45, 1.0)
            col[j] = f[None].astype(np.float32) * rgb[j][:, None, None]
        return col


def medical_report(spec: SceneSpec, split: str, index: int, seed: int, superclass_p: float) -> tuple:
    """medical SceneSpec -> (report str, int32 [48, 5] spans (start, end, type, slot, concept)).

    "a striped round calvoma in the upper left zone, suggestive of solent." per finding (the clause with
    probability `superclass_p`), or "no acute findings."; KG words (texture, finding, zone, super-class) are
    type-11 spans whose concept is the `kg.medical()` entity id, the type word a type-4 span (concept = type id).
    """
    fid, ftype, zone = findings_of(spec)
    slots = np.flatnonzero(spec.valid).tolist()
    if not slots:
        return "no acute findings.", np.full((MAX_SPANS, 5), -1, np.int32)
    u = stream_uniforms(seed, split, index, "caption", (_TEXT_WINDOW + 1) * _WINDOW)[_TEXT_WINDOW * _WINDOW:]
    n_f, n_s, n_z = len(kg.FINDINGS), len(kg.SUPERCLASSES), len(kg.ZONES)
    text, spans = [], []
    pos = 0

    def put(s: str, typ: int = -1, slot: int = -1, concept: int = -1) -> None:
        nonlocal pos
        if typ >= 0:
            spans.append((pos, pos + len(s), typ, slot, concept))
        text.append(s)
        pos += len(s)

    for k, i in enumerate(slots):
        f, t, z = int(fid[i]), int(ftype[i]), int(zone[i])
        if k:
            put(" ")
        put("a ")
        put(kg.FINDING_TEXTURES[f % 3], ENTITY_SPAN, i, n_f + n_s + n_z + f % 3)
        put(" ")
        put(kg.FINDING_TYPES[t], SHAPE_SPAN, i, t)
        put(" ")
        put(kg.FINDINGS[f], ENTITY_SPAN, i, f)
        put(" in the ")
        put(kg.ZONES[z], ENTITY_SPAN, i, n_f + n_s + z)
        put(" zone")
        if u[k % len(u)] < superclass_p:
            put(", suggestive of ")
            sc = kg.superclass(f)
            put(kg.SUPERCLASSES[sc], ENTITY_SPAN, i, n_f + sc)
        put(".")
    arr = np.full((MAX_SPANS, 5), -1, np.int32)
    if spans:
        arr[:min(len(spans), MAX_SPANS)] = np.asarray(spans[:MAX_SPANS], np.int32)
    return "".join(text), arr


# ---------------------------------------------------------------------------------------------- aerial
_GROUND = np.array([(0.50, 0.58, 0.42), (0.55, 0.50, 0.35), (0.35, 0.50, 0.30), (0.62, 0.60, 0.45),
                    (0.12, 0.28, 0.10), (0.38, 0.38, 0.40), (0.55, 0.52, 0.47), (0.86, 0.78, 0.56)], np.float32)
_WATER = np.array((0.16, 0.34, 0.58), np.float32)
_ROAD = np.array((0.45, 0.45, 0.46), np.float32)
_CROPS = np.array([(0.45, 0.62, 0.25), (0.80, 0.72, 0.35), (0.55, 0.42, 0.25), (0.30, 0.50, 0.20)], np.float32)
_N_PARAMS = 16


class AerialScenes:
    """(split, index) -> aerial SceneSpec; the scene type is the `class` stream, objects fill type-specific sites."""

    def __init__(self, cfg):
        self.seed, self.o, self.grid = int(cfg.seed), int(cfg.objects.max), int(cfg.layout.grid)
        self.n_types = int(cfg.aerial.scene_types)
        self.style = concepts.STYLES.index(cfg.style)
        self.jitter = float(cfg.color_jitter)
        self.palette = np.asarray(concepts.COLOR_RGB, np.float32) / 255
        self.n_u = _N_PARAMS + 8 * self.o + 16

    def scene_type(self, split: str, index: int) -> int:
        """(split, index) -> scene type id (no rendering)."""
        return min(int(stream_uniforms(self.seed, split, index, "class", 1)[0] * self.n_types), self.n_types - 1)

    def sample(self, split: str, index: int) -> tuple:
        """(split, index) -> (SceneSpec, info {main, scene_type, geo})."""
        o = self.o
        t = self.scene_type(split, index)
        u = stream_uniforms(self.seed, split, index, "attributes", self.n_u)
        p, w = u[:_N_PARAMS], u[_N_PARAMS:_N_PARAMS + 8 * o].reshape(8, o)
        perm = u[_N_PARAMS + 8 * o:].argsort(kind="stable")                # permutation of 16 sites
        objs, params = _AERIAL_LAYOUTS[t](p, w, perm, o)
        n = len(objs)
        shape = np.array([ob[0] for ob in objs] + [0] * (o - n), np.int64)
        color = np.array([ob[1] for ob in objs] + [0] * (o - n), np.int64)
        scale = np.array([ob[2] for ob in objs] + [0.0] * (o - n))
        angle = np.array([ob[3] for ob in objs] + [0.0] * (o - n))
        center = np.array([ob[4:6] for ob in objs] + [(0.0, 0.0)] * (o - n)).reshape(o, 2)
        rgb = np.clip(self.palette[color] + self.jitter * (2 * w[5:8].T - 1), 0, 1)
        us = stream_uniforms(self.seed, split, index, "style", 8)
        geo = (-60 + 130 * us[0], -180 + 360 * us[1], round(0.3 + 1.7 * us[2], 1), min(int(us[3] * 4), 3))
        spec = _spec(o, self.grid, shape, color, scale, angle, center, rgb, n, self.style, int(us[6] * 2**52),
                     "aerial", (t, int(us[4] * 4096), int(us[5] * 4096)) + tuple(params))
        return spec, {"class": t, "rule": -1, "composition": -1, "main": main_object(spec), "scene_type": t,
                      "geo": geo}


def _sites(perm, limit: int, n: int) -> list:
    """-> the first n site ids < limit in the order of a 16-site permutation."""
    return [int(s) for s in perm if s < limit][:n]


def _count(p0: float, lo: int, hi: int, o: int) -> int:
    """uniform count in [lo, hi] capped by the slot count o."""
    return min(lo + int(p0 * (hi - lo + 1)), hi, o)


def _residential(p, w, perm, o):
    road = 0.3 + 0.4 * p[1]
    objs = []
    for k, s in enumerate(_sites(perm, 8, _count(p[0], 3, 8, o))):
        x = 0.12 + 0.25 * (s % 4) + 0.03 * (2 * w[0, k] - 1)
        y = road + (0.1 if s >= 4 else -0.1)
        objs.append((_SQ, (_RED, _ORANGE, _BROWN, _WHITE)[int(w[1, k] * 4)], 0.035 + 0.015 * w[2, k], 0.0, x, y))
    return objs, (road,)


def _farmland(p, w, perm, o):
    px, py = 0.35 + 0.3 * p[1], 0.35 + 0.3 * p[2]
    objs = []
    for k, s in enumerate(_sites(perm, 4, _count(p[0], 0, 2, o))):
        x = (px / 2) if s % 2 == 0 else (px + 1) / 2
        y = (py / 2) if s < 2 else (py + 1) / 2
        objs.append((_SQ, _RED, 0.025 + 0.01 * w[2, k], 0.0, x, y))
    return objs, (px, py) + tuple(p[3:15])


def _river_x(y, x0, amp, freq, phase):
    """river centerline x at height y."""
    return x0 + amp * np.sin(2 * np.pi * (freq * y + phase))


def _river(p, w, perm, o):
    x0, amp, freq, phase, half = 0.3 + 0.4 * p[1], 0.06 + 0.05 * p[2], 0.8 + 0.7 * p[3], p[4], 0.06 + 0.03 * p[5]
    n = _count(p[0], 1, 3, o)
    objs = []
    for k in range(n):
        y = 0.12 + 0.76 * (k + 0.2 + 0.6 * w[0, k]) / n
        slope = amp * 2 * np.pi * freq * np.cos(2 * np.pi * (freq * y + phase))   # dx/dy of the centerline
        objs.append((_EL, _WHITE, 0.025 + 0.01 * w[2, k], math.atan2(1.0, slope), _river_x(y, x0, amp, freq, phase),
                     y))
    return objs, (x0, amp, freq, phase, half)


def _airport(p, w, perm, o):
    ry = 0.4 + 0.2 * p[1]
    objs = []
    for k, s in enumerate(_sites(perm, 8, _count(p[0], 1, 4, o))):
        objs.append((_CR, _WHITE, 0.045 + 0.015 * w[2, k], 0.0, 0.125 + 0.25 * (s % 4),
                     ry + (0.2 if s >= 4 else -0.2)))
    return objs, (ry,)


def _forest(p, w, perm, o):
    hi = min(o, 16)
    objs = []
    for k, s in enumerate(_sites(perm, 16, _count(p[0], max(1, hi - 3), hi, o))):
        x = 0.125 + 0.25 * (s % 4) + 0.05 * (2 * w[0, k] - 1)
        y = 0.125 + 0.25 * (s // 4) + 0.05 * (2 * w[1, k] - 1)
        objs.append((_CI, _GREEN, 0.045 + 0.015 * w[2, k], 0.0, x, y))
    return objs, ()


def _parking(p, w, perm, o):
    rows = (0.3 + 0.05 * (2 * p[1] - 1), 0.7 + 0.05 * (2 * p[2] - 1))
    objs = []
    for k, s in enumerate(_sites(perm, 12, _count(p[0], 3, 12, o))):
        color = int(w[1, k] * len(concepts.COLORS)) % len(concepts.COLORS)
        objs.append((_RE, color, 0.04 + 0.006 * w[2, k], np.pi / 2, 0.1 + 0.16 * (s % 6), rows[s // 6]))
    return objs, rows


def _industrial(p, w, perm, o):
    nb = _count(p[1], 1, 3, o)
    nt = _count(p[2], 1, 4, o - nb)
    objs = []
    for k, s in enumerate(_sites(perm, 9, nb + nt)):
        x, y = (s % 3 + 0.5) / 3, (s // 3 + 0.5) / 3
        if k < nb:
            objs.append((_SQ, _WHITE, 0.05 + 0.01 * w[2, k], 0.0, x, y))
        else:
            objs.append((_CI, _WHITE, 0.03 + 0.01 * w[2, k], 0.0, x, y))
    return objs, ()


def _beach(p, w, perm, o):
    bx, phase, water_left = 0.35 + 0.3 * p[1], p[2], float(p[3] < 0.5)
    sand_x = (bx + 1) / 2 + 0.03 if water_left else bx / 2 - 0.03
    water_x = bx / 2 - 0.04 if water_left else (bx + 1) / 2 + 0.04
    objs = []
    for k, s in enumerate(_sites(perm, 4, _count(p[0], 0, 4, o))):
        objs.append((_CI, (_RED, _YELLOW, _BLUE, _ORANGE)[int(w[1, k] * 4)], 0.02 + 0.008 * w[2, k], 0.0,
                     sand_x + (0.08 if s % 2 else -0.08) * min(1.0, abs(sand_x - bx) / 0.2), 0.3 if s < 2 else 0.7))
    if len(objs) < o and p[4] < 0.5:
        objs.append((_EL, _WHITE, 0.025 + 0.008 * w[2, o - 1], np.pi / 2, water_x, 0.35 + 0.3 * w[3, o - 1]))
    return objs, (bx, phase, water_left)


_AERIAL_LAYOUTS = (_residential, _farmland, _river, _airport, _forest, _parking, _industrial, _beach)


class AerialRaster(Raster2D):
    """Raster2D with aerial ground layers: value-noise ground, roads, fields, rivers, runways, bays, sand/water."""

    def __init__(self, resolution: int, antialias: bool = True, mark_size: float = 4 / 128, seed: int = 0):
        super().__init__(resolution, antialias, mark_size, seed)
        r = self.res
        g = np.random.Generator(np.random.Philox(key=(int(seed) & 0xFFFFFFFF, 0xAE41)))
        # NOTE: one periodic value-noise field per world (8x8 lattice, bilinear + fine grain); scenes roll it.
        lat = g.random((8, 8))
        c = np.arange(r) * 8 / r
        i0, f = c.astype(np.int64), (c % 1)[:, None]
        rows = lat[i0] * (1 - f) + lat[(i0 + 1) % 8] * f                         # [r, 8]
        f = f.T
        smooth = rows[:, i0] * (1 - f) + rows[:, (i0 + 1) % 8] * f               # [r, r]
        self.ground_noise = (0.7 * smooth + 0.3 * g.random((r, r))).astype(np.float32)

    def _canvas(self, spec: SceneSpec, size: int, pad: int) -> np.ndarray:
        """-> planar float32 [3, size, size] ground of the scene type plus its layers."""
        r = self.res
        prm = spec.domain_params
        t, sy, sx = int(prm[0]), int(prm[1]), int(prm[2])
        q = prm[3:]
        idx = np.arange(size) - pad
        noise = self.ground_noise[np.ix_((idx + sy) % r, (idx + sx) % r)]
        c = ((idx + 0.5) / r).astype(np.float32)
        x, y = c[None, :], c[:, None]
        canvas = _GROUND[t][:, None, None] * (0.85 + 0.3 * noise)[None]
        if t == 0:      # residential: one road with a dashed center line
            road = np.abs(y - q[0]) < 0.035
            dash = (np.abs(y - q[0]) < 0.004) & ((x * 8) % 1 < 0.5)
            canvas = np.where(road[None], _ROAD[:, None, None] * (0.95 + 0.1 * noise)[None], canvas)
            canvas = np.where(dash[None], np.float32(0.9), canvas)
        elif t == 1:    # farmland: 4 patches of parallel stripes (orientation, period, crop per patch)
            pid = 2 * (y >= q[1]) + (x >= q[0])
            orient = np.asarray(q[2:6])[pid] < 0.5
            period = 0.05 + 0.04 * np.asarray(q[6:10])[pid]
            stripe = np.where(orient, x, y) / period % 1 < 0.5
            crop = _CROPS[(np.asarray(q[10:14]) * 4).astype(np.int64) % 4][pid]        # [S, S, 3]
            field = crop.transpose(2, 0, 1) * np.where(stripe, 1.0, 0.75)[None]
            canvas = field * (0.92 + 0.16 * noise)[None]
        elif t == 2:    # river: sinuous band
            x0, amp, freq, phase, half = q[:5]
            water = np.abs(x - _river_x(y, x0, amp, freq, phase)) < half
            canvas = np.where(water[None], _WATER[:, None, None] * (0.9 + 0.2 * noise)[None], canvas)
        elif t == 3:    # airport: runway with a dashed white center line
            run = np.abs(y - q[0]) < 0.055
            line = (np.abs(y - q[0]) < 0.005) & ((x * 10) % 1 < 0.5)
            canvas = np.where(run[None], np.float32(0.3), canvas)
            canvas = np.where(line[None], np.float32(0.95), canvas)
        elif t == 5:    # parking: white bay lines between the cars of each row
            bay = ((np.abs(y - q[0]) < 0.05) | (np.abs(y - q[1]) < 0.05)) & (np.abs((x - 0.02) % 0.16) < 0.006)
            canvas = np.where(bay[None], np.float32(0.9), canvas)
        elif t == 6:    # industrial: concrete pads under the 3x3 sites
            pad_ = (np.abs((x * 3) % 1 - 0.5) < 0.3) & (np.abs((y * 3) % 1 - 0.5) < 0.3)
            canvas = np.where(pad_[None], np.float32(0.6) * (0.95 + 0.1 * noise)[None], canvas)
        elif t == 7:    # beach: sand / water split along a wavy line, a wet band at the shore
            bx, phase, water_left = q[:3]
            edge = bx + 0.04 * np.sin(2 * np.pi * (2 * y + phase))
            d = (edge - x) if water_left else (x - edge)
            canvas = np.where((d > 0)[None], _WATER[:, None, None] * (0.9 + 0.2 * noise)[None], canvas)
            canvas = np.where(((d <= 0) & (d > -0.03))[None], canvas * 0.8, canvas)
        return np.clip(canvas, 0, 1).astype(np.float32)


def aerial_counts(spec: SceneSpec) -> dict:
    """aerial SceneSpec -> {noun: count} in the scene type's noun order (zeros included)."""
    t = int(spec.domain_params[0])
    counts = {n: 0 for n in TYPE_NOUNS[t]}
    for i in np.flatnonzero(spec.valid):
        counts[NOUNS[(t, int(spec.shape[i]))]] += 1
    return counts


def _scene_phrase(t: int, counts: dict) -> str:
    """scene type + noun counts -> English phrase without keywords ("a parking lot with five cars")."""
    def few(noun):
        return f"{_number(counts[noun])} {_plural(noun, counts[noun])}"
    if t == 0:
        return f"a residential area with {few('house')} along a road"
    if t == 1:
        return "farmland with striped fields" + (f" and {few('barn')}" if counts["barn"] else "")
    if t == 2:
        return f"a river with {few('boat')}"
    if t == 3:
        return f"an airport with {few('plane')} near the runway"
    if t == 4:
        return f"a dense forest with {few('tree')}"
    if t == 5:
        return f"a parking lot with {few('car')}"
    if t == 6:
        return f"an industrial area with {few('building')} and {few('storage tank')}"
    extra = [few(nn) for nn in ("umbrella", "boat") if counts[nn]]
    return "a beach where sand meets the water" + (" with " + " and ".join(extra) if extra else "")


def aerial_caption(spec: SceneSpec, split: str, index: int, seed: int, keyword_p: float) -> str:
    """aerial SceneSpec -> caption; it names "aerial"/"satellite" with probability keyword_p (caption stream)."""
    u = stream_uniforms(seed, split, index, "caption", (_TEXT_WINDOW + 1) * _WINDOW)[_TEXT_WINDOW * _WINDOW:]
    phrase = _scene_phrase(int(spec.domain_params[0]), aerial_counts(spec))
    if u[0] < keyword_p:
        return f"{KEYWORD_PREFIXES[min(int(u[1] * 4), 3)]} {phrase}."
    return f"{phrase}."


def meta_caption(spec: SceneSpec, geo: tuple) -> str:
    """aerial SceneSpec + (lat, lon, gsd, season) -> "lat 41.20 lon -73.51, 0.6 m/px, summer: parking lot, 5 cars."."""
    t = int(spec.domain_params[0])
    counts = aerial_counts(spec)
    objs = ", ".join(f"{c} {_plural(nn, c)}" for nn, c in counts.items())
    lat, lon, gsd, season = geo
    return f"lat {lat:.2f} lon {lon:.2f}, {gsd:.1f} m/px, {SEASONS[season]}: {SCENE_TYPE_NAMES[t]}, {objs}."


# ---------------------------------------------------------------------------------------------- QA
def _area_bin(slot: int, areas) -> int:
    """slot -> 0 small / 1 medium / 2 large by visible area (annotate's thresholds); -1 without a slot."""
    if slot < 0:
        return -1
    a = float(areas[slot])
    return 0 if a < 0.01 else 1 if a < 0.03 else 2


def _medical_item(qtype, d, spec, o):
    """-> (question, answer, answer space, target slot) or None when the scene cannot support that type."""
    fid, ftype, zone = findings_of(spec)
    slots = np.flatnonzero(spec.valid).tolist()
    if qtype == "count":
        q = ("how many findings are there?", "how many findings does the image show?")[d.int(2)]
        return q, _number(len(slots)), tuple(_number(i) for i in range(o + 1)), -1
    if qtype == "zone":
        ids = fid[slots].tolist()
        cand = [i for i in slots if ids.count(int(fid[i])) == 1]
        if not cand:
            return None
        i = cand[d.int(len(cand))]
        q = ("in which zone is the {}?", "where is the {} located?")[d.int(2)].format(kg.FINDINGS[fid[i]])
        return q, kg.ZONES[zone[i]], kg.ZONES, i
    zs = zone[slots].tolist()
    cand = [i for i in slots if zs.count(int(zone[i])) == 1]
    if not cand:
        return None
    i = cand[d.int(len(cand))]
    z = kg.ZONES[zone[i]]
    if qtype == "finding_type":
        q = ("what type of finding is in the {} zone?", "which finding type is seen in the {} zone?")[d.int(2)]
        return q.format(z), kg.FINDING_TYPES[ftype[i]], kg.FINDING_TYPES, i
    q = ("what class of finding is in the {} zone?", "which super-class does the finding in the {} zone belong to?")
    return q[d.int(2)].format(z), kg.SUPERCLASSES[kg.superclass(int(fid[i]))], kg.SUPERCLASSES, i


def _aerial_item(qtype, d, spec, o, n_types):
    """-> (question, answer, answer space, target slot) for an aerial scene."""
    t = int(spec.domain_params[0])
    if qtype == "scene_type":
        q = ("what kind of area is shown?", "what type of scene is this?", "what does this tile show?")[d.int(3)]
        return q, SCENE_TYPES[t], SCENE_TYPES[:n_types], -1
    counts = aerial_counts(spec)
    noun = TYPE_NOUNS[t][d.int(len(TYPE_NOUNS[t]))]
    q = ("how many {} are there?", "how many {} can be seen?")[d.int(2)].format(_plural(noun, 2))
    return q, _number(counts[noun]), tuple(_number(i) for i in range(o + 1)), -1


def domain_qa(item, types: tuple, per_sample: int, mc: int, seed: int, split: str, index: int, areas) -> dict:
    """QA item builder -> qa/* fields shaped like annotate's: Q questions, types drawn uniformly with fallback."""
    q = per_sample
    questions, answers, choices_out = [""] * q, [""] * q, [("",) * mc] * q
    ints = np.full((5, q), -1, np.int32)          # type, template, target, area_bin, answer_index
    u = stream_uniforms(seed, split, index, "qa", max(q, 1) * _WINDOW).tolist()
    for i in range(q):
        d = _Draws(u[i * _WINDOW:(i + 1) * _WINDOW])
        start = d.int(len(types))
        for k in range(len(types)):
            qtype = types[(start + k) % len(types)]
            got = item(qtype, d)
            if got is not None:
                break
        else:
            continue
        question, answer, space, target = got
        if mc > 0:
            rest = [a for a in space if a != answer]
            picks = [answer]
            while rest and len(picks) < mc:
                picks.append(rest.pop(d.int(len(rest))))
            keys = [d.next() for _ in picks]
            choices = [picks[j] for j in sorted(range(len(picks)), key=keys.__getitem__)]
            ints[4, i] = choices.index(answer)
            question += " " + " ".join(f"({'abcdefgh'[j]}) {c}" for j, c in enumerate(choices))
            choices_out[i] = tuple(choices) + ("",) * (mc - len(choices))
        tid = QA_TYPES.index(qtype)
        questions[i], answers[i] = question, answer
        ints[0, i], ints[1, i], ints[2, i], ints[3, i] = tid, tid * 8, target, _area_bin(target, areas)
    out = {"qa/question": tuple(questions), "qa/answer": tuple(answers), "qa/type": ints[0], "qa/template": ints[1],
           "qa/target": ints[2], "qa/area_bin": ints[3]}
    if mc > 0:
        out["qa/choices"], out["qa/answer_index"] = tuple(choices_out), ints[4]
    return out


# ---------------------------------------------------------------------------------------------- config, names
def validate(cfg) -> None:
    """Raises ValueError naming the field for bad domain, domain_mix, keyword / mismatch / duplicate settings."""
    if cfg.domain not in DOMAINS + ("surgical",):
        raise ValueError(f"domain={cfg.domain!r}; valid: {', '.join(DOMAINS + ('surgical',))}")
    mix = dict(cfg.domain_mix.items())
    if cfg.domain in ("medical", "aerial") and cfg.kind != "image":
        raise ValueError(f"domain={cfg.domain!r} needs kind='image' (got kind={cfg.kind!r})")
    for d, p in mix.items():
        if d not in MIXABLE:
            raise ValueError(f"domain_mix: domain {d!r} cannot be mixed; valid: {', '.join(MIXABLE)}")
        if not isinstance(p, (int, float)) or p < 0:
            raise ValueError(f"domain_mix.{d}={p!r} must be a probability >= 0")
    if mix:
        if abs(sum(mix.values()) - 1.0) > 1e-6:
            raise ValueError(f"domain_mix probabilities sum to {sum(mix.values()):.6g}; they must sum to 1")
        if cfg.kind != "image":
            raise ValueError(f"domain_mix needs kind='image' (got kind={cfg.kind!r})")
    for name, v in (("keyword_p", cfg.keyword_p), ("caption.mismatch_p", cfg.caption.mismatch_p),
                    ("caption.duplicate_p", cfg.caption.duplicate_p),
                    ("medical.superclass_p", cfg.medical.superclass_p)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name}={v} outside [0, 1]")
    lo, hi = cfg.medical.findings
    if not 0 <= lo <= hi <= cfg.objects.max:
        raise ValueError(f"medical.findings={tuple(cfg.medical.findings)} must satisfy 0 <= lo <= hi <= "
                         f"objects.max ({cfg.objects.max})")
    if not 1 <= cfg.aerial.scene_types <= len(SCENE_TYPES):
        raise ValueError(f"aerial.scene_types={cfg.aerial.scene_types} outside 1..{len(SCENE_TYPES)}")
    active = set(mix) | {cfg.domain}
    if active & {"medical", "aerial"} and cfg.kind == "image":
        # NOTE: domain objects use canonical ids up to rectangle (9) and white / brown (8, 9), size small and
        # texture solid (+ striped, dotted for findings); multilabel and label tables are sized by these fields.
        if cfg.objects.shapes < 10:
            raise ValueError(f"objects.shapes={cfg.objects.shapes}: domains {sorted(active - {'natural'})} need >= 10")
        if cfg.objects.colors < 10:
            raise ValueError(f"objects.colors={cfg.objects.colors}: domains {sorted(active - {'natural'})} need 10")
        if "small" not in cfg.objects.sizes:
            raise ValueError(f"objects.sizes={tuple(cfg.objects.sizes)} must include 'small' for domain objects")
        need = ("solid", "striped", "dotted") if "medical" in active else ("solid",)
        if any(t not in cfg.objects.textures for t in need):
            raise ValueError(f"objects.textures={tuple(cfg.objects.textures)} must include {need}")


def domain_overrides(domain: str, cfg) -> dict:
    """(domain, base config) -> the `World.variant` overrides a natural config needs to pass `validate` in it."""
    out = {"domain": domain}
    if domain in ("medical", "aerial"):
        out["objects.shapes"] = max(int(cfg.objects.shapes), 10)
        out["objects.colors"] = max(int(cfg.objects.colors), 10)
        sizes = tuple(cfg.objects.sizes)
        if "small" not in sizes:
            out["objects.sizes"] = sizes + ("small",)
        need = ("solid", "striped", "dotted") if domain == "medical" else ("solid",)
        textures = tuple(cfg.objects.textures)
        if any(t not in textures for t in need):
            out["objects.textures"] = textures + tuple(t for t in need if t not in textures)
    return out


def class_names(task: str, lang: str, cfg) -> tuple:
    """(domain task, language) -> English class names in label order (domain names are English-only)."""
    if lang != "en":
        raise ValueError(f"class names of task {task!r} exist only in 'en' (got lang={lang!r})")
    if task == "scene_type":
        return SCENE_TYPE_NAMES[:int(cfg.aerial.scene_types)]
    return {"finding": kg.FINDINGS, "finding_type": kg.FINDING_TYPES, "zone": kg.ZONES,
            "superclass": kg.SUPERCLASSES}[task]


def templates(lang: str, kind: str) -> tuple:
    """(language, 'aerial' | 'medical') -> prompt templates with one '{}' slot (English-only)."""
    if lang != "en":
        raise ValueError(f"templates of kind {kind!r} exist only in 'en' (got lang={lang!r})")
    return TEMPLATES[kind]


# ---------------------------------------------------------------------------------------------- World glue
_CAPTION_PREFIXES = ("caption", "captions/", "captions_ml/", "spans/", "entities")


def _selected(path: str, fields: tuple) -> bool:
    """True when `path` equals a requested field or lies under one (prefix selection)."""
    return any(path == f or path.startswith(f + "/") for f in fields)


def mismatch_source(world, split: str, index: int) -> int:
    """(split, index) -> the other index whose captions this one carries (`caption.mismatch_p`), or -1.

    Uniforms 2 and 3 of the `split` stream (0 and 1 decide duplicates); the other index is never `index`.
    """
    size = world.split_size(split)
    if world.mismatch_p <= 0 or size < 2:
        return -1
    u = stream_uniforms(world.seed, split, index, "split", 4)
    if u[2] >= world.mismatch_p:
        return -1
    return (index + 1 + min(int(u[3] * (size - 1)), size - 2)) % size


def apply_mismatch(world, split: str, index: int, out: dict) -> None:
    """With probability caption.mismatch_p, replaces every caption field of `out` by those of a hashed other index."""
    other = mismatch_source(world, split, index)
    if other < 0:
        return
    keys = tuple(k for k in out if k == "caption" or k == "entities" or k.startswith(_CAPTION_PREFIXES[1:4]))
    if not keys:
        return
    if world._truthful is None:
        world._truthful = world.variant(**{"caption.mismatch_p": 0.0})
    src = world._truthful.sample(split, other, keys)
    for k in keys:
        out[k] = src[k]
    out["meta/mismatched"] = np.bool_(True)


class Domains:
    """Per-World domain state: samplers, rasters and the text of medical / aerial / mixed worlds."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.seed = int(cfg.seed)
        self.mix = tuple((d, float(cfg.domain_mix[d])) for d in DOMAINS if d in cfg.domain_mix)
        self.active = tuple(d for d, _ in self.mix) if self.mix else (cfg.domain,)
        self.cdf = np.cumsum([p for _, p in self.mix]) if self.mix else None
        self.medical = MedicalScenes(cfg) if "medical" in self.active else None
        self.aerial = AerialScenes(cfg) if "aerial" in self.active else None
        args = (cfg.resolution, cfg.antialias, cfg.marks.size, cfg.seed)
        self.rasters = {}
        if self.medical is not None:
            self.rasters["medical"] = MedicalRaster(*args)
        if self.aerial is not None:
            self.rasters["aerial"] = AerialRaster(*args)
        self.o = int(cfg.objects.max)
        self.keyword_p = float(cfg.keyword_p)
        self.superclass_p = float(cfg.medical.superclass_p)
        self.qa_q, self.qa_mc = int(cfg.qa.per_sample), int(cfg.qa.mc_choices)
        chosen = tuple(t for t in cfg.qa.types if t in MEDICAL_QA)
        self.medical_qa = chosen or MEDICAL_QA
        self.n_types = int(cfg.aerial.scene_types)

    def domain_of(self, split: str, index: int) -> str:
        """(split, scene index) -> its domain (drawn on the `split` stream, 5th uniform, when mixed)."""
        if not self.mix:
            return self.active[0]
        u = float(stream_uniforms(self.seed, split, index, "split", 5)[4])
        return self.mix[min(int(np.searchsorted(self.cdf, u, side="right")), len(self.mix) - 1)][0]

    def scene(self, world, split: str, index: int) -> tuple:
        """(split, scene index) -> (SceneSpec, info) of that index's domain."""
        d = self.domain_of(split, index)
        if d == "medical":
            return self.medical.sample(split, index)
        if d == "aerial":
            return self.aerial.sample(split, index)
        spec, info = world.scene2d.sample(split, index)
        return (spec if spec.domain == "natural" else spec.replace(domain="natural")), info

    def label(self, world, split: str, index: int, task: str) -> int:
        """(split, index, domain task) -> int label (-1 where the task does not apply), without rendering."""
        dup = world._dup_of(split, index)
        idx = dup if dup >= 0 else index
        d = self.domain_of(split, idx)
        if task == "scene_type":
            return self.aerial.scene_type(split, idx) if d == "aerial" else -1
        if d != "medical":
            return -1
        spec, info = self.medical.sample(split, idx)
        return int(self._medical_labels(spec, info["main"])[task])

    @staticmethod
    def _medical_labels(spec: SceneSpec, main: int) -> dict:
        """medical SceneSpec + main slot -> {finding, finding_type, zone, superclass} of the main finding."""
        if main < 0:
            return dict.fromkeys(MEDICAL_TASKS, -1)
        fid, ftype, zone = findings_of(spec)
        return {"finding": int(fid[main]), "finding_type": int(ftype[main]), "zone": int(zone[main]),
                "superclass": kg.superclass(int(fid[main]))}

    def num_classes(self, task: str) -> int:
        """domain task -> number of classes."""
        return self.n_types if task == "scene_type" else len(class_names(task, "en", self.cfg))

    def core(self, spec: SceneSpec, info: dict, domain: str) -> dict:
        """Domain ground truth of the active domains (padding on items of another domain)."""
        out = {}
        o = self.o
        if self.mix:
            out["meta/domain"] = np.int32(DOMAINS.index(domain))
        if self.medical is not None:
            if domain == "medical":
                fid, ftype, zone = findings_of(spec)
                labels = self._medical_labels(spec, info["main"])
            else:
                fid = ftype = zone = np.full(o, -1, np.int32)
                labels = dict.fromkeys(MEDICAL_TASKS, -1)
            out["objects/finding"], out["objects/zone"] = fid, zone
            for k in MEDICAL_TASKS:
                out[f"labels/{k}"] = np.int32(labels[k])
            ok = fid >= 0
            for name, ids, c in (("findings", fid[ok], len(kg.FINDINGS)), ("finding_types", ftype[ok], 4),
                                 ("superclass", (fid[ok] // 3 + fid[ok] % 3) % 4, len(kg.SUPERCLASSES))):
                hot = np.zeros(c, np.uint8)
                hot[ids] = 1
                out[f"multilabel/{name}"] = hot
        if self.aerial is not None:
            geo = info.get("geo", (0.0, 0.0, 0.0, -1))
            out["labels/scene_type"] = np.int32(info.get("scene_type", -1))
            out["geo/lat"], out["geo/lon"], out["geo/gsd"] = (np.float32(g) for g in geo[:3])
            out["geo/season"] = np.int32(geo[3])
        return out

    def core_spec(self) -> dict:
        """Schema of `core`."""
        out = {}
        i32, u8, f32 = np.dtype(np.int32), np.dtype(np.uint8), np.dtype(np.float32)
        if self.mix:
            out["meta/domain"] = ((), i32)
        if self.medical is not None:
            out["objects/finding"] = out["objects/zone"] = ((self.o,), i32)
            for k in MEDICAL_TASKS:
                out[f"labels/{k}"] = ((), i32)
            out["multilabel/findings"] = ((len(kg.FINDINGS),), u8)
            out["multilabel/finding_types"] = ((len(kg.FINDING_TYPES),), u8)
            out["multilabel/superclass"] = ((len(kg.SUPERCLASSES),), u8)
        if self.aerial is not None:
            out["labels/scene_type"] = ((), i32)
            out["geo/lat"] = out["geo/lon"] = out["geo/gsd"] = ((), f32)
            out["geo/season"] = ((), i32)
        return out

    def sample(self, world, split: str, index: int, fields: tuple) -> dict:
        """(split, index, fields) -> sample of a medical / aerial / mixed world (WORLD.md 3.1 + domain fields)."""
        pixels, text_fields = world._selection(fields)
        dup = world._dup_of(split, index)
        sidx = dup if dup >= 0 else index
        domain = self.domain_of(split, sidx)
        spec, info = self.scene(world, split, sidx)
        rel = world.relations(spec)
        rend = world.render(spec, masks="masks" in pixels)
        out = world._core(spec, rel, rend["area"], split, index, dup, info["main"])
        out.update(self.core(spec, info, domain))
        for k in pixels:
            out[k] = rend[k]
        if text_fields:
            out.update(self._text(world, spec, rel, info, domain, split, index, text_fields, rend))
            if world.mismatch_p > 0:
                apply_mismatch(world, split, index, out)
        return out

    def _text(self, world, spec, rel, info, domain, split, index, fields, rend) -> dict:
        """Text fields of one item: medical report + QA, or natural text with aerial caption / meta / QA."""
        out = {}
        want_qa = _selected("qa", fields)
        if domain == "medical" and self.mix:
            # NOTE: in a mix a medical item carries the union schema: natural captions describe its findings
            # as objects, `caption` / `captions/report` are the report, QA is medical.
            if world._annotate is not None:
                out.update(world._annotate.annotate(world, spec, rel, split, index,
                                                    tuple(f for f in fields if f != "qa"),
                                                    **world._pixel_kwargs(rend)))
            if self.aerial is not None and _selected("captions/meta", fields):
                out["captions/meta"] = ""
        if domain == "medical":
            report, spans = medical_report(spec, split, index, self.seed, self.superclass_p)
            if _selected("caption", fields):
                out["caption"] = report
            if _selected("captions/report", fields):
                out["captions/report"] = report
            if _selected("spans/report", fields):
                out["spans/report"] = spans
            if want_qa:
                out.update(domain_qa(lambda t, d: _medical_item(t, d, spec, self.o), self.medical_qa, self.qa_q,
                                     self.qa_mc, self.seed, split, index, rend["area"]))
            return out
        if world._annotate is not None:
            ann_fields = fields if domain == "natural" else tuple(f for f in fields if f != "qa")
            out.update(world._annotate.annotate(world, spec, rel, split, index, ann_fields,
                                                **world._pixel_kwargs(rend)))
        if self.aerial is not None and _selected("captions/meta", fields):
            out["captions/meta"] = meta_caption(spec, info["geo"]) if domain == "aerial" else ""
        if self.medical is not None:
            # NOTE: union schema of a mix with medical: empty report (padded spans) on natural / aerial items.
            if _selected("captions/report", fields):
                out["captions/report"] = ""
            if _selected("spans/report", fields):
                out["spans/report"] = np.full((MAX_SPANS, 5), -1, np.int32)
        if domain == "aerial":
            if _selected("caption", fields):
                out["caption"] = aerial_caption(spec, split, index, self.seed, self.keyword_p)
            if want_qa:
                out.update(domain_qa(lambda t, d: _aerial_item(t, d, spec, self.o, self.n_types), AERIAL_QA,
                                     self.qa_q, self.qa_mc, self.seed, split, index, rend["area"]))
        return out

    def text_spec(self, world, text_fields: tuple) -> dict:
        """Schema of the text fields of this world."""
        s, str_t = np.dtype(np.int32), str
        out = {}
        q, mc = self.qa_q, self.qa_mc
        qa = {"qa/question": ((q,), str_t), "qa/answer": ((q,), str_t), "qa/type": ((q,), s),
              "qa/template": ((q,), s), "qa/target": ((q,), s), "qa/area_bin": ((q,), s)}
        if mc > 0:
            qa.update({"qa/choices": ((q, mc), str_t), "qa/answer_index": ((q,), s)})
        if self.active == ("medical",):
            if _selected("caption", text_fields):
                out["caption"] = ((), str_t)
            if _selected("captions/report", text_fields):
                out["captions/report"] = ((), str_t)
            if _selected("spans/report", text_fields):
                out["spans/report"] = ((MAX_SPANS, 5), s)
            if _selected("qa", text_fields):
                out.update(qa)
            return out
        if world._annotate is not None:
            out.update(world._annotate_spec(text_fields))
        if self.aerial is not None and _selected("captions/meta", text_fields):
            out["captions/meta"] = ((), str_t)
        if self.medical is not None:
            if _selected("captions/report", text_fields):
                out["captions/report"] = ((), str_t)
            if _selected("spans/report", text_fields):
                out["spans/report"] = ((MAX_SPANS, 5), s)
        if _selected("qa", text_fields):
            out.update(qa)
        return out
