"""Surgical clips (WORLD.md 2.6, card surglavi): tools over tissue, procedure grammar, 3-level captions.

A procedure is drawn per (split, procedure id) from stream `surgical`: 3-4 phases in the fixed order
preparation, dissection, clipping, closure (`surgical.phases`); each phase 2-3 of its 3 steps in order
(`surgical.steps`); each step 1-3 tasks of 8-16 frames at `FPS` in a fixed grammar (approach, then grasp or
cut, then move when grasping). Index i is one clip: procedure i // 16, and slot q = i % 16 picks level
q % 3 (0 phase, 1 step, 2 task) and a unit of that level, spread evenly over the procedure; the clip samples
`video.frames` frames at the centers of equal bins of that unit's time span. Per-clip noise (stream `video`):
`surgical.chatter_p` chatter narrations (`flags/is_descriptive` False) and `surgical.nonsurgical_p` slide
clips (`flags/is_surgical_content` False, labels -1). All motion is analytic in procedure time:
- approach: the tip moves from halfway between its entry point (outside the frame) and the target to the target;
- grasp: the tip rests on the target and the jaws close; move: tip and target travel together;
- cut: the tool enters from above and rests on the target's top edge, the blades open and close, and the
  target splits: its halves move apart until the slit is `SLIT` wide.
Split names are namespaces and a procedure is a block of 16 indices, so the procedures of `val`, `test` and
`heldout` are never seen in `train`.
"""
from __future__ import annotations

import functools

import numpy as np

from vljax.data.world import concepts
from vljax.data.world import splits
from vljax.data.world import video_extras as extras
from vljax.data.world.kind3d import META_SPEC, selected
from vljax.data.world.rng import stream_uniforms

PHASES = ("preparation", "dissection", "clipping", "closure")
STEPS = (("exposure", "inspection", "retraction"), ("incision", "separation", "coagulation"),
         ("clip placement", "clip check", "division"), ("irrigation", "suturing", "extraction"))
STEP_NAMES = tuple(s for group in STEPS for s in group)
TASKS = ("approach", "grasp", "move", "cut")
TOOLS = ("grasper", "scissors", "hook", "clipper")
# Event type ids (video.EVENT_TYPES) of each task.
TASK_EVENT = (7, 8, 9, 10)
PHASE_TOOLS = ((0, 2), (1, 2), (3, 1), (0, 1))
TARGET_COLORS = tuple(concepts.COLORS.index(c) for c in ("yellow", "white", "purple", "green"))
CLIPS_PER_PROCEDURE = 16
FPS = 8.0
MAX_EVENTS = 12
LABEL_TASKS = ("phase", "step", "task")
CLASS_NAME_TASKS = ("phase", "step", "task", "tool")
CHATTER = ("can everyone see the screen okay", "we will take questions at the end",
           "my coffee is getting cold here", "the light is a bit dim today", "let me know if the sound drops")
SLIDE_TEXT = ("welcome everyone to this lecture", "here is the outline of today", "thanks for watching")
VERBS = {"approach": "approaches", "grasp": "grasps", "move": "moves", "cut": "cuts"}
RAW_VERBS = {"approach": "comes in on", "grasp": "grabs", "move": "pulls", "cut": "cuts"}
SHAFT_RGB = np.array([0.72, 0.73, 0.76], np.float32)
TIP_RGB = np.array([0.32, 0.33, 0.38], np.float32)
SLIDE_RGB = np.array([0.10, 0.15, 0.35], np.float32)
TARGET_RADII = (0.09, 0.065)
# Final width of the cut between the two target halves (image sides); the halves move apart by it.
SLIT = 0.08


def _seg_alpha(p0: np.ndarray, p1: np.ndarray, width: np.ndarray, px: np.ndarray, res: int) -> np.ndarray:
    """float [S,2] ends x [S] half widths x float32 [R] pixel centers -> float32 [R,R] max capsule alpha (y, x)."""
    d = p1 - p0
    dx = px[None, None, :] - p0[:, 0, None, None]                  # [S, 1, R]
    dy = px[None, :, None] - p0[:, 1, None, None]                  # [S, R, 1]
    den = np.maximum((d * d).sum(1), 1e-12)[:, None, None]
    t = np.clip((dx * d[:, 0, None, None] + dy * d[:, 1, None, None]) / den, 0, 1)
    dist = np.hypot(dx - t * d[:, 0, None, None], dy - t * d[:, 1, None, None])
    return np.clip((width[:, None, None] - dist) * res + 0.5, 0, 1).max(0).astype(np.float32)


def tool_segments(tool: int, tip: np.ndarray, entry: np.ndarray, opening: float) -> tuple:
    """tool id x tip (x, y) x entry x jaw opening in [0, 1] -> (shaft [2,2], tip segments [S,2,2], widths [S])."""
    d = tip - entry
    d = d / max(float(np.hypot(*d)), 1e-9)
    n = np.array([-d[1], d[0]])
    segs, w = [], []
    if tool in (0, 3):  # grasper / clipper: two jaws opening by `opening`
        theta = 0.12 + 0.5 * opening
        length, width = (0.07, 0.011) if tool == 0 else (0.045, 0.018)
        for sgn in (1, -1):
            segs.append((tip, tip + length * (np.cos(theta) * d + sgn * np.sin(theta) * n)))
            w.append(width)
        if tool == 3:  # the clip: a bar across the jaws
            segs.append((tip + 0.04 * d - 0.02 * n, tip + 0.04 * d + 0.02 * n))
            w.append(0.008)
    elif tool == 1:  # scissors: two blades crossing at the tip (an X)
        theta = 0.1 + 0.35 * opening
        for sgn in (1, -1):
            a = np.cos(theta) * d + sgn * np.sin(theta) * n
            segs.append((tip - 0.025 * a, tip + 0.075 * a))
            w.append(0.008)
    else:  # hook: a short extension bent at a right angle (an L)
        bend = tip + 0.05 * d
        segs += [(tip, bend), (bend, bend + 0.035 * n)]
        w += [0.01, 0.01]
    return np.stack([entry, tip]), np.asarray(segs, np.float64), np.asarray(w)


class Surgical:
    """Surgical clip sampler of one World config (`kind="video"`, `domain="surgical"`)."""

    CLASS_NAME_TASKS = CLASS_NAME_TASKS

    def __init__(self, cfg, config_hash: str):
        if cfg.kind != "video" or cfg.domain != "surgical":
            raise ValueError(f"kind={cfg.kind!r}, domain={cfg.domain!r}: surgical clips need kind 'video'")
        sc, vc = cfg.surgical, cfg.video
        for name, rng, top in (("surgical.phases", sc.phases, len(PHASES)), ("surgical.steps", sc.steps, 3)):
            if len(rng) != 2 or not 1 <= int(rng[0]) <= int(rng[1]) <= top:
                raise ValueError(f"{name}={tuple(rng)} must be an inclusive range inside 1..{top}")
        for name in ("chatter_p", "nonsurgical_p"):
            if not 0.0 <= float(sc[name]) <= 1.0:
                raise ValueError(f"surgical.{name}={sc[name]} outside [0, 1]")
        if int(vc.frames) < 1:
            raise ValueError(f"video.frames={vc.frames} must be >= 1")
        if int(cfg.downsample) != 1:
            raise ValueError(f"downsample={cfg.downsample}: surgical clips render at downsample 1 only")
        if cfg.audio.enabled:
            raise ValueError("audio.enabled: surgical clips have no audio")
        self.cfg, self.config_hash = cfg, config_hash
        self.seed, self.res, self.t_frames = int(cfg.seed), int(cfg.resolution), int(vc.frames)
        self.phases, self.steps = tuple(int(x) for x in sc.phases), tuple(int(x) for x in sc.steps)
        self.chatter_p, self.nonsurgical_p = float(sc.chatter_p), float(sc.nonsurgical_p)
        self.px = ((np.arange(self.res) + 0.5) / self.res).astype(np.float32)
        self.tissue = self._tissue()
        self._procedure = functools.lru_cache(maxsize=64)(self._draw_procedure)

    # ------------------------------------------------------------------ procedure grammar
    def _tissue(self) -> np.ndarray:
        """-> float32 [2R, 2R, 3] pinkish tissue (smooth folds + dark vessels), seeded by `seed` only."""
        g = np.random.Generator(np.random.Philox(key=(self.seed & 0xFFFFFFFF, 0x5C0A)))
        r2 = 2 * self.res
        y, x = np.meshgrid(np.arange(r2) / self.res, np.arange(r2) / self.res, indexing="ij")
        f = np.zeros((r2, r2))
        for fx, fy, ph in zip(g.uniform(2, 8, 6), g.uniform(2, 8, 6), g.uniform(0, 2 * np.pi, 6)):
            f += np.sin(fx * x + fy * y + ph)
        f = (f - f.min()) / (f.max() - f.min())
        img = np.array([0.86, 0.52, 0.50]) * (0.8 + 0.2 * f)[..., None]
        vessel = np.abs(np.sin(9 * x + 2.5 * np.sin(4 * y + g.uniform(0, 6)))) < 0.06
        img[vessel] = 0.65 * img[vessel] + 0.35 * np.array([0.55, 0.10, 0.15])
        return img.astype(np.float32)

    def _draw_procedure(self, split: str, proc: int) -> dict:
        """(split, procedure id) -> timeline {phase, step, task, tool, t0, t1 [K]; per-task geometry; units}."""
        u = iter(stream_uniforms(self.seed, split, proc, "surgical", 512).tolist())

        def pick(lo, hi):
            return lo + min(int(next(u) * (hi - lo + 1)), hi - lo)

        n_ph = pick(*self.phases)
        phases = sorted(np.argsort([next(u) for _ in PHASES], kind="stable")[:n_ph].tolist())
        rows, t, step_units = [], 0.0, []
        for ph in phases:
            n_st = pick(*self.steps)
            steps = sorted(np.argsort([next(u) for _ in range(3)], kind="stable")[:n_st].tolist())
            for st in steps:
                main = PHASE_TOOLS[ph][min(int(next(u) * 2), 1)]
                n_t = pick(1, 3)
                if main == 0:  # NOTE: grammar: approach, then grasp (grasper) or cut (main tool), then move.
                    seq = {1: ("grasp",), 2: ("approach", "grasp"), 3: ("approach", "grasp", "move")}[n_t]
                else:
                    seq = {1: ("cut",), 2: ("approach", "cut"), 3: ("approach", "grasp", "cut")}[n_t]
                color = TARGET_COLORS[min(int(next(u) * len(TARGET_COLORS)), len(TARGET_COLORS) - 1)]
                pos = np.array([0.3 + 0.4 * next(u), 0.3 + 0.4 * next(u)])
                t_step = t
                for task in seq:
                    dur = pick(8, 16) / FPS
                    # NOTE: a cutting tool enters from the upper half and rests on the target's top edge, so the
                    # widening slit stays visible below its blades.
                    ang = (np.pi * (1 + next(u))) if task == "cut" else 2 * np.pi * next(u)
                    entry = 0.5 + 0.75 * np.array([np.cos(ang), np.sin(ang)])
                    tool = main if task in ("approach", "cut") else 0
                    end = pos + (0.25 * np.array([next(u) - 0.5, next(u) - 0.5]) if task == "move" else 0.0)
                    end = np.clip(end, 0.15, 0.85)
                    rows.append(dict(phase=ph, step=3 * ph + st, task=TASKS.index(task), tool=tool, t0=t,
                                     t1=t + dur, color=color, pos0=pos, pos1=end, entry=entry))
                    pos, t = end, t + dur
                step_units.append((t_step, t))
        k = len(rows)
        tl = {key: np.array([r[key] for r in rows]) for key in rows[0]}
        tl["n"] = k
        ph_units = [(tl["t0"][tl["phase"] == p].min(), tl["t1"][tl["phase"] == p].max()) for p in phases]
        tl["units"] = (ph_units, step_units, list(zip(tl["t0"].tolist(), tl["t1"].tolist())))
        tl["offset"] = (min(int(next(u) * self.res), self.res - 1), min(int(next(u) * self.res), self.res - 1))
        return tl

    def clip(self, split: str, index: int) -> dict:
        """(split, index) -> {procedure, level, unit, start, end, times [T], timeline, flags} of one clip."""
        proc, q = divmod(int(index), CLIPS_PER_PROCEDURE)
        tl = self._procedure(split, proc)
        level, k = q % 3, q // 3
        per_level = len(range(level, CLIPS_PER_PROCEDURE, 3))
        units = tl["units"][level]
        unit = min(k * len(units) // per_level, len(units) - 1)
        start, end = units[unit]
        times = start + (np.arange(self.t_frames) + 0.5) * ((end - start) / self.t_frames)
        u = stream_uniforms(self.seed, split, index, "video", 3)
        return {"procedure": proc, "level": level, "unit": unit, "start": start, "end": end, "times": times,
                "tl": tl, "surgical": bool(u[0] >= self.nonsurgical_p), "descriptive": bool(u[1] >= self.chatter_p),
                "chatter": min(int(u[2] * len(CHATTER)), len(CHATTER) - 1)}

    def state(self, tl: dict, t: float) -> dict:
        """timeline x procedure time -> {row, tool, tip, entry, opening, target center, slit width, color}."""
        k = int(np.clip(np.searchsorted(tl["t1"], t, side="right"), 0, tl["n"] - 1))
        tau = float(np.clip((t - tl["t0"][k]) / (tl["t1"][k] - tl["t0"][k]), 0, 1))
        task = TASKS[tl["task"][k]]
        p0, p1, entry = tl["pos0"][k], tl["pos1"][k], tl["entry"][k]
        target = p0 + tau * (p1 - p0)
        tip, opening = target, 0.0
        if task == "approach":
            tip, opening = entry + (0.5 + 0.5 * tau) * (target - entry), 1.0
        elif task == "grasp":
            opening = 1.0 - tau
        elif task == "cut":
            tip, opening = target - np.array([0.0, TARGET_RADII[1]]), abs(np.sin(2 * np.pi * tau))
        # NOTE: a cut target stays split for the rest of its step (later tasks of the same step).
        same = (tl["step"] == tl["step"][k]) & (np.arange(tl["n"]) <= k)
        cuts = np.flatnonzero(same & (tl["task"] == TASKS.index("cut")))
        slit = 0.0
        if len(cuts):
            c = cuts[-1]
            slit = SLIT * float(np.clip((t - tl["t0"][c]) / (tl["t1"][c] - tl["t0"][c]), 0, 1))
        return {"row": k, "tool": int(tl["tool"][k]), "tip": tip, "entry": entry, "opening": opening,
                "target": target, "slit": slit, "color": int(tl["color"][k])}

    # ------------------------------------------------------------------ pixels
    def render_frame(self, tl: dict, t: float) -> np.ndarray:
        """timeline x time -> float32 [R,R,3] frame: tissue, target blob (split when cut), tool."""
        r, px = self.res, self.px
        oy, ox = tl["offset"]
        img = self.tissue[oy:oy + r, ox:ox + r].copy()
        s = self.state(tl, t)
        ra, rb = TARGET_RADII
        dx, dy = px[None, :] - s["target"][0], px[:, None] - s["target"][1]
        half = s["slit"] / 2  # NOTE: the two halves of a cut target move apart by the slit.
        ell = np.sqrt((np.where(dx < 0, dx + half, dx - half) / ra) ** 2 + (dy / rb) ** 2)
        a = np.clip((1 - ell) * rb * r + 0.5, 0, 1) * (np.abs(dx) >= half)
        rgb = np.asarray(concepts.COLOR_RGB[s["color"]], np.float32) / 255
        img += a[..., None] * (rgb - img)
        shaft, tips, widths = tool_segments(s["tool"], s["tip"], s["entry"], s["opening"])
        a = _seg_alpha(shaft[None, 0], shaft[None, 1], np.array([0.022]), px, r)
        img += a[..., None] * (SHAFT_RGB - img)
        a = _seg_alpha(tips[:, 0], tips[:, 1], widths, px, r)
        img += a[..., None] * (TIP_RGB - img)
        return img

    def render_slide(self, split: str, index: int) -> np.ndarray:
        """-> float32 [R,R,3] non-surgical title slide (dark blue, white title bar and text lines)."""
        r, px = self.res, self.px
        u = stream_uniforms(self.seed, split, index, "video", 8)[3:]
        img = np.empty((r, r, 3), np.float32)
        img[:] = SLIDE_RGB
        rows = [(0.15, 0.25, 0.85)] + [(0.38 + 0.12 * k, 0.43 + 0.12 * k, 0.3 + 0.55 * u[k]) for k in range(4)]
        for y0, y1, x1 in rows:
            on = ((px[:, None] >= y0) & (px[:, None] < y1)) & ((px[None, :] >= 0.15) & (px[None, :] < x1))
            img[on] = 1.0
        return img

    # ------------------------------------------------------------------ text
    def captions(self, c: dict) -> tuple:
        """clip -> (enhanced caption builder, [(char start, char end, row0, row1)] clause -> task rows, raw str)."""
        tl = c["tl"]
        rows = np.flatnonzero((tl["t1"] > c["start"] + 1e-9) & (tl["t0"] < c["end"] - 1e-9))
        b = extras.TextBuilder()
        clauses = []
        if c["level"] == 0:
            ph = int(tl["phase"][rows[0]])
            b.add(PHASES[ph], 11, -1, ph)
            b.add(" phase: ")
            steps = list(dict.fromkeys(tl["step"][rows].tolist()))
            for k, st in enumerate(steps):
                if k:
                    b.add(", then ")
                sel = rows[tl["step"][rows] == st]
                c0, c1 = b.add(STEP_NAMES[st], 11, -1, st)
                clauses.append((c0, c1, int(sel[0]), int(sel[-1])))
            tools = sorted(set(tl["tool"][rows].tolist()))
            b.add(" with ")
            for k, tool in enumerate(tools):
                b.add(" and " if k else "")
                b.add("the ")
                b.add(TOOLS[tool], 4, -1, tool)
        else:
            if c["level"] == 1:
                st = int(tl["step"][rows[0]])
                b.add(STEP_NAMES[st], 11, -1, st)
                b.add(": ")
            for k, row in enumerate(rows.tolist()):
                if k:
                    b.add(", then ")
                c0, _ = b.add("the ")
                b.add(TOOLS[tl["tool"][row]], 4, -1, int(tl["tool"][row]))
                b.add(" ")
                task = TASKS[tl["task"][row]]
                b.add("clips" if task == "cut" and tl["tool"][row] == 3 else VERBS[task], 8, -1, int(tl["task"][row]))
                b.add(" the ")
                b.add(concepts.COLORS[tl["color"][row]], 3, -1, int(tl["color"][row]))
                _, c1 = b.add(" target")
                clauses.append((c0, c1, row, row))
        if not c["descriptive"]:
            raw = f"uh {CHATTER[c['chatter']]}"
        else:
            raw = "okay so um " + b.text.replace(":", " uh").replace(",", " and").replace(" phase", " part")
            for task, word in VERBS.items():
                raw = raw.replace(f" {word} ", f" {RAW_VERBS[task]} ")
            raw += " right"
        return b, clauses, raw

    # ------------------------------------------------------------------ World API
    def sample(self, split: str, index: int, fields: tuple) -> dict:
        """(split, index, fields) -> surgical clip: clip/*, labels/*, multilabel/tools, flags/*, events + opt-in."""
        index = int(index)
        if index < 0:
            raise ValueError(f"index must be >= 0, got {index}")
        c = self.clip(split, index)
        tl, times, t_n = c["tl"], c["times"], self.t_frames
        out = {"has_image": np.bool_(False), "frame_times": times.astype(np.float32),
               "clip/procedure": np.int32(c["procedure"]), "clip/level": np.int32(c["level"]),
               "clip/start": np.float32(c["start"]), "clip/end": np.float32(c["end"])}
        rows = np.flatnonzero((tl["t1"] > c["start"] + 1e-9) & (tl["t0"] < c["end"] - 1e-9))
        mid = self.state(tl, 0.5 * (c["start"] + c["end"]))["row"]
        surg = c["surgical"]
        for key in LABEL_TASKS:
            out[f"labels/{key}"] = np.int32(int(tl[key][mid]) if surg else -1)
        tools = np.zeros(len(TOOLS), np.uint8)
        ev = np.full((MAX_EVENTS, 4), -1, np.int32)
        if surg:
            tools[tl["tool"][rows]] = 1
            # NOTE: a task covers the frames whose times fall inside [t0, t1).
            f_rows = []
            for row in rows[:MAX_EVENTS].tolist():
                inside = np.flatnonzero((times >= tl["t0"][row]) & (times < tl["t1"][row]))
                if len(inside):
                    f_rows.append((tl["tool"][row], TASK_EVENT[tl["task"][row]], inside[0], inside[-1]))
            if f_rows:
                ev[:len(f_rows)] = np.asarray(f_rows, np.int32)
        out["multilabel/tools"] = tools
        out["events"] = ev
        out["flags/is_surgical_content"] = np.bool_(surg)
        out["flags/is_descriptive"] = np.bool_(c["descriptive"] and surg)
        if selected("video", fields):
            if surg:
                frames = np.stack([self.render_frame(tl, float(t)) for t in times])
                vis = np.zeros((t_n, len(TOOLS)), bool)
                vis[np.arange(t_n), [self.state(tl, float(t))["tool"] for t in times]] = True
            else:
                frames = np.repeat(self.render_slide(split, index)[None], t_n, 0)
                vis = np.zeros((t_n, len(TOOLS)), bool)
            full = {"video": (frames * 255 + 0.5).astype(np.uint8), "video/tools": vis}
            out.update({k: v for k, v in full.items() if selected(k, fields)})
        text = ("caption", "captions/raw_narration", "spans/caption") + tuple(extras.MOMENT_SPEC)
        if any(selected(k, fields) for k in text):
            out.update({k: v for k, v in self._text(c, times).items() if selected(k, fields)})
        out.update(splits.meta_fields(split, index, self.config_hash))
        return out

    def _text(self, c: dict, times: np.ndarray) -> dict:
        """clip -> caption, captions/raw_narration, spans/caption, moments [Mo,4] over `caption`."""
        mom = np.full((extras.MAX_MOMENTS, 4), -1, np.int32)
        ev_id = np.full((extras.MAX_MOMENTS,), -1, np.int32)
        queries = [""] * extras.MAX_MOMENTS
        if not c["surgical"]:
            text, spans = "a presentation slide", np.full((extras.MAX_SPANS, 5), -1, np.int32)
            raw = SLIDE_TEXT[c["chatter"] % len(SLIDE_TEXT)]
        else:
            b, clauses, raw = self.captions(c)
            text, spans, tl = b.text, b.span_array(), c["tl"]
            for k, (c0, c1, r0, r1) in enumerate(clauses[:extras.MAX_MOMENTS]):
                inside = np.flatnonzero((times >= tl["t0"][r0]) & (times < tl["t1"][r1]))
                if len(inside):
                    mom[k] = (c0, c1, inside[0], inside[-1])
                    ev_id[k], queries[k] = r0, text[c0:c1]
        return {"caption": text, "captions/raw_narration": raw, "spans/caption": spans, "moments": mom,
                "moments/query": tuple(queries), "moments/event": ev_id, "captions/events": text,
                "spans/events": spans}

    def spec(self, fields: tuple) -> dict:
        """fields -> {path: (shape, dtype)} of `sample` (text: dtype `str`)."""
        t, r, i32, f32 = self.t_frames, self.res, np.dtype(np.int32), np.dtype(np.float32)
        out = {"has_image": ((), np.dtype(bool)), "frame_times": ((t,), f32), "clip/procedure": ((), i32),
               "clip/level": ((), i32), "clip/start": ((), f32), "clip/end": ((), f32)}
        for key in LABEL_TASKS:
            out[f"labels/{key}"] = ((), i32)
        out["multilabel/tools"] = ((len(TOOLS),), np.dtype(np.uint8))
        out["events"] = ((MAX_EVENTS, 4), i32)
        out["flags/is_surgical_content"] = out["flags/is_descriptive"] = ((), np.dtype(bool))
        opt = {"video": ((t, r, r, 3), np.dtype(np.uint8)), "video/tools": ((t, len(TOOLS)), np.dtype(bool)),
               "caption": ((), str), "captions/raw_narration": ((), str),
               "spans/caption": ((extras.MAX_SPANS, 5), i32)}
        opt.update(extras.MOMENT_SPEC)
        out.update({k: v for k, v in opt.items() if selected(k, fields)})
        out.update(META_SPEC)
        return out

    def label(self, split: str, index: int, task: str) -> int:
        """(split, index, 'phase' | 'step' | 'task') -> class at the clip's middle time, -1 for slide clips."""
        if task not in LABEL_TASKS:
            raise ValueError(f"unknown task {task!r} for domain 'surgical'; valid: {', '.join(LABEL_TASKS)}")
        c = self.clip(split, int(index))
        if not c["surgical"]:
            return -1
        return int(c["tl"][task][self.state(c["tl"], 0.5 * (c["start"] + c["end"]))["row"]])

    def num_classes(self, task: str) -> int:
        """'phase' 4, 'step' 12, 'task' 4, 'tool' 4."""
        if task not in CLASS_NAME_TASKS:
            raise ValueError(f"unknown task {task!r} for domain 'surgical'; valid: {', '.join(CLASS_NAME_TASKS)}")
        return len(self.class_names(task))

    @staticmethod
    def class_names(task: str, lang: str = "en") -> tuple:
        """'phase' | 'step' | 'task' | 'tool' -> English class names in label order."""
        if lang != "en":
            raise ValueError(f"surgical class names exist in 'en' only, got lang={lang!r}")
        table = {"phase": PHASES, "step": STEP_NAMES, "task": TASKS, "tool": TOOLS}
        if task not in table:
            raise ValueError(f"unknown task {task!r} for domain 'surgical'; valid: {', '.join(table)}")
        return table[task]
