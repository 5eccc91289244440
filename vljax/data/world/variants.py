"""Contrast, preference and counterfactual variants; constructed splits (WORLD.md 2.4, 3.4).

Every variant is `world.render(spec)` of an edited `SceneSpec`: an edit touches only the slots it names, so
only their pixels (or, for count / swap edits, the pixels of the moved, added or removed objects) change.
Each variant reads its own stream (`contrast`, `preference`, `counterfactual`); constructed splits read the
`split` stream from offset `_SPLIT_OFFSET` (the first two uniforms belong to `caption.duplicate_p`).
"""
from __future__ import annotations

import numpy as np

from vljax.data.world import concepts
from vljax.data.world import config as config_lib
from vljax.data.world.language import realize as rz
from vljax.data.world.language.realize import NP
from vljax.data.world.rng import stream_uniforms
from vljax.data.world.scene_spec import SceneSpec

# NOTE: ids are data (`contrast/factor`); append only. direction / order are video factors (kind "video").
CONTRAST_FACTORS = ("color", "shape", "size", "texture", "swap_lr", "swap_positions", "count_plus", "count_minus",
                    "mark", "direction", "order")
IMAGE_FACTORS = CONTRAST_FACTORS[:9]
PREF_EDITS = ("add_partner", "recolor", "count", "swap_lr")
CF_STYLES = ("clean", "outlined", "texture_noise")
CONSTRUCTED_SPLITS = ("novel", "pairs", "cf")
_OBJ_KEYS = ("shape", "color", "size", "texture", "cell", "z", "scale", "angle", "area", "center", "mark", "valid")
_SPLIT_OFFSET = 8
_N_U = 64
_PREF_PROMPTS = ("describe the image .", "what objects are in this picture and where are they ?",
                 "list everything you see in the image .")
_ROW_WORDS = ("at the top", "in the middle", "at the bottom")
_COL_WORDS = ("on the left", "in the middle", "on the right")


class _U:
    """Sequential reader of a fixed uniform array (wraps; never touches another stream)."""

    def __init__(self, u: np.ndarray):
        self.u, self.i = u.tolist(), 0

    def next(self) -> float:
        """-> next uniform in [0, 1)."""
        v = self.u[self.i % len(self.u)]
        self.i += 1
        return v

    def pick(self, seq):
        """-> one element of a non-empty sequence."""
        return seq[min(int(self.next() * len(seq)), len(seq) - 1)]


# ---------------------------------------------------------------------------------------------- spec edits
def _arrays(spec: SceneSpec) -> dict:
    """SceneSpec -> writable copies of its per-slot arrays."""
    return {k: getattr(spec, k).copy() for k in ("shape", "color", "size", "texture", "cell", "z", "scale", "angle",
                                                 "center", "mark", "rgb", "valid")}


def _fit(world, center: np.ndarray, cell: int, scale: float) -> np.ndarray:
    """Keeps an object of circumradius `scale` inside its layout cell (cells) or the image (free) -> [2]."""
    if world.cfg.layout.mode == "cells":
        g = int(world.cfg.layout.grid)
        cc = np.array([(cell % g + 0.5) / g, (cell // g + 0.5) / g])
        slack = max(0.5 / g - scale, 0.0)
        return (cc + np.clip(center - cc, -slack, slack)).astype(np.float32)
    return np.clip(center, scale, 1 - scale).astype(np.float32)


def _rgb(world, color: int, u: float) -> np.ndarray:
    """color id -> float32 [3] jittered fill color (one uniform shared by the channels)."""
    base = np.asarray(concepts.COLOR_RGB[color], np.float32) / 255
    return np.clip(base + np.float32(world.cfg.color_jitter * (2 * u - 1)), 0, 1).astype(np.float32)


def _other_value(world, attr: str, old: int, u: _U) -> int | None:
    """-> an enabled value of attr other than old, or None."""
    vals = [int(v) for v in world.scene2d.values[attr] if int(v) != old]
    return u.pick(vals) if vals else None


def _set_size(world, a: dict, slot: int, new: int) -> None:
    """Sets a slot's size id and rescales (keeps its jitter factor), refitting it into its cell."""
    old = int(a["size"][slot])
    a["scale"][slot] = np.float32(a["scale"][slot] * concepts.SIZE_SCALE[new] / concepts.SIZE_SCALE[old])
    a["size"][slot] = new
    a["center"][slot] = _fit(world, a["center"][slot], int(a["cell"][slot]), float(a["scale"][slot]))


def _free_cells(world, a: dict) -> list:
    """-> layout cells no valid object occupies (cells layout)."""
    g = int(world.cfg.layout.grid)
    used = set(a["cell"][a["valid"]].tolist())
    return [c for c in range(g * g) if c not in used]


def _add_object(world, a: dict, u: _U) -> bool:
    """Adds one object in slot n (a free cell, or a free-layout spot within `layout.max_overlap`); False if none."""
    n, o = int(a["valid"].sum()), a["valid"].shape[0]
    if n >= o:
        return False
    vals = world.scene2d.values
    shape, color, size = u.pick(vals["shape"].tolist()), u.pick(vals["color"].tolist()), u.pick(vals["size"].tolist())
    texture = u.pick(vals["texture"].tolist())
    scale = float(concepts.SIZE_SCALE[size] * (1 + 0.1 * (2 * u.next() - 1)) * world.scene2d.size_mult)
    if world.cfg.layout.mode == "cells":
        free = _free_cells(world, a)
        if not free:
            return False
        cell = u.pick(free)
        g = int(world.cfg.layout.grid)
        slack = max(0.5 / g - scale, 0.0)
        center = _fit(world, np.array([(cell % g + 0.5) / g + (2 * u.next() - 1) * slack,
                                       (cell // g + 0.5) / g + (2 * u.next() - 1) * slack]), cell, scale)
        z = n
    else:
        center = None
        for _ in range(16):
            c = np.array([scale + u.next() * (1 - 2 * scale), scale + u.next() * (1 - 2 * scale)])
            lo = np.maximum(c - scale, a["center"][:n] - a["scale"][:n, None])
            hi = np.minimum(c + scale, a["center"][:n] + a["scale"][:n, None])
            inter = np.prod(np.clip(hi - lo, 0, None), -1)
            iou = inter / (4 * scale ** 2 + 4 * a["scale"][:n] ** 2 - inter) if n else np.zeros(0)
            if not n or iou.max() <= world.cfg.layout.max_overlap + 1e-9:
                center = c.astype(np.float32)
                break
        if center is None:
            return False
        g = int(world.cfg.layout.grid)
        cidx = np.clip((center * g).astype(np.int64), 0, g - 1)
        cell = int(cidx[1] * g + cidx[0])
        z = int(a["z"][:n].max()) + 1 if n else 0
    a["shape"][n], a["color"][n], a["size"][n], a["texture"][n] = shape, color, size, texture
    a["cell"][n], a["z"][n], a["scale"][n] = cell, z, scale
    a["angle"][n] = np.float32(2 * np.pi * u.next()) if world.cfg.objects.rotation else 0.0
    a["center"][n], a["mark"][n], a["rgb"][n], a["valid"][n] = center, (0, 0), _rgb(world, color, u.next()), True
    return True


def _remove_object(a: dict, slot: int) -> None:
    """Removes a slot and compacts the later ones down (valid slots stay contiguous from 0)."""
    n = int(a["valid"].sum())
    for k, v in a.items():
        v[slot:n - 1] = v[slot + 1:n].copy()
        v[n - 1] = False if k == "valid" else (-1 if v.dtype.kind == "i" and k not in ("mark",) else 0)
    if n - 1 > 0 and a["z"][0] >= 0:
        # NOTE: paint order stays a permutation of 0..n-2 (free layout ranks; cells layout keeps arange).
        a["z"][:n - 1] = np.argsort(np.argsort(a["z"][:n - 1], kind="stable"), kind="stable")


def _spec(spec: SceneSpec, a: dict) -> SceneSpec:
    """base SceneSpec + edited arrays -> new SceneSpec."""
    return spec.replace(**a)


def _describe(o) -> tuple:
    return (int(o[0]), int(o[1]), int(o[2]), int(o[3]))


def contrast_factors(world, spec: SceneSpec) -> list:
    """-> the IMAGE_FACTORS names that can change this scene."""
    n = spec.num_objects
    vals = world.scene2d.values
    out = []
    if n:
        out += [f for f in ("color", "shape", "size", "texture") if len(vals[f]) > 1]
        rel = world.relations(spec)
        if (rel[:, 1] == concepts.RELATIONS.index("left_of")).any():
            out.append("swap_lr")
        keys = {(int(spec.shape[i]), int(spec.color[i]), int(spec.size[i]), int(spec.texture[i])) for i in range(n)}
        if len(keys) > 1:
            out.append("swap_positions")
    if n < spec.valid.shape[0] and (world.cfg.layout.mode != "cells" or len(_free_cells(world, _arrays(spec)))):
        out.append("count_plus")
    if n >= 2:
        out.append("count_minus")
    if n:
        out.append("mark")
    return [f for f in IMAGE_FACTORS if f in out]


def contrast_edit(world, spec: SceneSpec, u: _U, factor: str) -> tuple:
    """(scene, uniforms, factor name) -> (edited SceneSpec, int32 [2] edited slots, -1 padded)."""
    if factor not in IMAGE_FACTORS:
        raise ValueError(f"contrast factor {factor!r} is not an image factor; valid: {', '.join(IMAGE_FACTORS)}")
    a = _arrays(spec)
    n = spec.num_objects
    slots = [-1, -1]
    if factor in ("color", "shape", "size", "texture", "mark"):
        k = int(u.next() * n)
        slots[0] = k
        if factor == "color":
            a["color"][k] = _other_value(world, "color", int(a["color"][k]), u)
            a["rgb"][k] = _rgb(world, int(a["color"][k]), u.next())
        elif factor in ("shape", "texture"):
            a[factor][k] = _other_value(world, factor, int(a[factor][k]), u)
        elif factor == "size":
            _set_size(world, a, k, _other_value(world, "size", int(a["size"][k]), u))
        elif a["mark"][k, 0] != 0:
            a["mark"][k] = (0, 0)
        else:
            kind = world.cfg.marks.kind
            kind = concepts.MARK_KINDS.index(kind) if kind in concepts.MARK_KINDS[1:] else 1 + int(u.next() * 3)
            n_col = len(concepts.COLORS)
            val = ((int(a["color"][k]) + 1 + int(u.next() * (n_col - 1))) % n_col if kind == 1
                   else int(u.next() * 10) if kind == 2 else 1 + int(u.next() * 4))
            a["mark"][k] = (kind, val)
    elif factor == "swap_lr":
        # NOTE: a mirror of the layout: every object keeps its look, left/right relations all flip.
        g = int(world.cfg.layout.grid)
        v = a["valid"]
        a["center"][v, 0] = 1 - a["center"][v, 0]
        col, row = a["cell"][v] % g, a["cell"][v] // g
        a["cell"][v] = row * g + (g - 1 - col)
        slots = [0, n - 1]
    elif factor == "swap_positions":
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)
                 if _describe((a["shape"][i], a["color"][i], a["size"][i], a["texture"][i]))
                 != _describe((a["shape"][j], a["color"][j], a["size"][j], a["texture"][j]))]
        i, j = u.pick(pairs)
        ci, cj = a["center"][i].copy(), a["center"][j].copy()
        a["cell"][i], a["cell"][j] = a["cell"][j], a["cell"][i]
        a["center"][i] = _fit(world, cj, int(a["cell"][i]), float(a["scale"][i]))
        a["center"][j] = _fit(world, ci, int(a["cell"][j]), float(a["scale"][j]))
        slots = [i, j]
    elif factor == "count_plus":
        if not _add_object(world, a, u):
            raise ValueError("contrast count_plus: no room for another object in this scene")
        slots[0] = n
    else:  # count_minus
        k = int(u.next() * n)
        _remove_object(a, k)
        slots[0] = k
    return _spec(spec, a), np.asarray(slots, np.int32)


def counter_prior_edit(world, spec: SceneSpec, split: str, index: int, u: _U) -> tuple | None:
    """Scene of split `counter_prior` -> (factor, in-prior SceneSpec, int32 [2] slots) or None.

    Object 0 holds the premise of the violated rule and breaks its consequence; the edit sets the consequence
    attribute back to the rule's value, so the changed factor crosses the prior (S-VCO counter-prior pair). None for
    co-occurrence and row / col rules (no single attribute factor crosses them).
    """
    k = int(world.scene_info(split, index).get("rule", -1))
    if k < 0:
        return None
    rule = config_lib.parse_rule(world.cfg.prior.rules[k], world.cfg)
    c_attr, c_id = rule["consequence"]
    if rule["cooccur"] or c_attr not in ("color", "shape", "size", "texture") or not spec.valid[0]:
        return None
    a = _arrays(spec)
    _attr_set(world, a, 0, c_attr, c_id)
    if c_attr == "color":
        a["rgb"][0] = _rgb(world, c_id, u.next())
    return c_attr, _spec(spec, a), np.asarray([0, -1], np.int32)


def contrast_spec(world, spec: SceneSpec, split: str, index: int, factor: str | None = None) -> tuple:
    """-> (factor name, edited SceneSpec, int32 [2] edited slots); factor None = drawn among the applicable ones.

    In split `counter_prior` the drawn contrast is the in-prior twin (`counter_prior_edit`) when the violated rule
    has an attribute consequence.
    """
    u = _U(stream_uniforms(world.seed, split, index, "contrast", _N_U))
    pick = u.next()
    if factor is None and split == "counter_prior":
        crossed = counter_prior_edit(world, spec, split, index, u)
        if crossed is not None:
            return crossed
    if factor is None:
        options = contrast_factors(world, spec)
        if not options:
            raise ValueError(f"contrast: scene {split}/{index} admits no contrast factor")
        factor = options[min(int(pick * len(options)), len(options) - 1)]
    new, slots = contrast_edit(world, spec, u, factor)
    return factor, new, slots


def contrast(world, spec: SceneSpec, split: str, index: int, fields: tuple, factor: str | None = None) -> dict:
    """-> contrast/{factor,slots,image,caption,objects/*}: the scene re-rendered with exactly one factor changed."""
    factor, new, slots = contrast_spec(world, spec, split, index, factor)
    out = {"contrast/factor": np.int32(CONTRAST_FACTORS.index(factor)), "contrast/slots": slots}
    want = lambda p: any(p == f or p.startswith(f + "/") or f.startswith(p + "/") for f in fields)  # noqa: E731
    rend = world.render(new) if want("contrast/image") or want("contrast/objects") else None
    if want("contrast/image"):
        out["contrast/image"] = rend["image"]
    if want("contrast/caption"):
        from vljax.data.world import annotate  # NOTE: local import: annotate imports this module.
        out["contrast/caption"] = annotate.caption_text(world, new, world.relations(new), split, index, "long")
    if want("contrast/objects"):
        for k in _OBJ_KEYS:
            out[f"contrast/objects/{k}"] = rend["area"] if k == "area" else getattr(new, k)
    return out


# NOTE: what a model would see of the scene; ground truth (masks, boxes, objects) stays for the evaluator.
BLIND_PIXELS = ("image", "contrast/image", "cf/factual_image", "cf/images")


def blind(sample: dict) -> dict:
    """sample dict -> its blind variant (S-VCO, VLind): `has_image` False, every image of BLIND_PIXELS zeroed."""
    out = dict(sample)
    out["has_image"] = np.bool_(False)
    for k in BLIND_PIXELS:
        if k in out:
            out[k] = np.zeros_like(out[k])
    return out


# ---------------------------------------------------------------------------------------------- preference (POVID)
def _flip_col(position: int) -> int:
    """position id -> the same row, mirrored column."""
    return (position // 3) * 3 + (2 - position % 3)


def preference(world, ctx, spec: SceneSpec, objs: list, split: str, index: int) -> dict:
    """-> pref/{prompt,chosen,rejected,edits,random_rejected}: true description vs its rule-edited version."""
    from vljax.data.world import annotate as ann  # NOTE: local import: annotate imports this module.
    u = _U(stream_uniforms(world.seed, split, index, "preference", _N_U))
    prompt = u.pick(_PREF_PROMPTS)
    variant = int(u.next() * 3)
    nps = ann._groups(ctx, objs, True)
    chosen = rz.frame_text("LIST", "en", variant, nps=nps) if nps else rz.frame_text("GENERIC", "en", 0)
    present = {o.shape for o in objs}
    absent = [s for s in ctx.shapes if s not in present]
    can = [bool(absent) and ctx.name["shape"], bool(nps) and ctx.name["color"] and len(ctx.colors) > 1,
           bool(nps) and ctx.name["count"],
           any(x.position is not None and x.position % 3 != 1 for x in nps)]
    flags = [c and u.next() < 0.5 for c in can]
    if not any(flags) and any(can):
        flags[u.pick([i for i, c in enumerate(can) if c])] = True
    edited = list(nps)
    if flags[1]:
        i = int(u.next() * len(edited))
        edited[i] = edited[i]._replace(color=u.pick([c for c in ctx.colors if c != edited[i].color]))
    if flags[2]:
        i = int(u.next() * len(edited))
        c = edited[i].count
        edited[i] = edited[i]._replace(count=2 if c == 1 else c + (1 if u.next() < 0.5 else -1))
    if flags[3]:
        i = u.pick([j for j, x in enumerate(edited) if x.position is not None and x.position % 3 != 1])
        edited[i] = edited[i]._replace(position=_flip_col(edited[i].position))
    if flags[0]:
        partners = [b for a in sorted(present) for b in ctx.partners.get(a, []) if b in absent]
        fam = [b for f in concepts.SHAPE_FAMILIES.values() for b in absent
               if concepts.SHAPES[b] in f and any(concepts.SHAPES[x] in f for x in present)]
        shape = (partners or fam or [u.pick(absent)])[0]
        nm = ctx.name
        edited.append(NP(count=1 if nm["count"] else None, size=u.pick(ctx.sizes) if nm["size"] else None,
                         color=u.pick(ctx.colors) if nm["color"] else None,
                         texture=u.pick(ctx.textures) if nm["texture"] else None, shape=shape,
                         position=int(u.next() * 9) if nm["position"] else None))
    rejected = rz.frame_text("LIST", "en", variant, nps=edited) if edited else chosen
    size = world.split_size(split) if split in world.cfg.split_sizes else index + 2
    j = (index + 1 + int(u.next() * max(size - 1, 1))) % max(size, 1)
    other = ann._groups(ctx, ann._objects(world.scene(split, j)), True)
    rand = rz.frame_text("LIST", "en", variant, nps=other) if other else rz.frame_text("GENERIC", "en", 0)
    return {"pref/prompt": prompt, "pref/chosen": chosen, "pref/rejected": rejected,
            "pref/edits": np.asarray(flags, np.int32), "pref/random_rejected": rand}


# ---------------------------------------------------------------------------------------------- counterfactual
def cf_rules(world) -> list:
    """-> [(rule index, parsed rule)] usable for counterfactuals (attribute or row/col consequences)."""
    out = []
    for k, text in enumerate(world.cfg.prior.rules):
        r = config_lib.parse_rule(text, world.cfg)
        if not r["cooccur"]:
            out.append((k, r))
    return out


def _attr_set(world, a: dict, slot: int, attr: str, value: int) -> None:
    """Sets one object attribute (size rescales, color re-tints)."""
    if attr == "size":
        _set_size(world, a, slot, value)
    else:
        a[attr][slot] = value
        if attr == "color":
            a["rgb"][slot] = _rgb(world, value, 0.5)


def _move_band(world, a: dict, slot: int, axis: int, band: int) -> None:
    """Moves a slot so its center lies in row (axis 1) / column (axis 0) `band` of the 3x3 partition."""
    lo, hi = band / 3, (band + 1) / 3
    c = a["center"][slot]
    if lo <= c[axis] < hi:
        return
    n = int(a["valid"].sum())
    if world.cfg.layout.mode == "cells":
        g = int(world.cfg.layout.grid)
        coord = lambda cell: ((cell % g if axis == 0 else cell // g) + 0.5) / g  # noqa: E731
        cur = int(a["cell"][slot])
        keep = cur // g if axis == 0 else cur % g
        cands = [c_ for c_ in range(g * g) if lo <= coord(c_) < hi]
        # NOTE: prefer the cell that keeps the other coordinate, then free cells, then swap with the occupant.
        cands.sort(key=lambda c_: ((c_ // g if axis == 0 else c_ % g) != keep, c_ in a["cell"][:n].tolist()))
        if not cands:
            raise ValueError(f"layout.grid={g} has no cell center in 3x3 band {band}")
        target = cands[0]
        occ = [j for j in range(n) if j != slot and int(a["cell"][j]) == target]
        if occ:
            j = occ[0]
            a["cell"][j] = cur
            a["center"][j] = _fit(world, a["center"][slot].copy(), cur, float(a["scale"][j]))
        a["cell"][slot] = target
        cc = np.array([(target % g + 0.5) / g, (target // g + 0.5) / g])
        a["center"][slot] = _fit(world, cc, target, float(a["scale"][slot]))
    cc = a["center"][slot]
    cc[axis] = np.clip(cc[axis], lo, np.nextafter(np.float32(hi), np.float32(0)))


def _cf_specs(world, spec: SceneSpec, u: _U) -> tuple:
    """-> (rule index, rule, factual spec, counterfactual spec, counterfactual value)."""
    rules = cf_rules(world)
    if not rules:
        raise ValueError("cf needs prior.rules with an attribute or row/col consequence "
                         f"(got {tuple(world.cfg.prior.rules)})")
    # NOTE: rule and counterfactual value come first, so rebuilding from a counterfactual scene (split "cf")
    # draws the same ones (idempotent).
    k, rule = u.pick(rules)
    p_attr, p_id = rule["premise"]
    c_attr, c_id = rule["consequence"]
    if c_attr in ("row", "col"):
        alt = u.pick([v for v in range(3) if v != c_id])
    else:
        alt = _other_value(world, c_attr, c_id, u)
    a = _arrays(spec)
    if not a["valid"].any() and not _add_object(world, a, u):
        raise ValueError("cf: cannot place an object")
    n = int(a["valid"].sum())
    _attr_set(world, a, 0, p_attr, p_id)
    for j in range(1, n):
        if int(a[p_attr][j]) == p_id:
            _attr_set(world, a, j, p_attr, _other_value(world, p_attr, p_id, u))
    out = []
    for value in (c_id, alt):
        b = {key: v.copy() for key, v in a.items()}
        if c_attr in ("row", "col"):
            _move_band(world, b, 0, 1 if c_attr == "row" else 0, value)
        else:
            _attr_set(world, b, 0, c_attr, value)
        out.append(_spec(spec, b))
    return k, rule, out[0], out[1], alt


def _attr_word(attr: str, value: int, plural: bool = False) -> str:
    """(attribute, id) -> English word ("red", "circles", "at the top")."""
    if attr == "row":
        return _ROW_WORDS[value]
    if attr == "col":
        return _COL_WORDS[value]
    if attr == "shape":
        return rz._TABLES["en"].shape_pl[value] if plural else concepts.SHAPES[value]
    return {"color": concepts.COLORS, "size": concepts.SIZES, "texture": concepts.TEXTURES}[attr][value]


def _context(rule: dict, value: int) -> str:
    """-> "in this world circles are red ." for premise circle and consequence value red."""
    p_attr, p_id = rule["premise"]
    c_attr = rule["consequence"][0]
    subject = _attr_word("shape", p_id, True) if p_attr == "shape" else f"{_attr_word(p_attr, p_id)} objects"
    return f"in this world {subject} are {_attr_word(c_attr, value, True)} ."


def _statement(rule: dict, value: int, spec: SceneSpec) -> str:
    """-> "there is a blue circle ." naming object 0's premise and the given consequence value."""
    from vljax.data.world import annotate as ann  # NOTE: local import: annotate imports this module.
    p_attr, p_id = rule["premise"]
    c_attr = rule["consequence"][0]
    kw = {p_attr: p_id}
    if c_attr in ("row", "col"):
        pos = ann.position_id(*spec.center[0].tolist())
        kw["position"] = value * 3 + pos % 3 if c_attr == "row" else (pos // 3) * 3 + value
    else:
        kw[c_attr] = value
    return rz.frame_text("EXIST", "en", 0, np=NP(count=1, **kw))


def counterfactual(world, spec: SceneSpec, split: str, index: int, fields: tuple) -> dict:
    """-> cf/*: a VLind-style instance (rule context, factual image, counterfactual image in 3 styles, statements)."""
    u = _U(stream_uniforms(world.seed, split, index, "counterfactual", _N_U))
    k, rule, fact, cf, alt = _cf_specs(world, spec, u)
    c_id = rule["consequence"][1]
    shapes = {int(s) for s in cf.shape[cf.valid]}
    absent = [int(s) for s in world.scene2d.values["shape"] if int(s) not in shapes]
    out = {"cf/rule": np.int32(k), "cf/context": _context(rule, alt), "cf/factual_context": _context(rule, c_id),
           "cf/true_statement": _statement(rule, alt, cf), "cf/false_statement": _statement(rule, c_id, cf),
           "cf/existent_noun": concepts.SHAPES[int(cf.shape[0])],
           "cf/nonexistent_noun": concepts.SHAPES[u.pick(absent)] if absent else ""}
    want = lambda p: any(p == f or p.startswith(f + "/") or f.startswith(p + "/") for f in fields)  # noqa: E731
    if want("cf/factual_image"):
        out["cf/factual_image"] = world.render(fact, style="clean")["image"]
    if want("cf/images"):
        out["cf/images"] = np.stack([world.render(cf, style=s)["image"] for s in CF_STYLES])
    return out


# ---------------------------------------------------------------------------------------------- constructed splits
def construct(world, spec: SceneSpec, split: str, index: int) -> SceneSpec:
    """(scene of a constructed split) -> its edited scene: novel classes, minimal-pair scenes, counterfactuals."""
    u = _U(stream_uniforms(world.seed, split, index, "split", _SPLIT_OFFSET + _N_U)[_SPLIT_OFFSET:])
    if split == "novel":
        from vljax.data.world.language import templates
        novel = [concepts.SHAPES.index(s) for s in templates.base_novel("shape", world.cfg)[1]]
        a = _arrays(spec)
        for j in np.flatnonzero(a["valid"]).tolist():
            if int(a["shape"][j]) not in novel:
                a["shape"][j] = u.pick(novel)
        return _spec(spec, a)
    if split == "pairs":
        # NOTE: a minimal pair needs two objects with different descriptions (swap / relation factors).
        a = _arrays(spec)
        while int(a["valid"].sum()) < 2 and _add_object(world, a, u):
            pass
        n = int(a["valid"].sum())
        if n >= 2 and len({_describe((a["shape"][i], a["color"][i], a["size"][i], a["texture"][i]))
                           for i in range(n)}) == 1:
            _attr_set(world, a, 1, "color", _other_value(world, "color", int(a["color"][1]), u) or int(a["color"][1]))
        return _spec(spec, a)
    if split == "cf":
        # NOTE: the counterfactual stream, so the scene equals the `cf/images` scene of the same index.
        return _cf_specs(world, spec, _U(stream_uniforms(world.seed, split, index, "counterfactual", _N_U)))[3]
    return spec

