"""Scene sampler: (config, split, index) -> SceneSpec (WORLD.md 2.2, 2.4, 2.5).

Draw order (each on its own Philox stream): class ("class") -> count and attributes
("attributes") -> prior rules -> held-out composition exclusion -> class placement -> marks ->
layout ("layout") -> background, style and noise seed ("style"). Every stream draws a fixed number
of values, so the scene never depends on which fields a caller asks for.
"""
from __future__ import annotations

import numpy as np

from vljax.data.world import concepts
from vljax.data.world import config as config_lib
from vljax.data.world.raster2d import SHAPE_AREA
from vljax.data.world.rng import stream_uniforms
from vljax.data.world.scene_spec import SceneSpec

ATTRS = ("shape", "color", "size", "texture")
BACKGROUNDS = ("gray", "color", "gradient")
_LARGEST = max(concepts.SIZE_SCALE) * 1.1
_FREE_TRIES = 32
_BG_TRIES = 32
# NOTE: split names whose class distribution stays the training one (all others are eval splits).
TRAIN_SPLITS = ("train",)


def position_ids(center: np.ndarray) -> np.ndarray:
    """[..., 2] normalized (x, y) -> int32 [...] id into concepts.POSITIONS (3x3 partition)."""
    cell = np.clip(np.floor(np.asarray(center) * 3), 0, 2).astype(np.int32)
    return cell[..., 1] * 3 + cell[..., 0]


def object_areas(spec: SceneSpec) -> np.ndarray:
    """SceneSpec -> float64 [O] analytic (unoccluded) area of each object; 0 for padding."""
    a = SHAPE_AREA[np.maximum(spec.shape, 0)] * spec.scale.astype(np.float64) ** 2
    return np.where(spec.valid, a, 0.0)


_SHAPE_AREA = SHAPE_AREA.tolist()
_GRAY = tuple(c / 255 for c in concepts.BACKGROUND_GRAY)


def main_object(spec: SceneSpec) -> int:
    """SceneSpec -> slot of the main object (largest analytic area, ties to the lowest slot), -1 if empty."""
    n = int(np.count_nonzero(spec.valid))  # NOTE: valid slots are contiguous from 0.
    # NOTE: float64 area * scale^2 in Python floats (the same IEEE products as numpy float64); the strict
    # comparison keeps the lowest slot on ties, as argmax does.
    shapes, scales = spec.shape[:n].tolist(), spec.scale[:n].tolist()
    best, main = -1.0, -1
    for i in range(n):
        a = _SHAPE_AREA[shapes[i]] * (scales[i] * scales[i])
        if a > best:
            best, main = a, i
    return main


class Scene2D:
    """Compiled sampler: parses the config once, then `sample(split, index)` is cheap."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.seed = int(cfg.seed)
        self.o_max = int(cfg.objects.max)
        self.lo, self.hi = (int(x) for x in cfg.objects.count)
        self.values = {a: np.array([config_lib.attr_id(a, v) for v in config_lib.attr_values(a, cfg)],
                                   np.int32) for a in ATTRS}
        self.n_values = np.array([[len(self.values[a])] for a in ATTRS], np.float64)
        self.size_scale = np.asarray(concepts.SIZE_SCALE, np.float32)
        self.rules = [config_lib.parse_rule(r, cfg) for r in cfg.prior.rules]
        self.heldout = ([config_lib.parse_composition(c, cfg) for c in cfg.compositions.heldout]
                        if cfg.kind == "image" else [])
        self.grid = int(cfg.layout.grid)
        self.mode = cfg.layout.mode
        # NOTE: in "cells" layout all sizes shrink by one factor so the largest object fits its cell:
        # no overlap without rejection, and size ratios (hence size words) are kept.
        self.size_mult = min(1.0, 0.5 / (self.grid * _LARGEST)) if self.mode == "cells" else 1.0
        self.palette = np.asarray(concepts.COLOR_RGB, np.float32) / 255
        self.jitter = float(cfg.color_jitter)
        self.background = BACKGROUNDS.index(cfg.background)
        self.style = concepts.STYLES.index(cfg.style)
        self.mark_kind = cfg.marks.kind
        self.strength = float(cfg.prior.strength)
        self.rotation = bool(cfg.objects.rotation)
        self.max_overlap = float(cfg.layout.max_overlap)
        self.domain = cfg.domain
        self.n_shapes = int(cfg.objects.shapes)
        self.size_pos = {v: i for i, v in enumerate(self.values["size"].tolist())}
        self.tex_pos = {v: i for i, v in enumerate(self.values["texture"].tolist())}
        self.mark_p = float(cfg.marks.p)
        cb = cfg.class_balance
        self.class_label = cb.label or None
        self.class_values = class_values(cfg, cb.label) if cb.label else None
        if self.class_values is not None:
            c = len(self.class_values)
            if cb.mode == "uniform":
                p = np.ones(c)
            elif cb.mode == "longtail":
                p = float(cb.ratio) ** (-np.arange(c) / max(c - 1, 1))
            else:
                if len(cb.probs) != c:
                    raise ValueError(f"class_balance.probs has {len(cb.probs)} entries, label "
                                     f"{cb.label!r} has {c} classes")
                p = np.asarray(cb.probs, np.float64)
            self.class_cdf = np.cumsum(p / p.sum())
            self.class_eval = bool(cb.eval)
        g2 = self.grid * self.grid
        ci = np.arange(g2)
        self.cell_centers = np.stack([(ci % self.grid + 0.5) / self.grid, (ci // self.grid + 0.5) / self.grid], -1)
        self.n_layout = (g2 + 3 * self.o_max if self.mode == "cells"
                         else self.o_max * _FREE_TRIES * 2 + 2 * self.o_max)
        self.n_uniform = 1 + 13 * self.o_max + 2 * len(self.rules) * self.o_max + 2

    # ------------------------------------------------------------------ sampling
    def sample(self, split: str, index: int) -> tuple[SceneSpec, dict]:
        """(split, index) -> (SceneSpec padded to objects.max, info dict of sampling decisions)."""
        o = self.o_max
        info = {"class": -1, "rule": -1, "composition": -1}
        strength = 1.0 if split == "in_prior" else self.strength
        cls = None
        if self.class_values is not None:
            u = float(stream_uniforms(self.seed, split, index, "class", 1)[0])
            if split in TRAIN_SPLITS or self.class_eval:
                cls = int(np.searchsorted(self.class_cdf, u, side="right"))
            else:
                cls = int(u * len(self.class_values))
            cls = min(cls, len(self.class_values) - 1)
            info["class"] = cls

        ua = stream_uniforms(self.seed, split, index, "attributes", self.n_uniform)
        pos = 1

        def take(k):
            """-> the next k attribute uniforms."""
            nonlocal pos
            out = ua[pos:pos + k]
            pos += k
            return out

        n = self.lo + int(ua[0] * (self.hi - self.lo + 1))
        if self.class_label == "count":
            n = int(self.class_values[cls])
        idx = (take(4 * o).reshape(4, o) * self.n_values).astype(np.int64)
        attrs = {a: self.values[a][idx[j]] for j, a in enumerate(ATTRS)}
        scale_u, angle_u, fix_u = take(o), take(o), take(o)
        mark_u = take(3 * o).reshape(3, o)
        rgb_u = take(3 * o).reshape(o, 3)
        rule_u = take(2 * len(self.rules) * o).reshape(len(self.rules), 2, o)
        sel_u = take(2)
        valid = np.arange(o) < n
        constraints = []  # (slot, "row"/"col", value id, keep)

        for k, rule in enumerate(self.rules):
            n = self._apply_rule(rule, attrs, valid, n, rule_u[k], strength, constraints)
            valid = np.arange(o) < n

        if split == "counter_prior":
            if not self.rules:
                raise ValueError("split 'counter_prior' needs prior.rules")
            k = int(sel_u[0] * len(self.rules))
            info["rule"] = k
            self._violate(self.rules[k], attrs, valid, n, rule_u[k], constraints)
        if self.heldout and split != "heldout":
            self._exclude_heldout(attrs, valid, fix_u)
        if split == "heldout":
            if not self.heldout:
                raise ValueError("split 'heldout' needs compositions.heldout")
            k = int(sel_u[1] * len(self.heldout))
            info["composition"] = k
            for a, v in self.heldout[k].items():
                attrs[a][0] = v
            n = max(n, 1)
            valid = np.arange(o) < n
        if cls is not None and self.class_label != "count":
            for a, v in class_attrs(self.cfg, self.class_label, cls).items():
                attrs[a][0] = v

        scale = (self.size_scale[attrs["size"]]
                 * (1 + 0.1 * (2 * scale_u - 1)).astype(np.float32) * self.size_mult)
        if cls is not None and self.class_label.startswith("main_"):
            n, valid = self._make_main(attrs, scale, valid, n, scale_u)

        angle = (2 * np.pi * angle_u).astype(np.float32) if self.rotation else np.zeros(o, np.float32)
        mark = self._marks(attrs["color"], mark_u)
        rgb = np.take(self.palette, attrs["color"], axis=0) + (self.jitter * (2 * rgb_u - 1)).astype(np.float32)
        rgb = np.minimum(np.maximum(rgb, np.float32(0), out=rgb), np.float32(1), out=rgb)

        ul = stream_uniforms(self.seed, split, index, "layout", self.n_layout)
        cell, center, z = self._layout(ul, scale, n, constraints)
        us = stream_uniforms(self.seed, split, index, "style", 3 * _BG_TRIES + 9)
        background, bg_rgb, horizon = self._background(us)
        style = self.style
        if split == "ood_style":
            others = [i for i in range(len(concepts.STYLES)) if i != self.style]
            style = others[int(us[-1] * len(others))]
        noise_seed = int(us[-2] * 2**52)

        # NOTE: one padded block per dtype (rows are the fields) instead of a copy + fill per field.
        ints = np.empty((6, o), np.int32)
        for row, x in enumerate((attrs["shape"], attrs["color"], attrs["size"], attrs["texture"], cell, z)):
            ints[row] = x
        ints[:, n:] = -1
        floats = np.empty((2, o), np.float32)
        floats[0], floats[1] = scale, angle
        floats[:, n:] = 0
        center = center.astype(np.float32)
        center[n:] = 0
        mark = mark.astype(np.int32)
        mark[n:] = 0
        rgb = rgb.astype(np.float32)
        rgb[n:] = 0
        spec = SceneSpec(
            shape=ints[0], color=ints[1], size=ints[2], texture=ints[3], cell=ints[4], z=ints[5],
            scale=floats[0], angle=floats[1], center=center, mark=mark, rgb=rgb, valid=valid.copy(),
            background=background, background_rgb=bg_rgb, style=style,
            grid=self.grid, horizon=horizon, noise_seed=noise_seed, domain=self.domain)
        info["main"] = main_object(spec)
        return spec, info

    def labels(self, spec: SceneSpec, main: int | None = None) -> dict:
        """SceneSpec (+ its main slot if known) -> {task: int} for every label task (no rendering)."""
        m = main_object(spec) if main is None else main
        out = {"count": spec.num_objects}
        if m < 0:
            out.update({k: -1 for k in ("main_shape", "main_color", "main_color_shape", "main_size",
                                        "main_texture", "main_texture_shape", "main_position")})
            return out
        ns = self.n_shapes
        sh, co = int(spec.shape[m]), int(spec.color[m])
        si, te = self.size_pos[int(spec.size[m])], self.tex_pos[int(spec.texture[m])]
        cx, cy = float(spec.center[m, 0]), float(spec.center[m, 1])
        pos = min(int(cy * 3), 2) * 3 + min(int(cx * 3), 2)
        out.update(main_shape=sh, main_color=co, main_color_shape=co * ns + sh, main_size=si,
                   main_texture=te, main_texture_shape=te * ns + sh, main_position=pos)
        return out

    # ------------------------------------------------------------------ rules and constraints
    def _alt(self, attr: str, avoid: int, u: np.ndarray) -> np.ndarray:
        """Uniform draw of a value of `attr` other than `avoid` (per uniform in u)."""
        vals = self.values[attr] if attr in ATTRS else np.arange(3, dtype=np.int32)
        others = vals[vals != avoid]
        if others.size == 0:
            raise ValueError(f"prior.rules: no alternative to {attr}={avoid} among enabled values")
        return others[(u * others.size).astype(np.int64)]

    def _apply_rule(self, rule, attrs, valid, n, u, strength, constraints) -> int:
        """Applies one prior rule in place; returns the (possibly increased) object count."""
        p_attr, p_id = rule["premise"]
        c_attr, c_id = rule["consequence"]
        holds = valid & (attrs[p_attr] == p_id)
        if not holds.any():
            return n
        keep = u[0] < strength
        if rule["cooccur"]:
            # NOTE: scene-level rule: one uniform decides whether another object carries the consequence.
            holder = int(np.flatnonzero(holds)[0])
            others = valid.copy()
            others[holder] = False
            present = others & (attrs[c_attr] == c_id)
            if keep[0] and not present.any():
                if n < self.hi and self.class_label != "count":  # NOTE: a count class fixes n
                    target, n = n, n + 1
                elif n > 1:
                    target = n - 1 if holder != n - 1 else n - 2
                else:
                    return n
                attrs[c_attr][target] = c_id
            elif not keep[0] and present.any():
                attrs[c_attr][present] = self._alt(c_attr, c_id, u[1])[present]
            return n
        if c_attr in ATTRS:
            new = np.where(keep, c_id, self._alt(c_attr, c_id, u[1]))
            attrs[c_attr][:] = np.where(holds, new, attrs[c_attr])
        else:
            for slot in np.flatnonzero(holds):
                constraints.append((int(slot), c_attr, c_id, bool(keep[slot])))
        return n

    def _violate(self, rule, attrs, valid, n, u, constraints) -> None:
        """counter_prior: forces the premise on object 0 and violates the consequence for it."""
        p_attr, p_id = rule["premise"]
        c_attr, c_id = rule["consequence"]
        attrs[p_attr][0] = p_id
        if rule["cooccur"]:
            present = valid & (attrs[c_attr] == c_id)
            present[0] = False
            attrs[c_attr][present] = self._alt(c_attr, c_id, u[1])[present]
        elif c_attr in ATTRS:
            attrs[c_attr][0] = self._alt(c_attr, c_id, u[1])[0]
        else:
            constraints[:] = [c for c in constraints if c[0] != 0]
            constraints.append((0, c_attr, c_id, False))

    def _exclude_heldout(self, attrs, valid, u) -> None:
        """Conditional sampling: redraws one attribute of any object forming a held-out composition."""
        for slot in np.flatnonzero(valid):
            hit = [c for c in self.heldout if all(attrs[a][slot] == v for a, v in c.items())]
            if not hit:
                continue
            # NOTE: the redrawn attribute is color when the composition names one, else its first attribute.
            attr = "color" if "color" in hit[0] else next(iter(hit[0]))
            ok = []
            for val in self.values[attr]:
                trial = {a: attrs[a][slot] for a in ATTRS}
                trial[attr] = val
                if not any(all(trial[a] == v for a, v in c.items()) for c in self.heldout):
                    ok.append(val)
            if not ok:
                raise ValueError(f"compositions.heldout excludes every {attr} for slot attributes "
                                 f"{ {a: int(attrs[a][slot]) for a in ATTRS} }")
            attrs[attr][slot] = ok[int(u[slot] * len(ok))]

    def _make_main(self, attrs, scale, valid, n, u) -> tuple[int, np.ndarray]:
        """Class-balanced main_* labels: shrinks, then drops, objects at least as large as object 0."""
        area = SHAPE_AREA[attrs["shape"]] * scale.astype(np.float64) ** 2
        smallest = int(self.values["size"].min())
        keep = valid.copy()
        for j in range(1, n):
            if area[j] >= area[0]:
                attrs["size"][j] = smallest
                scale[j] = concepts.SIZE_SCALE[smallest] * (1 + 0.1 * (2 * u[j] - 1)) * self.size_mult
                if SHAPE_AREA[attrs["shape"][j]] * float(scale[j]) ** 2 >= area[0]:
                    keep[j] = False
        if keep.all() or keep[:n].all():
            return n, valid
        order = np.concatenate([np.flatnonzero(keep), np.flatnonzero(~keep)])
        for a in ATTRS:
            attrs[a][:] = attrs[a][order]
        scale[:] = scale[order]
        n = int(keep.sum())
        return n, np.arange(self.o_max) < n

    def _marks(self, color, u) -> np.ndarray:
        """Per-object (kind, value) marks; kind 0 = none."""
        o = self.o_max
        mark = np.zeros((o, 2), np.int32)
        if self.mark_kind == "none":
            return mark
        on = u[0] < self.mark_p
        if self.mark_kind == "any":
            kind = 1 + (u[1] * 3).astype(np.int32)
        else:
            kind = np.full(o, concepts.MARK_KINDS.index(self.mark_kind), np.int32)
        n_col = len(concepts.COLORS)
        dot_val = (color + 1 + (u[2] * (n_col - 1)).astype(np.int32)) % n_col  # never the object color
        val = np.select([kind == 1, kind == 2], [dot_val, (u[2] * 10).astype(np.int32)],
                        1 + (u[2] * 4).astype(np.int32))
        mark[:, 0] = np.where(on, kind, 0)
        mark[:, 1] = np.where(on, val, 0)
        return mark

    # ------------------------------------------------------------------ layout and background
    def _band(self, attr: str, value: int, keep: bool, u: float) -> tuple[float, float]:
        """Row/col constraint -> allowed [lo, hi) interval of that coordinate."""
        if not keep:
            value = [v for v in range(3) if v != value][int(u * 2)]
        return value / 3, (value + 1) / 3

    def _layout(self, uu: np.ndarray, scale, n, constraints):
        """-> cell int32 [O], center float32 [O, 2], z int32 [O]."""
        o, grid = self.o_max, self.grid
        cons = {c[0]: c[1:] for c in constraints}
        if self.mode == "cells":
            perm = uu[:grid * grid].argsort(kind="stable")
            jit = uu[grid * grid:grid * grid + 2 * o].reshape(o, 2)
            band_u = uu[grid * grid + 2 * o:]
            cell = np.full(o, -1, np.int64)
            used = np.zeros(grid * grid, bool)
            bands = {}
            for slot in sorted(cons, key=lambda s: s):
                if slot >= n:
                    continue
                attr, val, keep = cons[slot]
                lo, hi = self._band(attr, val, keep, band_u[slot])
                bands[slot] = (attr, lo, hi)
                cc = (perm % grid + 0.5) / grid if attr == "col" else (perm // grid + 0.5) / grid
                for c, coord in zip(perm, cc):
                    if not used[c] and lo <= coord < hi:
                        cell[slot], used[c] = c, True
                        break
            if bands:
                free = [c for c in perm.tolist() if not used[c]]
                for slot in range(n):
                    if cell[slot] < 0:
                        cell[slot] = free.pop(0)
            else:
                cell[:n] = perm[:n]
            slack = np.maximum(0.5 / grid - scale, 0)
            cidx = np.maximum(cell, 0)
            center = np.take(self.cell_centers, cidx, axis=0) + (2 * jit - 1) * slack[:, None]
            for slot, (attr, lo, hi) in bands.items():
                axis = 1 if attr == "row" else 0
                center[slot, axis] = np.clip(center[slot, axis], lo, np.nextafter(hi, 0))
            z = np.arange(o)
            return cell, center, z
        # free layout: uniform centers keeping the object inside the image, bounded tries
        cand = uu[:o * _FREE_TRIES * 2].reshape(o, _FREE_TRIES, 2)
        z_u = uu[o * _FREE_TRIES * 2:o * _FREE_TRIES * 2 + o]
        band_u = uu[-o:]
        center = np.zeros((o, 2))
        for i in range(n):
            s = float(scale[i])
            lo, hi = np.array([s, s]), np.array([1 - s, 1 - s])
            if i in cons:
                attr, val, keep = cons[i]
                blo, bhi = self._band(attr, val, keep, band_u[i])
                ax = 1 if attr == "row" else 0
                lo[ax], hi[ax] = max(lo[ax], blo), min(hi[ax], bhi)
                if lo[ax] > hi[ax]:
                    lo[ax] = hi[ax] = (blo + bhi) / 2
            c = lo + cand[i] * (hi - lo)                                  # [T, 2]
            if i == 0:
                center[0] = c[0]
                continue
            iou = _box_iou(c, s, center[:i], scale[:i]).max(1)            # [T]
            ok = np.flatnonzero(iou <= self.max_overlap + 1e-9)
            center[i] = c[ok[0]] if ok.size else c[int(np.argmin(iou))]
        cidx = np.clip((center * grid).astype(np.int64), 0, grid - 1)
        cell = cidx[:, 1] * grid + cidx[:, 0]
        z = np.argsort(np.argsort(z_u[:n]))
        return cell, center, np.concatenate([z, np.full(o - n, -1)])

    def _background(self, u) -> tuple[int, tuple, float]:
        """-> (background id, background rgb tuple, horizon)."""
        if self.background == 0:
            return 0, _GRAY, 0.5
        if self.background == 1:
            cand = (60 + 140 * u[:3 * _BG_TRIES].reshape(_BG_TRIES, 3)) / 255
            enabled = self.palette[self.values["color"]]
            dist = np.linalg.norm(cand[:, None] - enabled[None], axis=-1).min(1) * 255
            ok = np.flatnonzero(dist >= 60)
            pick = cand[ok[0]] if ok.size else np.asarray(concepts.BACKGROUND_GRAY) / 255
            return 1, tuple(float(x) for x in pick), 0.5
        j = u[3 * _BG_TRIES:3 * _BG_TRIES + 7]
        top = np.array([135, 170, 205]) / 255 + 0.06 * (2 * j[:3] - 1)
        bottom = np.array([125, 110, 80]) / 255 + 0.06 * (2 * j[3:6] - 1)
        return 2, tuple(float(x) for x in np.concatenate([top, bottom])), float(0.5 + 0.1 * (2 * j[6] - 1))


def _box_iou(c: np.ndarray, s: float, centers: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """[T, 2] candidate centers (radius s) x [M, 2] placed (radii [M]) -> [T, M] IoU of circumradius boxes."""
    lo = np.maximum(c[:, None] - s, centers[None] - scales[None, :, None])
    hi = np.minimum(c[:, None] + s, centers[None] + scales[None, :, None])
    inter = np.prod(np.clip(hi - lo, 0, None), -1)
    union = 4 * s * s + 4 * scales[None] ** 2 - inter
    return inter / union


def class_values(cfg, label: str) -> list:
    """(config, label) -> list of class values (count: object counts; else class ids 0..C-1)."""
    ns, nc = cfg.objects.shapes, cfg.objects.colors
    sizes = config_lib.attr_values("size", cfg)
    textures = config_lib.attr_values("texture", cfg)
    table = {"main_shape": ns, "main_color": nc, "main_color_shape": nc * ns, "main_size": len(sizes),
             "main_texture": len(textures), "main_texture_shape": len(textures) * ns,
             "main_position": 9}
    if label == "count":
        lo, hi = cfg.objects.count
        return list(range(lo, hi + 1))
    if label not in table:
        raise ValueError(f"unknown label task {label!r}; valid: {', '.join(list(table) + ['count'])}")
    return list(range(table[label]))


def class_attrs(cfg, label: str, cls: int) -> dict:
    """(label, class id) -> {attribute: canonical id} that object 0 must carry."""
    ns = cfg.objects.shapes
    sizes = [concepts.SIZES.index(v) for v in config_lib.attr_values("size", cfg)]
    textures = [concepts.TEXTURES.index(v) for v in config_lib.attr_values("texture", cfg)]
    if label == "main_shape":
        return {"shape": cls}
    if label == "main_color":
        return {"color": cls}
    if label == "main_color_shape":
        return {"color": cls // ns, "shape": cls % ns}
    if label == "main_size":
        return {"size": sizes[cls]}
    if label == "main_texture":
        return {"texture": textures[cls]}
    if label == "main_texture_shape":
        return {"texture": textures[cls // ns], "shape": cls % ns}
    raise ValueError(f"class_balance.label={label!r} cannot be class-conditioned")


def sample_scene(cfg, split: str, index: int) -> tuple[SceneSpec, dict]:
    """(config, split, index) -> (SceneSpec, info); builds a Scene2D (use World for repeated calls)."""
    return Scene2D(cfg).sample(split, index)
