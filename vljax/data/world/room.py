"""Rooms of the synthetic world: objects built from primitives, scene graph, referrals, scene cloud, RGB-D.

Room frame: meters, z up, floor at z = 0, the floor is a G x G grid of 1.25 m cells (G = max(4, ceil(sqrt(max)))).
Floor objects take distinct cells (seeded permutation, jittered inside the cell: no overlap, no rejection); cups,
lamps, boxes and plants go on a free table, shelf or bed with probability 0.5 (one item per support). Yaw is a
multiple of 90 degrees, so `room/boxes` (center, size) are exact axis-aligned bounds.
"""
from __future__ import annotations

import math
import time

import numpy as np

from vljax.data.world import concepts
from vljax.data.world import points3d as p3
from vljax.data.world.rng import stream_rng

PREDICATES = ("near", "left_of", "right_of", "in_front_of", "behind", "on_top_of", "under")
PHRASES = {"near": "near", "left_of": "to the left of", "right_of": "to the right of", "in_front_of": "in front of",
           "behind": "behind", "on_top_of": "on top of", "under": "under"}
CELL = 1.25                # m per floor cell
NEAR_GAP = 0.5             # m between footprints for "near"
VIEW_RANGE = 1.0           # m between footprints for left/right/front/behind (view relations of neighbours only)
MARGIN = 0.15              # m a view relation must be clear by
CONTACT = 0.01             # m vertical contact tolerance for on_top_of
RELATIONS_MAX = 128        # rows of room/relations
BETWEEN_MAX = 8            # rows of room/between: (target, anchor a, anchor b)
SUPPORT_P = 0.5
SMALL = ("cup", "lamp", "box", "plant")
SUPPORTS = ("table", "shelf", "bed")
# (width x, depth y, height z) in meters before a +-10% jitter per axis.
SIZES = {"table": (1.0, 0.7, 0.75), "chair": (0.5, 0.5, 0.9), "lamp": (0.3, 0.3, 0.5), "cup": (0.09, 0.09, 0.11),
         "box": (0.4, 0.3, 0.3), "shelf": (0.8, 0.35, 1.2), "bed": (1.05, 0.8, 0.45), "plant": (0.36, 0.36, 0.6)}
PRIMITIVE_SIZE = (0.4, 0.8)     # m, largest extent of a primitive used as a room object
SPLAT_RADIUS_M = 0.04           # RGB-D splat radius in meters
FOV_DEG = 70.0
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def _class_names(cfg) -> tuple:
    c = cfg.room.classes
    names = concepts.ROOM_OBJECTS[:int(c)] if isinstance(c, (int, np.integer)) else tuple(c)
    for n in names:
        if n not in concepts.ROOM_OBJECTS and n not in concepts.SHAPES_3D:
            raise ValueError(f"room.classes: unknown class {n!r}; valid: room objects and 3D primitives")
    if not names:
        raise ValueError("room.classes must name at least one class")
    return names


def _check(cfg) -> dict:
    r = cfg.room
    lo, hi = (int(x) for x in r.count)
    if not 1 <= lo <= hi <= int(r.max):
        raise ValueError(f"room.count={tuple(r.count)} must satisfy 1 <= lo <= hi <= room.max={r.max}")
    if not 1 <= int(r.colors) <= len(concepts.COLORS):
        raise ValueError(f"room.colors={r.colors} must be in 1..{len(concepts.COLORS)}")
    for key in ("points_per_object", "scene_points", "rgbd_views"):
        if int(r[key]) < 1:
            raise ValueError(f"room.{key}={r[key]} must be >= 1")
    if not 8 <= int(cfg.resolution) <= 512:
        raise ValueError(f"resolution={cfg.resolution} outside 8..512")
    return dict(m=int(r.max), po=int(r.points_per_object), np=int(r.scene_points), k=int(r.rgbd_views),
                res=int(cfg.resolution), rf=int(cfg.ref.per_sample) if "ref" in cfg else 4, names=_class_names(cfg))


def spec_room(cfg) -> dict:
    """config -> {path: (shape, dtype)} of a room sample (strings: dtype object)."""
    c = _check(cfg)
    m, k, res, rf = c["m"], c["k"], c["res"], c["rf"]
    f32, i32, u8, b, s = (np.dtype(t) for t in (np.float32, np.int32, np.uint8, bool, object))
    return {"room/points": ((m, c["po"], 6), f32), "room/class": ((m,), i32), "room/color": ((m,), i32),
            "room/valid": ((m,), b), "room/boxes": ((m, 6), f32), "room/proposals": ((m, 6), f32),
            "room/relations": ((RELATIONS_MAX, 3), i32), "room/between": ((BETWEEN_MAX, 3), i32),
            "room/camera_azimuth": ((), f32), "room/caption": ((), s), "room/object_captions": ((m,), s),
            "ref/text": ((rf,), s), "ref/target": ((rf,), i32), "ref/box": ((rf, 6), f32), "ref/kind": ((rf,), i32),
            "scene_points": ((c["np"], 6), f32), "scene_points/label": ((c["np"],), i32),
            "scene_points/instance": ((c["np"],), i32), "rgbd/rgb": ((k, res, res, 3), u8),
            "rgbd/depth": ((k, res, res), f32), "rgbd/intrinsics": ((3, 3), f32), "rgbd/pose": ((k, 4, 4), f32),
            "rgbd/point_index": ((k, res, res), i32)}


# ----------------------------------------------------------------------------------------------- objects


def object_rows(name: str, w: float, d: float, h: float) -> list:
    """class name, (width, depth, height) m -> patch rows in the object frame (footprint centered, floor z = 0)."""
    if name == "table":
        t, r = 0.06, 0.03
        rows = p3.box_rows((0, 0, h - t / 2), (w, d, t))
        for sx in (-1, 1):
            for sy in (-1, 1):
                rows += p3.cylinder_rows((sx * (w / 2 - 2 * r), sy * (d / 2 - 2 * r), 0), r, h - t, True, False)
        return rows
    if name == "chair":
        seat, t, r = 0.45 * h / 0.9, 0.05, 0.02
        rows = p3.box_rows((0, 0, seat), (w, d, t)) + p3.box_rows((0, d / 2 - t / 2, (seat + t / 2 + h) / 2),
                                                                  (w, t, h - seat - t / 2))
        for sx in (-1, 1):
            for sy in (-1, 1):
                rows += p3.cylinder_rows((sx * (w / 2 - r), sy * (d / 2 - r), 0), r, seat - t / 2, True, False)
        return rows
    if name == "lamp":
        return (p3.cylinder_rows((0, 0, 0), 0.8 * w / 2, 0.03, True, True)
                + p3.cylinder_rows((0, 0, 0.03), 0.015, 0.6 * h - 0.03, False, False)
                + p3.cylinder_rows((0, 0, 0.6 * h), w / 2, 0.4 * h, False, True))
    if name == "cup":
        return p3.cylinder_rows((0, 0, 0), w / 2, h, True, False)
    if name == "box":
        return p3.box_rows((0, 0, h / 2), (w, d, h))
    if name == "shelf":
        t = 0.03
        rows = p3.box_rows((-w / 2 + t / 2, 0, h / 2), (t, d, h)) + p3.box_rows((w / 2 - t / 2, 0, h / 2), (t, d, h))
        rows += p3.box_rows((0, d / 2 - t / 2, h / 2), (w - 2 * t, t, h))
        for z in (t / 2, h / 2, h - t / 2):
            rows += p3.box_rows((0, -t / 2, z), (w - 2 * t, d - t, t))
        return rows
    if name == "bed":
        frame = 0.55 * h
        return p3.box_rows((0, 0, frame / 2), (w, d, frame)) + p3.box_rows(
            (0, 0, (frame + h) / 2), (w - 0.06, d - 0.06, h - frame))
    if name == "plant":
        pot_h, leaf = 0.35 * h, w / 2
        return (p3.cylinder_rows((0, 0, 0), 0.35 * w, pot_h, True, True)
                + p3.cylinder_rows((0, 0, pot_h), 0.01, h - leaf - pot_h, False, False)
                + p3.sphere_rows((0, 0, h - leaf), leaf))
    raise ValueError(f"unknown room object {name!r}")


def _object_patches(name: str, size: float, dims: tuple, rng) -> p3.Patches:
    if name in concepts.SHAPES_3D:
        p = p3.primitive_patches(name, rng)
        lo, hi = p.bounds()
        p = p.transformed(scale=size / float(np.max(hi - lo)))
        lo, hi = p.bounds()
        return p.transformed(shift=(0.0, 0.0, -lo[2]))
    return p3.Patches.build(object_rows(name, *dims))


def compose(cfg, seed: int, split: str, index: int) -> dict:
    """(config, seed, split, index) -> room layout: classes, colors, rgb, boxes [n,6], patches, camera azimuth."""
    c = _check(cfg)
    names = c["names"]
    rng = stream_rng(seed, split, index, "room")
    lo, hi = (int(x) for x in cfg.room.count)
    n = int(rng.integers(lo, hi + 1))
    cls = rng.integers(len(names), size=n)
    color = rng.integers(int(cfg.room.colors), size=n)
    rgb = np.stack([p3.jittered_rgb(int(col), rng) for col in color])
    jit = rng.uniform(0.9, 1.1, (n, 3))
    yaw = rng.integers(4, size=n)
    prim_size = rng.uniform(*PRIMITIVE_SIZE, n)
    coin = rng.random(n)
    pick = rng.random(n)
    parts, extents = [], []
    for i in range(n):
        name = names[cls[i]]
        dims = tuple(np.asarray(SIZES.get(name, (1.0, 1.0, 1.0))) * jit[i])
        p = _object_patches(name, prim_size[i], dims, rng).transformed(rot=p3.rotation_z(yaw[i] * np.pi / 2),
                                                                       owner=i)
        parts.append(p)
        extents.append(p.bounds())
    lo_b = np.array([e[0] for e in extents])
    hi_b = np.array([e[1] for e in extents])
    size = hi_b - lo_b
    # NOTE: support first (a supported item takes no floor cell), then floor cells for the rest.
    support = np.full(n, -1)
    free = [i for i in range(n) if names[cls[i]] in SUPPORTS]
    for i in range(n):
        if names[cls[i]] in SMALL and free and coin[i] < SUPPORT_P:
            support[i] = free.pop(int(pick[i] * len(free)))
    grid = max(4, math.ceil(math.sqrt(c["m"])))
    cells = rng.permutation(grid * grid)
    center = np.zeros((n, 3))
    floor = np.nonzero(support < 0)[0]
    slack = np.maximum(CELL - size[floor, :2], 0) / 2
    cell_xy = np.stack([cells[:len(floor)] % grid, cells[:len(floor)] // grid], -1) * CELL + CELL / 2
    center[floor, :2] = cell_xy + rng.uniform(-1, 1, (len(floor), 2)) * slack
    center[floor, 2] = size[floor, 2] / 2
    for i in np.nonzero(support >= 0)[0]:
        s = support[i]
        room_slack = np.maximum(size[s, :2] - size[i, :2], 0) / 2
        center[i, :2] = center[s, :2] + rng.uniform(-1, 1, 2) * room_slack
        center[i, 2] = center[s, 2] + size[s, 2] / 2 + size[i, 2] / 2
    patches = p3.Patches.concat([
        p.transformed(shift=center[i] - (lo_b[i] + hi_b[i]) / 2) for i, p in enumerate(parts)])
    azimuth = float(rng.uniform(0.0, 360.0))
    return dict(n=n, cls=cls, color=color, rgb=rgb, boxes=np.concatenate([center, size], -1), patches=patches,
                support=support, azimuth=azimuth, room_size=grid * CELL, names=names)


# ----------------------------------------------------------------------------------------------- relations


def camera_axes(azimuth_deg: float) -> tuple:
    """azimuth (deg) of a camera looking at the room center -> ([2] right, [2] forward) unit xy vectors."""
    a = np.deg2rad(azimuth_deg)
    fwd = -np.array([np.cos(a), np.sin(a)])
    return np.array([fwd[1], -fwd[0]]), fwd


def relations(boxes: np.ndarray, azimuth_deg: float) -> tuple:
    """[n,6] boxes (center, size), camera azimuth -> ([R,3] (subject, predicate id, object), [B,3] between)."""
    c, s = boxes[:, :3], boxes[:, 3:]
    n = len(boxes)
    lo, hi = c - s / 2, c + s / 2
    overlap = np.minimum(hi[:, None, :2], hi[None, :, :2]) - np.maximum(lo[:, None, :2], lo[None, :, :2])
    gap = np.hypot(*np.maximum(-overlap, 0).transpose(2, 0, 1))
    eye = np.eye(n, dtype=bool)
    on_top = (np.abs(lo[:, None, 2] - hi[None, :, 2]) <= CONTACT) & np.all(overlap > 0, -1) & ~eye
    support = on_top | on_top.T
    near = (gap < NEAR_GAP) & ~support & ~eye
    right, fwd = camera_axes(azimuth_deg)
    d = c[:, None, :2] - c[None, :, :2]                  # subject - object
    dr, df = d @ right, d @ fwd
    view = (gap < VIEW_RANGE) & ~support & ~eye
    masks = {"near": near, "left_of": view & (dr < -MARGIN), "right_of": view & (dr > MARGIN),
             "in_front_of": view & (df < -MARGIN), "behind": view & (df > MARGIN),
             "on_top_of": on_top, "under": on_top.T}
    # NOTE: support relations first, then near, then view relations: truncation to RELATIONS_MAX drops the latter.
    order = ("on_top_of", "under", "near", "left_of", "right_of", "in_front_of", "behind")
    rows = [np.stack(np.nonzero(masks[p]), -1) for p in order]
    rel = np.concatenate([np.stack([r[:, 0], np.full(len(r), PREDICATES.index(p)), r[:, 1]], -1)
                          for p, r in zip(order, rows)]).astype(np.int32) if n else np.zeros((0, 3), np.int32)
    # between: the target's center projects inside the segment of two anchors and lies within 0.35 m of it.
    a, b = np.triu_indices(n, 1)
    seg = c[b, None, :2] - c[a, None, :2]                # [pairs,1,2]
    rel_t = c[None, :, :2] - c[a, None, :2]              # [pairs,n,2]
    t = np.sum(rel_t * seg, -1) / np.maximum(np.sum(seg * seg, -1), 1e-9)
    dist = np.abs(rel_t[..., 0] * seg[..., 1] - rel_t[..., 1] * seg[..., 0]) / np.sqrt(np.sum(seg * seg, -1))
    ok = (t > 0.2) & (t < 0.8) & (dist < 0.35) & (np.arange(n)[None] != a[:, None]) & (np.arange(n)[None] != b[:, None])
    pi, ti = np.nonzero(ok)
    between = np.stack([ti, a[pi], b[pi]], -1).astype(np.int32) if len(pi) else np.zeros((0, 3), np.int32)
    return rel, between


# ----------------------------------------------------------------------------------------------- text


def noun(name: str) -> str:
    """class name -> English noun ("l_shape" -> "l shape")."""
    return name.replace("_", " ")


def plural(name: str) -> str:
    """class name -> English plural noun."""
    w = noun(name)
    irregular = {"shelf": "shelves", "torus": "tori"}
    if w in irregular:
        return irregular[w]
    return w + ("es" if w.endswith(("s", "x", "ch", "sh")) else "s")


def _article(w: str) -> str:
    return ("an " if w[0] in "aeiou" else "a ") + w


def room_caption(cls, names) -> str:
    """[n] class ids, class names -> "a room with two chairs, a table and a lamp" (count desc, then class id)."""
    ids, counts = np.unique(cls, return_counts=True)
    order = sorted(zip(-counts, ids))
    parts = [_article(noun(names[i])) if -k == 1 else f"{NUMBERS[-k] if -k < len(NUMBERS) else -k} {plural(names[i])}"
             for k, i in order]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return "a room with " + listed


def _unique_np(i: int, cls, color, names) -> str | None:
    """Minimal non-relational description of slot i ("the chair" / "the red chair"), or None."""
    if np.sum(cls == cls[i]) == 1:
        return "the " + noun(names[cls[i]])
    if np.sum((cls == cls[i]) & (color == color[i])) == 1:
        return f"the {concepts.COLORS[color[i]]} {noun(names[cls[i]])}"
    return None


def object_captions(cls, color, rel, dist, names) -> list:
    """[n] ids, [R,3] relations, [n,n] distances -> ["a red cup on top of the blue table", "... on the floor"]."""
    out = []
    for i in range(len(cls)):
        base = f"a {concepts.COLORS[color[i]]} {noun(names[cls[i]])}"
        mine = rel[rel[:, 0] == i]
        tail = " on the floor"
        for pred in ("on_top_of", "under", "near"):
            hits = mine[mine[:, 1] == PREDICATES.index(pred), 2]
            if len(hits):
                j = min(hits, key=lambda x: dist[i, x])
                tail = f" {PHRASES[pred]} the {concepts.COLORS[color[j]]} {noun(names[cls[j]])}"
                break
        out.append(base + tail)
    return out


def referrals(cls, color, rel, names, count: int, rng) -> tuple:
    """[n] ids, [R,3] relations, names, count -> (texts, targets, kinds); class -> +color -> +relation."""
    texts, targets, kinds = [], [], []
    facts = {(int(s), int(p), int(o)) for s, p, o in rel}
    for t in rng.permutation(len(cls)):
        if len(texts) == count:
            break
        desc = _unique_np(t, cls, color, names)
        if desc is not None:
            texts.append(desc)
            targets.append(int(t))
            kinds.append(0 if np.sum(cls == cls[t]) == 1 else 1)
            continue
        twins = [int(j) for j in np.nonzero((cls == cls[t]) & (color == color[t]))[0] if j != t]
        mine = rel[rel[:, 0] == t]
        for s, p, o in mine[rng.permutation(len(mine))]:
            anchor = _unique_np(o, cls, color, names)
            if anchor is None or any((j, int(p), int(o)) in facts for j in twins):
                continue
            texts.append(f"the {concepts.COLORS[color[t]]} {noun(names[cls[t]])} {PHRASES[PREDICATES[p]]} {anchor}")
            targets.append(int(t))
            kinds.append(2)
            break
    return texts, targets, kinds


# ----------------------------------------------------------------------------------------------- RGB-D


def cameras(room_size: float, azimuth_deg: float, k: int, res: int) -> tuple:
    """room side (m), azimuth of view 0, K, resolution -> ([3,3] intrinsics, [K,4,4] camera-to-world poses, OpenCV)."""
    f = res / 2 / math.tan(math.radians(FOV_DEG) / 2)
    intr = np.array([[f, 0, res / 2], [0, f, res / 2], [0, 0, 1.0]])
    center = np.array([room_size / 2, room_size / 2, 0.5])
    poses = np.zeros((k, 4, 4))
    for v in range(k):
        a = math.radians(azimuth_deg + 360.0 * v / k)
        eye = center + np.array([math.cos(a), math.sin(a), 0.0]) * (0.5 * room_size + 1.0) + [0, 0, 1.5]
        fwd = (center - eye) / np.linalg.norm(center - eye)
        right = np.cross(fwd, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        poses[v, :3, :3] = np.stack([right, np.cross(fwd, right), fwd], 1)
        poses[v, :3, 3] = eye
        poses[v, 3, 3] = 1.0
    return intr, poses


def project(xyz: np.ndarray, intr: np.ndarray, poses: np.ndarray) -> tuple:
    """[N,3] world points, [3,3], [K,4,4] -> [K,N] (column, row, depth z); z <= 0.05 m is absent (inf)."""
    cam = np.einsum("kji,knj->kni", poses[:, :3, :3], xyz[None] - poses[:, None, :3, 3])
    z = cam[..., 2]
    valid = z > 0.05
    zs = np.where(valid, z, 1.0)
    u = intr[0, 0] * cam[..., 0] / zs + intr[0, 2]
    v = intr[1, 1] * cam[..., 1] / zs + intr[1, 2]
    return u, v, np.where(valid, z, np.inf)


def render_rgbd(xyz, rgb, normals, intr, poses, res: int) -> dict:
    """[N,3] points, [N,3] rgb, [N,3] normals, cameras -> rgbd/{rgb,depth,point_index} for K pinhole views.

    Depth and color come from the splat z-buffer; point_index is the nearest point projecting into the pixel itself,
    kept if it lies on the visible surface (within one splat radius of the pixel's depth), else -1.
    """
    u, v, z = project(xyz, intr, poses)
    zbuf, win = p3.splat(u, v, z, intr[0, 0] * SPLAT_RADIUS_M / np.where(np.isfinite(z), z, 1.0), res, res, True)
    _, own = p3.splat(u, v, z, 0.0, res, res, True)
    depth = np.where(np.isfinite(zbuf), zbuf, 0.0).astype(np.float32)
    kk = np.arange(len(poses))[:, None, None]
    own_z = z[kk, np.maximum(own, 0)]
    own = np.where((own >= 0) & (own_z <= zbuf + SPLAT_RADIUS_M), own, -1).astype(np.int32)
    light = poses[:, None, :3, 3] - xyz[None]
    light /= np.linalg.norm(light, axis=-1, keepdims=True)
    shade = np.clip(rgb[None] * (0.3 + 0.7 * np.abs(np.sum(normals[None] * light, -1)))[..., None], 0, 1)
    shade = np.concatenate([shade, np.zeros((len(poses), 1, 3))], 1)    # row N = empty (black)
    color = shade[kk, np.where(win >= 0, win, len(xyz))]
    return {"rgbd/rgb": np.round(color * 255).astype(np.uint8), "rgbd/depth": depth, "rgbd/point_index": own}


# ----------------------------------------------------------------------------------------------- sample


def _wanted(path: str, fields) -> bool:
    """Is `path` (a field group) needed: selected by a requested prefix, or holding a requested sub-path?"""
    return fields is None or any(path == f or path.startswith(f + "/") or f.startswith(path + "/") for f in fields)


def _jumped(seed, split, index, stream, k):
    return np.random.Generator(stream_rng(seed, split, index, stream).bit_generator.jumped(k))


def sample_room(cfg, seed: int, split: str, index: int, fields=None) -> dict:
    """(config, seed, split, index) -> room sample (WORLD.md 3.7): objects, scene graph, text, scene cloud, RGB-D."""
    c = _check(cfg)
    m, po, res, rf = c["m"], c["po"], c["res"], c["rf"]
    lay = compose(cfg, seed, split, index)
    n, cls, color, boxes, names = lay["n"], lay["cls"], lay["color"], lay["boxes"], lay["names"]
    rel, between = relations(boxes, lay["azimuth"])
    rel, between = rel[:RELATIONS_MAX], between[:BETWEEN_MAX]
    out = {}
    pad_i = np.full(m, -1, np.int32)
    out["room/class"] = pad_i.copy()
    out["room/class"][:n] = cls
    out["room/color"] = pad_i.copy()
    out["room/color"][:n] = color
    out["room/valid"] = np.arange(m) < n
    out["room/boxes"] = np.zeros((m, 6), np.float32)
    out["room/boxes"][:n] = boxes
    prng = _jumped(seed, split, index, "room", 1)
    jit = cfg.room.proposal_jitter
    out["room/proposals"] = np.zeros((m, 6), np.float32)
    out["room/proposals"][:n] = np.concatenate([boxes[:, :3] + prng.uniform(-jit, jit, (n, 3)) * boxes[:, 3:],
                                                boxes[:, 3:] * (1 + prng.uniform(-jit, jit, (n, 3)))], -1)
    out["room/relations"] = np.full((RELATIONS_MAX, 3), -1, np.int32)
    out["room/relations"][:len(rel)] = rel
    out["room/between"] = np.full((BETWEEN_MAX, 3), -1, np.int32)
    out["room/between"][:len(between)] = between
    out["room/camera_azimuth"] = np.float32(lay["azimuth"])
    if _wanted("room/caption", fields):
        out["room/caption"] = room_caption(cls, names)
    if _wanted("room/object_captions", fields):
        dist = np.linalg.norm(boxes[:, None, :2] - boxes[None, :, :2], axis=-1)
        out["room/object_captions"] = tuple(object_captions(cls, color, rel, dist, names) + [""] * (m - n))
    if _wanted("ref", fields):
        texts, targets, kinds = referrals(cls, color, rel, names, rf, _jumped(seed, split, index, "room", 2))
        k = len(texts)
        out["ref/text"] = tuple(texts + [""] * (rf - k))
        out["ref/target"] = np.array(targets + [-1] * (rf - k), np.int32)
        out["ref/box"] = np.zeros((rf, 6), np.float32)
        out["ref/box"][:k] = boxes[targets]
        out["ref/kind"] = np.array(kinds + [-1] * (rf - k), np.int32)
    patches = lay["patches"]
    if _wanted("room/points", fields):
        pts = np.zeros((m, po, 6), np.float32)
        rng = stream_rng(seed, split, index, "points")
        area = np.zeros((n, len(patches.area)))
        area[patches.owner, np.arange(len(patches.area))] = patches.area
        counts = rng.multinomial(po, area / area.sum(1, keepdims=True)).ravel()
        pidx = np.repeat(np.tile(np.arange(len(patches.area)), n), counts)
        uu = rng.random((2, n * po))
        xyz, _ = p3.surface_at(patches, pidx, uu[0], uu[1])
        perm = rng.permuted(np.tile(np.arange(po), (n, 1)), axis=1) + np.arange(n)[:, None] * po
        pts[:n, :, :3] = xyz[perm]
        pts[:n, :, 3:] = lay["rgb"][:, None]
        out["room/points"] = pts
    need_scene = _wanted("scene_points", fields) or _wanted("rgbd", fields)
    if need_scene:
        rng = _jumped(seed, split, index, "points", 1)
        xyz, nrm, pid = p3.sample_surface(patches, c["np"], rng, return_patch=True)
        perm = rng.permutation(c["np"])
        inst = patches.owner[pid][perm]
        xyz, nrm = xyz[perm], nrm[perm]
        if _wanted("scene_points", fields):
            out["scene_points"] = np.concatenate([xyz, lay["rgb"][inst]], -1).astype(np.float32)
            out["scene_points/label"] = cls[inst].astype(np.int32)
            out["scene_points/instance"] = inst.astype(np.int32)
        if _wanted("rgbd", fields):
            intr, poses = cameras(lay["room_size"], lay["azimuth"], c["k"], res)
            out.update(render_rgbd(xyz, lay["rgb"][inst], nrm, intr, poses, res))
            out["rgbd/intrinsics"] = intr.astype(np.float32)
            out["rgbd/pose"] = poses.astype(np.float32)
    return out


# ----------------------------------------------------------------------------------------------- throughput


def throughput(n_objects: int = 500, n_rooms: int = 100, cfg=None) -> dict:
    """-> {"objects_per_s", "rooms_per_s"} on this core (CPU time of this process, so other load is not counted)."""
    cfg = p3.default_config() if cfg is None else cfg
    obj_cfg = p3.compile_object3d(cfg)
    p3.sample_object3d(obj_cfg, 0, "train", 0)
    sample_room(cfg, 0, "train", 0)
    t = time.process_time()
    for i in range(n_objects):
        p3.sample_object3d(obj_cfg, 0, "train", i)
    objects = n_objects / (time.process_time() - t)
    t = time.process_time()
    for i in range(n_rooms):
        sample_room(cfg, 0, "train", i)
    return {"objects_per_s": objects, "rooms_per_s": n_rooms / (time.process_time() - t)}


if __name__ == "__main__":
    for key, value in throughput().items():
        print(f"{key}: {value:.0f}")
