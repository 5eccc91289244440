"""Video clips of the synthetic world (WORLD.md 3.5): analytic motion, per-frame 2D rendering, events.

Motion is a closed-form function of continuous time t in [0, video.duration]: the center moves as
p0 + v*t folded back into the box where the object stays fully inside the image (a reflection at each
wall is a `bounce` event), and the circumradius is s0 * (1 + g*t) for grow / shrink. Frames are the 2D
renderer (`Raster2D.render`) called once per frame time on the t=0 `SceneSpec` moved to that time.
`Video` gives the World its `sample` / `spec` / `label` for `cfg.kind == "video"`. Action pairs
(`video.action_pairs`) give each of slots 0 and 1 an active window (first / second half of the clip);
opt-in extras (moments, flash, UniVid pairs, order contrast, audio captions, video QA) live in `video_extras.py`.
With `appear` / `disappear` in `video.events`, still objects pop in / out and moving ones fly freely through the
image border at exact analytic crossing times (`pass_time`, `cross_time`); `downsample` box-filters the frames.
"""
from __future__ import annotations

import numpy as np

from vljax.data.world import audio as audio_lib
from vljax.data.world import scene2d
from vljax.data.world import splits
from vljax.data.world import video_extras as extras
from vljax.data.world.kind3d import META_SPEC, selected
from vljax.data.world.raster2d import Raster2D
from vljax.data.world.rng import stream_uniforms

# NOTE: event type ids are part of the data format (WORLD.md 3.5 order): never renumber, only append.
EVENT_TYPES = ("move", "bounce", "grow", "shrink", "appear", "disappear", "flash", "approach", "grasp",
               "carry", "cut")
EVENTS_IMPLEMENTED = ("move", "bounce", "grow", "shrink", "appear", "disappear")
VIS_EVENTS = ("appear", "disappear")
# Appear / disappear times (fractions of the duration): appear in [0.1, 0.4], disappear in [0.6, 0.9], so an object
# that does both is shown for at least 0.2 of the clip.
APPEAR_WINDOW, DISAPPEAR_WINDOW = (0.1, 0.4), (0.6, 0.9)
# NOTE: the renderer has no per-frame validity hole (valid slots are contiguous), so a hidden object is drawn with
# this circumradius at the image corner (0, 0), a pixel corner: the nearest pixel center is 0.71 px away, so its
# alpha is 0 everywhere (no pixel, no box) while its slot and paint order stay unchanged.
HIDDEN_SCALE = 1e-6
SIZE_CHANGES = ("static", "grow", "shrink")
# Speed bins in image sides per second.
SPEED_VALUES = {"slow": 0.2, "medium": 0.4, "fast": 0.6}
# Relative size change over the whole clip: s(duration) = s0 * (1 + GROWTH[k]).
GROWTH = {"static": 0.0, "grow": 0.5, "shrink": -0.4}
# Compass directions clockwise from up; unit vectors in image coordinates (y down).
DIRECTIONS = {4: ("up", "right", "down", "left"),
              8: ("up", "up right", "right", "down right", "down", "down left", "left", "up left")}
EVENTS_PER_OBJECT = 6
LABEL_TASKS = ("action",)
# NOTE: "video" selects its sub-paths except the costly opt-in segmentation ones (WORLD.md 3.5).
VIDEO_FIELDS = ("video", "video/boxes", "video/visible", "video/masks", "video/instance_map")
AUDIO_FIELDS = ("audio/wave", "audio/sources", "audio/logmel")
_OPT_IN = ("video/masks", "video/instance_map", "audio/logmel", "events/time")
QA_FIELDS = ("qa/question", "qa/answer", "qa/type", "qa/template", "qa/target")
PAIR_FIELDS = ("pair/task", "pair/source", "pair/target", "pair/perm")
CONTRAST_FIELDS = ("contrast/video", "contrast/caption", "contrast/events", "contrast/factor")


def wanted(path: str, fields: tuple) -> bool:
    """True when `path` is requested: by prefix, except opt-in masks / instance maps (exact path only)."""
    return path in fields if path in _OPT_IN else selected(path, fields)


def _unit(n_dirs: int) -> np.ndarray:
    """n_dirs -> float64 [n_dirs + 1, 2] unit velocity per direction id; the last row (static) is 0."""
    ang = np.arange(n_dirs) * (2 * np.pi / n_dirs)
    out = np.zeros((n_dirs + 1, 2))
    out[:n_dirs, 0], out[:n_dirs, 1] = np.sin(ang), -np.cos(ang)
    out[np.abs(out) < 1e-12] = 0.0
    return out


def reflect(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """[...] unfolded coordinate x [...] lo, hi -> [...] x folded into [lo, hi] by mirror reflections."""
    span = np.maximum(hi - lo, 1e-12)  # NOTE: an object as wide as the image has no room to move.
    u = np.mod(x - lo, 2 * span)
    return lo + np.where(u > span, 2 * span - u, u)


def bounce_times(x0: float, v: float, lo: float, hi: float, duration: float) -> np.ndarray:
    """Scalar start x0, speed v, walls [lo, hi] -> float64 [k] sorted times in (0, duration] of wall hits."""
    span = hi - lo
    if v == 0 or span <= 0:
        return np.zeros(0)
    # NOTE: the unfolded coordinate u = x0 - lo + v t hits a wall whenever u is a multiple of span.
    u0, u1 = x0 - lo, x0 - lo + v * duration
    a, b = sorted((u0, u1))
    ks = np.arange(np.floor(a / span), np.ceil(b / span) + 1)
    t = (ks * span - u0) / v
    return np.sort(t[(t > 1e-9) & (t <= duration + 1e-9)])


def cross_time(l_a: float, v_a: float, s0: float, g: float, t_c: float, enter: bool) -> float:
    """Free flight p(t) = l_a + v_a (t - t_c), radius s0 (1 + g t) -> time its extent [p - s, p + s] enters the
    band [0, 1] through the edge behind it (`enter`) or leaves it through the edge ahead; inf for v_a = 0 on exit,
    -inf on entry (a still axis never limits)."""
    if v_a == 0:
        return -np.inf if enter else np.inf
    sp = abs(v_a)
    if enter:
        # NOTE: distance from the entry edge (behind) to l_a; the far side of the extent touches it at t*.
        d = l_a if v_a > 0 else 1.0 - l_a
        return (sp * t_c - s0 - d) / (sp + s0 * g)
    d = 1.0 - l_a if v_a > 0 else l_a
    return (sp * t_c + s0 + d) / (sp - s0 * g)


def pass_time(l: np.ndarray, v: np.ndarray, s0: float, g: float, t: float, enter: bool) -> float | None:
    """Layout center l [2], velocity v [2] -> time t_c at which a free-flying object is at l such that its bounding
    square first touches the image at time t (`enter`) or has just fully left it at time t; None when the radius
    grows or shrinks as fast as the object moves (no single crossing)."""
    out = []
    for a in range(2):
        sp = abs(float(v[a]))
        if sp == 0:
            continue
        if sp - abs(s0 * g) <= 1e-6:
            return None
        la = float(l[a])
        if enter:
            d = la if v[a] > 0 else 1.0 - la
            out.append(((sp + s0 * g) * t + s0 + d) / sp)
        else:
            d = 1.0 - la if v[a] > 0 else la
            out.append(((sp - s0 * g) * t - s0 - d) / sp)
    if not out:
        return None
    # NOTE: the square is inside only when both axes are (entry = the later axis), outside when either is
    # (exit = the earlier axis); per-axis times increase with t_c, so min / max of the per-axis t_c solves it.
    return min(out) if enter else max(out)


class Video:
    """Clip sampler of one World config: `sample(split, i, fields) -> dict`, `spec(fields) -> schema`."""

    def __init__(self, cfg, config_hash: str):
        if cfg.kind != "video":
            raise ValueError(f"kind={cfg.kind!r} is not 'video'")
        vc = cfg.video
        if int(vc.frames) < 1:
            raise ValueError(f"video.frames={vc.frames} must be >= 1")
        if not float(vc.duration) > 0:
            raise ValueError(f"video.duration={vc.duration} must be > 0")
        if int(vc.directions) not in DIRECTIONS:
            raise ValueError(f"video.directions={vc.directions}; valid: 4, 8")
        bad = [s for s in vc.speeds if s not in SPEED_VALUES]
        if bad or not vc.speeds:
            raise ValueError(f"video.speeds={tuple(vc.speeds)}: unknown or empty ({bad}); "
                             f"valid: {', '.join(SPEED_VALUES)}")
        bad = [s for s in vc.size_changes if s not in SIZE_CHANGES]
        if bad or not vc.size_changes:
            raise ValueError(f"video.size_changes={tuple(vc.size_changes)}: unknown or empty ({bad}); "
                             f"valid: {', '.join(SIZE_CHANGES)}")
        bad = [e for e in vc.events if e not in EVENTS_IMPLEMENTED]
        if bad:
            raise ValueError(f"video.events={tuple(vc.events)}: {bad} not implemented; "
                             f"valid: {', '.join(EVENTS_IMPLEMENTED)}")
        if not 0.0 <= float(vc.static_caption_p) <= 1.0:
            raise ValueError(f"video.static_caption_p={vc.static_caption_p} outside [0, 1]")
        if not 0.0 <= float(vc.flash_p) <= 1.0:
            raise ValueError(f"video.flash_p={vc.flash_p} outside [0, 1]")
        if vc.action_pairs and int(cfg.objects.count[0]) < 2:
            raise ValueError(f"video.action_pairs needs objects.count >= 2, got {tuple(cfg.objects.count)}")
        if vc.action_pairs and "static" not in vc.size_changes:
            raise ValueError(f"video.action_pairs needs 'static' in video.size_changes={tuple(vc.size_changes)} "
                             "(objects other than the pair stay still)")
        av = tuple(cfg.caption.av_subset)
        if len(av) != 2 or min(av) < 0 or sum(av) > 1:
            raise ValueError(f"caption.av_subset={av} must be two shares >= 0 summing to <= 1")
        if cfg.style in ("noisy_bg", "texture_noise"):
            raise ValueError(f"style={cfg.style!r} is not implemented for kind 'video'")
        self.vis = tuple(e for e in VIS_EVENTS if e in vc.events)
        if self.vis and vc.action_pairs:
            raise ValueError(f"video.events={tuple(vc.events)}: appear / disappear cannot be combined with "
                             "video.action_pairs")
        ac = cfg.audio
        self.audio = bool(ac.enabled)
        if self.audio:
            if int(ac.sample_rate) * float(vc.duration) < audio_lib.N_FFT:
                raise ValueError(f"audio.sample_rate={ac.sample_rate} x video.duration={vc.duration} gives fewer "
                                 f"than n_fft={audio_lib.N_FFT} samples")
            if int(ac.n_mels) < 1:
                raise ValueError(f"audio.n_mels={ac.n_mels} must be >= 1")
            if not 0.0 <= float(ac.offscreen_p) <= 1.0:
                raise ValueError(f"audio.offscreen_p={ac.offscreen_p} outside [0, 1]")
            self.sample_rate = int(ac.sample_rate)
            self.n_samples = int(round(self.sample_rate * float(vc.duration)))
            self.offscreen_p = float(ac.offscreen_p)
            self.mel = audio_lib.mel_filters(self.sample_rate, int(ac.n_mels))
        self.cfg, self.config_hash = cfg, config_hash
        self.seed = int(cfg.seed)
        self.scene2d = scene2d.Scene2D(cfg)
        self.raster = Raster2D(cfg.resolution, cfg.antialias, cfg.marks.size, cfg.seed)
        self.o = int(cfg.objects.max)
        self.t_frames = int(vc.frames)
        self.duration = float(vc.duration)
        self.n_dirs = int(vc.directions)
        self.dir_names = DIRECTIONS[self.n_dirs] + ("static",)
        self.unit = _unit(self.n_dirs)
        self.speed_names = tuple(vc.speeds)
        self.speeds = np.array([SPEED_VALUES[s] for s in self.speed_names])
        self.sc_names = tuple(vc.size_changes)
        self.growth = np.array([GROWTH[s] for s in self.sc_names]) / self.duration
        self.bounce = "bounce" in vc.events
        self.static_caption_p = float(vc.static_caption_p)
        self.action_pairs = bool(vc.action_pairs)
        self.flash_p = float(vc.flash_p)
        self.av_subset = tuple(float(x) for x in cfg.caption.av_subset)
        self.n_colors = int(cfg.objects.colors)
        # NOTE: `video/flash` joins the "video" prefix only when flashes exist, so flash-free schemas are unchanged.
        self.video_fields = VIDEO_FIELDS + (("video/flash",) if self.flash_p > 0 else ())
        self.n_events = EVENTS_PER_OBJECT * self.o
        # NOTE: `downsample` renders at `resolution` and box-filters RGB frames (UniVid's 16 px = 32 / 2).
        self.down = int(cfg.downsample)
        self.qa_types_requested = tuple(cfg.qa.types)
        self.qa_types = tuple(t for t in cfg.qa.types if t in extras.VIDEO_QA_TYPES)
        self.qa_q = int(cfg.qa.per_sample)
        # NOTE: frames sample the centers of T equal time bins, so any T sees the same motion.
        self.frame_times = ((np.arange(self.t_frames) + 0.5) * (self.duration / self.t_frames)).astype(np.float32)

    # ------------------------------------------------------------------ motion
    def motion(self, split: str, index: int, swap_order: bool = False) -> dict:
        """(split, index) -> {spec (t=0), main, direction/speed/size_change int32 [O], velocity [O,2], growth [O],
        on/off float64 [O] active window in seconds, extra uniforms [N_EXTRA]}.

        With `video.action_pairs`, slot 0 acts in [0, D/2] and slot 1 in [D/2, D] (both move; the others stay
        still); `swap_order` swaps the two windows (the `order` contrast: same actions, reversed order).
        """
        spec, info = self.scene2d.sample(split, index)
        o = self.o
        # NOTE: extras come after the 3*O+1 motion draws of the same stream: a Philox prefix never changes.
        # NOTE: appear / disappear draws (3 per slot) come after the extras, so they change nothing before them.
        n_vis = 3 * o if self.vis else 0
        uu = stream_uniforms(self.seed, split, index, "video", 3 * o + 1 + extras.N_EXTRA + n_vis)
        u = uu[:3 * o].reshape(3, o)
        n_d = self.n_dirs + 1
        direction = np.minimum((u[0] * n_d).astype(np.int32), n_d - 1)
        on, off = np.zeros(o), np.full(o, self.duration)
        if self.action_pairs:
            direction[:2] = np.minimum((u[0, :2] * self.n_dirs).astype(np.int32), self.n_dirs - 1)
            direction[2:] = self.n_dirs
            half = self.duration / 2
            first, second = (1, 0) if swap_order else (0, 1)
            off[first], on[second] = half, half
        speed = np.minimum((u[1] * len(self.speeds)).astype(np.int32), len(self.speeds) - 1)
        size_change = np.minimum((u[2] * len(self.sc_names)).astype(np.int32), len(self.sc_names) - 1)
        if self.action_pairs:
            size_change[2:] = self.sc_names.index("static")
        valid = spec.valid
        for a in (direction, speed, size_change):
            a[~valid] = -1
        static = direction == self.n_dirs
        speed[static] = -1  # NOTE: a static object has no speed bin.
        vel = self.unit[np.where(valid, direction, self.n_dirs)] * np.where(speed >= 0, self.speeds[speed], 0)[:, None]
        g = np.where(valid, self.growth[np.maximum(size_change, 0)], 0.0)
        # NOTE: the walls keep the whole object (at its largest over the clip) inside the image.
        s_max = spec.scale.astype(np.float64) * np.maximum(1.0, 1.0 + g * (off - on))
        lo = np.minimum(s_max, 0.5)
        p0 = np.clip(spec.center.astype(np.float64), lo[:, None], 1 - lo[:, None])
        m = {"spec": spec, "main": int(info["main"]), "direction": direction, "speed": speed,
             "size_change": size_change, "velocity": vel, "growth": g, "p0": p0, "lo": lo,
             "static_caption": bool(uu[3 * o] < self.static_caption_p), "on": on, "off": off,
             "extra": uu[3 * o + 1:3 * o + 1 + extras.N_EXTRA],
             "free": np.zeros(o, bool), "t_show": np.zeros(o), "t_hide": np.full(o, np.inf)}
        if self.vis:
            self._plan_visibility(m, uu[3 * o + 1 + extras.N_EXTRA:].reshape(3, o))
        return m

    def _plan_visibility(self, m: dict, u: np.ndarray) -> None:
        """motion dict x uniforms [3, O] -> fills free / t_show / t_hide (and p0 of free-flying objects) in place.

        Per valid object, with probability 1/2 one of the enabled kinds (appear, disappear; both only for still
        objects). A still object pops in at t_show / out at t_hide. A moving one flies freely (no walls): it enters
        the frame at t_show (its bounding square first touches the image) or has fully left it at t_hide; then both
        crossing times of its straight track are exact and either becomes an event when it falls inside the clip.
        """
        spec, dur = m["spec"], self.duration
        opts_move = self.vis
        opts_still = self.vis + (("both",) if len(self.vis) == 2 else ())
        for j in np.flatnonzero(spec.valid).tolist():
            moving = m["direction"][j] != self.n_dirs
            opts = opts_move if moving else opts_still
            if u[0, j] < 0.5:
                continue
            kind = opts[min(int((u[0, j] - 0.5) * 2 * len(opts)), len(opts) - 1)]
            t_a = dur * (APPEAR_WINDOW[0] + (APPEAR_WINDOW[1] - APPEAR_WINDOW[0]) * u[1, j])
            t_d = dur * (DISAPPEAR_WINDOW[0] + (DISAPPEAR_WINDOW[1] - DISAPPEAR_WINDOW[0]) * u[2, j])
            if moving:
                lay = spec.center[j].astype(np.float64)
                v, s0, g = m["velocity"][j], float(spec.scale[j]), float(m["growth"][j])
                t_c = pass_time(lay, v, s0, g, t_a if kind == "appear" else t_d, kind == "appear")
                if t_c is not None:
                    m["free"][j] = True
                    m["p0"][j] = lay - v * t_c
                    m["t_show"][j] = max(0.0, max(cross_time(lay[a], v[a], s0, g, t_c, True) for a in range(2)))
                    m["t_hide"][j] = min(cross_time(lay[a], v[a], s0, g, t_c, False) for a in range(2))
                    continue
            # NOTE: still objects (and movers whose size changes as fast as they move) pop in / out in place.
            if kind in ("appear", "both"):
                m["t_show"][j] = t_a
            if kind in ("disappear", "both"):
                m["t_hide"][j] = t_d

    def state_at(self, m: dict, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """motion dict x float [T] times -> (centers float32 [T,O,2], scales float32 [T,O])."""
        # NOTE: each object moves only inside its active window [on, off] (action pairs); tau = time moved so far.
        t = np.clip(np.asarray(t, np.float64)[:, None], m["on"][None], m["off"][None]) - m["on"][None]
        lo = m["lo"][None, :, None]
        raw = m["p0"][None] + m["velocity"][None] * t[:, :, None]
        centers = reflect(raw, lo, 1 - lo) if self.bounce else np.clip(raw, lo, 1 - lo)
        if m["free"].any():
            centers[:, m["free"]] = raw[:, m["free"]]  # NOTE: free-flying objects cross the walls.
        scales = m["spec"].scale[None].astype(np.float64) * (1 + m["growth"][None] * t)
        return centers.astype(np.float32), scales.astype(np.float32)

    def bounces(self, m: dict) -> list:
        """motion dict -> O sorted float64 arrays of wall-hit times in (0, duration] (empty when no bounce)."""
        out = [np.zeros(0)] * self.o
        if not self.bounce:
            return out
        for j in np.flatnonzero(m["spec"].valid & (m["direction"] != self.n_dirs) & ~m["free"]):
            lo = m["lo"][j]
            on, span = m["on"][j], m["off"][j] - m["on"][j]
            out[j] = on + np.sort(np.concatenate([bounce_times(m["p0"][j, a], m["velocity"][j, a], lo, 1 - lo,
                                                               span) for a in range(2)]))
            if self.vis:
                # NOTE: a hidden (popped-out) object makes no wall-hit event.
                out[j] = out[j][(out[j] >= m["t_show"][j]) & (out[j] < m["t_hide"][j])]
        return out

    def events(self, m: dict, bounces: list) -> np.ndarray:
        """motion dict x per-slot bounce times -> int32 [Ev, 4] (slot, type, start, end frame), -1 padded."""
        return self.event_table(m, bounces)[0]

    def event_table(self, m: dict, bounces: list) -> tuple:
        """motion dict x bounce times -> (int32 [Ev,4] events, float32 [Ev,2] exact (start, end) seconds, -1 pad).

        Rows are slot-major: move, grow / shrink, bounces (at most 4 and at most what the 6 rows per slot leave),
        appear, disappear. An instant event sits at the frame bin that holds its time.
        """
        out = np.full((self.n_events, 4), -1, np.int32)
        times = np.full((self.n_events, 2), -1.0, np.float32)
        last = self.t_frames - 1
        rows, secs = [], []
        at = lambda t: int(np.clip(np.floor(t * self.t_frames / self.duration), 0, last))  # noqa: E731
        for j in np.flatnonzero(m["spec"].valid):
            # NOTE: an action window [on, off] covers the frames whose bins overlap it.
            on, off = float(m["on"][j]), float(m["off"][j])
            f0 = int(np.clip(np.floor(on * self.t_frames / self.duration + 1e-9), 0, last))
            f1 = int(np.clip(np.ceil(off * self.t_frames / self.duration - 1e-9) - 1, f0, last))
            base = []
            if m["direction"][j] != self.n_dirs:
                base.append(((j, 0, f0, f1), (on, off)))
            sc = self.sc_names[m["size_change"][j]]
            if sc != "static":
                base.append(((j, EVENT_TYPES.index(sc), f0, f1), (on, off)))
            vis = []
            t_show, t_hide = float(m["t_show"][j]), float(m["t_hide"][j])
            if 0 < t_show <= self.duration:
                vis.append(((j, EVENT_TYPES.index("appear"), at(t_show), at(t_show)), (t_show, t_show)))
            if t_hide <= self.duration:
                vis.append(((j, EVENT_TYPES.index("disappear"), at(t_hide), at(t_hide)), (t_hide, t_hide)))
            cap = min(EVENTS_PER_OBJECT - 2, EVENTS_PER_OBJECT - len(base) - len(vis))
            bnc = [((j, 1, at(tb), at(tb)), (float(tb), float(tb))) for tb in bounces[j][:cap]]
            for r, t in base + bnc + vis:
                rows.append(r)
                secs.append(t)
        if rows:
            out[:len(rows)] = np.asarray(rows, np.int32)
            times[:len(rows)] = np.asarray(secs, np.float32)
        return out, times

    def action(self, m: dict, slot: int) -> int:
        """motion dict x slot -> action id: (direction * n_speeds + speed) * n_sizes + size; static last."""
        if slot < 0:
            return -1
        n_sp, n_sc = len(self.speeds), len(self.sc_names)
        d, sc = int(m["direction"][slot]), int(m["size_change"][slot])
        # NOTE: static objects have no speed, so they get n_sizes classes of their own (no empty classes).
        motion = self.n_dirs * n_sp if d == self.n_dirs else d * n_sp + int(m["speed"][slot])
        return motion * n_sc + sc

    def caption(self, m: dict, slot: int) -> str:
        """motion dict x slot -> temporal caption, e.g. 'the red circle moves up fast' (or identity only)."""
        return self.temporal(m, slot).text

    def temporal(self, m: dict, slot: int) -> extras.TextBuilder:
        """motion dict x main slot -> `captions/temporal` builder (spans: color, shape, action).

        Action pairs: 'the red circle moves up fast, then the blue square moves left slow' in window order;
        identity only ('the red circle and the blue square') with probability `video.static_caption_p`.
        """
        b = extras.TextBuilder()
        if slot < 0:
            return b
        slots = [slot]
        if self.action_pairs:
            # NOTE: identity-only captions name the pair in slot order, so they carry no order information.
            slots = [0, 1] if m["static_caption"] else sorted((0, 1), key=lambda j: m["on"][j])
        for k, j in enumerate(slots):
            if k:
                b.add(" and " if m["static_caption"] else ", then ")
            self._phrase(b, m, j)
        return b

    def verb(self, m: dict, slot: int) -> str:
        """motion dict x slot -> 'moves up fast' / 'stays still' (+ ' and grows' / ' and shrinks')."""
        d = int(m["direction"][slot])
        text = "stays still" if d == self.n_dirs else f"moves {self.dir_names[d]} {self.speed_names[m['speed'][slot]]}"
        sc = self.sc_names[m["size_change"][slot]]
        return text + (f" and {sc}s" if sc != "static" else "")

    def _phrase(self, b: extras.TextBuilder, m: dict, slot: int) -> None:
        """Appends 'the red circle' (+ ' moves up fast ...' unless the caption is static)."""
        spec = m["spec"]
        b.noun(int(spec.color[slot]), int(spec.shape[slot]), slot)
        if not m["static_caption"]:  # NOTE: `video.static_caption_p`: identity-only captions (no motion words).
            b.add(" ")
            b.add(self.verb(m, slot), extras.SPAN_ACTION, slot, self.action(m, slot))

    def event_verbs(self, m: dict, events: np.ndarray) -> list:
        """int32 [Ev,4] events -> clause verb per row ('moves up fast', 'bounces', 'grows', ...; '' = padding)."""
        out = []
        for slot, typ, _, _ in events.tolist():
            if slot < 0:
                out.append("")
            elif typ == 0:
                d = int(m["direction"][slot])
                out.append(f"moves {self.dir_names[d]} {self.speed_names[m['speed'][slot]]}")
            else:
                out.append(EVENT_TYPES[typ] + "s")
        return out

    # ------------------------------------------------------------------ World API
    def sample(self, split: str, index: int, fields: tuple) -> dict:
        """(split, index, fields) -> {path: array | str}: ground truth + opt-in video / captions + meta/*."""
        index = int(index)
        if index < 0:
            raise ValueError(f"index must be >= 0, got {index}")
        if not self.qa_types and any(f == "qa" or f.startswith("qa/") for f in fields):
            # NOTE: image QA types do not apply to clips; without this a request for qa returned nothing.
            raise ValueError(f"video worlds generate qa only for qa.types in {extras.VIDEO_QA_TYPES}; "
                             f"this config has qa.types={tuple(self.qa_types_requested)}")
        m = self.motion(split, index)
        spec = m["spec"]
        out = {"has_image": np.bool_(False)}
        for k in ("shape", "color", "size", "texture"):
            out[f"objects/{k}"] = getattr(spec, k)
        out["objects/scale"] = spec.scale
        out["objects/center"] = m["p0"].astype(np.float32)
        out["objects/valid"] = spec.valid
        out["objects/direction"] = m["direction"]
        out["objects/speed"] = m["speed"]
        out["objects/size_change"] = m["size_change"]
        out["num_objects"] = np.int32(spec.num_objects)
        bounces = self.bounces(m)
        out["events"], ev_time = self.event_table(m, bounces)
        if wanted("events/time", fields):
            out["events/time"] = ev_time
        out["labels/action"] = np.int32(self.action(m, m["main"]))
        out["frame_times"] = self.frame_times
        want = tuple(k for k in self.video_fields if wanted(k, fields))
        frames = {}  # NOTE: flash-free renders, shared by video, pair/* and contrast/*.
        if want:
            out.update(self._render(m, want, frames))
        if selected("captions/temporal", fields):
            out["captions/temporal"] = self.caption(m, m["main"])
        if any(selected(k, fields) for k in extras.MOMENT_SPEC):
            full = extras.moments(out["events"], self.event_verbs(m, out["events"]), spec.color, spec.shape)
            out.update({k: v for k, v in full.items() if selected(k, fields)})
        if any(selected(k, fields) for k in PAIR_FIELDS):
            out.update({k: v for k, v in self._pair(m, frames).items() if selected(k, fields)})
        if self.qa_types and any(selected(k, fields) for k in QA_FIELDS):
            u = stream_uniforms(self.seed, split, index, "qa", 4 * self.qa_q).reshape(self.qa_q, 4)
            full = extras.video_qa(self.qa_types, u, spec.color, spec.shape, spec.valid, m["direction"],
                                   self.dir_names, m["t_show"], self.duration)
            out.update({k: v for k, v in full.items() if selected(k, fields)})
        if self.action_pairs and any(selected(k, fields) for k in CONTRAST_FIELDS):
            out.update({k: v for k, v in self._contrast(split, index).items() if selected(k, fields)})
        if self.audio and any(wanted(k, fields) for k in AUDIO_FIELDS + tuple(extras.AV_SPEC)):
            u = stream_uniforms(self.seed, split, index, "audio", 6 * audio_lib.MAX_TONES)
            src = audio_lib.draw_tones(u, bounces, self.offscreen_p, self.duration, self.sample_rate)
            full = {"audio/sources": src}
            if any(wanted(k, fields) for k in ("audio/wave", "audio/logmel")):
                full["audio/wave"] = audio_lib.synthesize(src, self.n_samples, self.sample_rate)
            if wanted("audio/logmel", fields):
                full["audio/logmel"] = audio_lib.logmel(full["audio/wave"], self.mel)
            if any(selected(k, fields) for k in extras.AV_SPEC):
                subset = extras.av_subset_id(float(m["extra"][15]), self.av_subset)
                full.update(extras.av_captions(self.temporal(m, m["main"]), src, spec.color, spec.shape, subset))
            out.update({k: v for k, v in full.items() if wanted(k, fields)})
        out.update(splits.meta_fields(split, index, self.config_hash))
        return out

    def frames(self, m: dict, spec=None, inst: bool = False) -> tuple:
        """motion dict (x edited t=0 SceneSpec) -> (video u8 [T,H,W,3], boxes f32 [T,O,4], instance map i16 [T,H,W])."""
        r, spec, t_n, o = self.cfg.resolution, m["spec"] if spec is None else spec, self.t_frames, self.o
        centers, scales = self.state_at(m, self.frame_times)
        if self.vis:
            # NOTE: outside [t_show, t_hide) an object is hidden (free flyers are then wholly outside the image
            # anyway); parking it at the corner keeps the render window on the canvas.
            ft = self.frame_times.astype(np.float64)[:, None]
            hid = (ft < m["t_show"][None]) | (ft >= m["t_hide"][None])
            scales = np.where(hid, np.float32(HIDDEN_SCALE), scales)
            centers = np.where(hid[..., None], np.float32(0), centers)
        video = np.empty((t_n, r, r, 3), np.uint8)
        boxes = np.empty((t_n, o, 4), np.float32)
        imap = np.empty((t_n, r, r), np.int16) if inst else None
        for i in range(t_n):
            rend = self.raster.render(spec.replace(center=centers[i], scale=scales[i]))
            video[i], boxes[i] = rend["image"], rend["boxes"]
            if inst:
                imap[i] = rend["instance_map"]
        return extras.box_down(video, self.down), boxes, imap

    def _render(self, m: dict, want: tuple, cache: dict) -> dict:
        """motion dict x wanted video fields -> {video u8 [T,H,W,3], video/boxes f32 [T,O,4], ...}; fills `cache`."""
        need_inst = "video/instance_map" in want or "video/masks" in want
        video, boxes, inst = self.frames(m, inst=need_inst)
        cache["video"], cache["instance_map"] = video, inst
        full = {"video/boxes": boxes, "video/visible": boxes[..., 2] > boxes[..., 0]}
        if self.flash_p > 0:
            flags, kind, origin = extras.flash_plan(m["extra"][:4], self.t_frames, self.flash_p)
            full["video/flash"] = flags
            if "video" in want and flags.any():
                video = video.copy()
                extras.apply_flash(video, flags, kind, origin)
        full["video"] = video
        if inst is not None:
            full["video/instance_map"] = inst
            full["video/masks"] = inst[:, None] == np.arange(self.o, dtype=np.int16)[None, :, None, None]
        return {k: full[k] for k in want}

    def _pair(self, m: dict, cache: dict) -> dict:
        """motion dict -> UniVid pair/{task, source, target, perm} (flash-free frames; perm -1 unless recolor)."""
        u = m["extra"]
        task = extras.PAIR_TASKS[min(int(u[4] * len(extras.PAIR_TASKS)), len(extras.PAIR_TASKS) - 1)]
        perm = np.full(self.n_colors, -1, np.int32)
        if cache.get("video") is None or (task in ("segment", "unsegment") and cache.get("instance_map") is None):
            cache["video"], _, cache["instance_map"] = self.frames(m, inst=task in ("segment", "unsegment"))
        video = cache["video"]
        if task == "reverse":
            source, target = video, video[::-1].copy()
        elif task == "recolor":
            perm = extras.derangement(u[5:15], self.n_colors)
            spec = m["spec"]
            color, rgb = extras.recolor_rgb(spec.rgb, spec.color, perm)
            source, target = video, self.frames(m, spec.replace(color=color, rgb=rgb))[0]
        else:
            masks = extras.box_down(extras.mask_video(cache["instance_map"]), self.down)
            source, target = (video, masks) if task == "segment" else (masks, video)
        return {"pair/task": task, "pair/source": source, "pair/target": target, "pair/perm": perm}

    def _contrast(self, split: str, index: int) -> dict:
        """(split, index) -> contrast/{video, caption, events, factor}: the `order` contrast of an action pair."""
        m = self.motion(split, index, swap_order=True)
        return {"contrast/video": self.frames(m)[0], "contrast/caption": self.caption(m, m["main"]),
                "contrast/events": self.events(m, self.bounces(m)),
                "contrast/factor": np.int32(extras.CONTRAST_FACTORS.index("order"))}

    def spec(self, fields: tuple) -> dict:
        """fields -> {path: (shape, dtype)} of `sample` (text: dtype `str`)."""
        o, t, r = self.o, self.t_frames, int(self.cfg.resolution)
        rd = r // self.down
        i32 = np.dtype(np.int32)
        out = {"has_image": ((), np.dtype(bool))}
        for k in ("shape", "color", "size", "texture"):
            out[f"objects/{k}"] = ((o,), i32)
        out["objects/scale"] = ((o,), np.dtype(np.float32))
        out["objects/center"] = ((o, 2), np.dtype(np.float32))
        out["objects/valid"] = ((o,), np.dtype(bool))
        for k in ("direction", "speed", "size_change"):
            out[f"objects/{k}"] = ((o,), i32)
        out["num_objects"] = ((), i32)
        out["events"] = ((self.n_events, 4), i32)
        out["labels/action"] = ((), i32)
        out["frame_times"] = ((t,), np.dtype(np.float32))
        if wanted("events/time", fields):
            out["events/time"] = ((self.n_events, 2), np.dtype(np.float32))
        shapes = {"video": ((t, rd, rd, 3), np.uint8), "video/boxes": ((t, o, 4), np.float32),
                  "video/visible": ((t, o), bool), "video/masks": ((t, o, r, r), bool),
                  "video/instance_map": ((t, r, r), np.int16), "video/flash": ((t,), bool)}
        for k in self.video_fields:
            if wanted(k, fields):
                out[k] = (shapes[k][0], np.dtype(shapes[k][1]))
        if selected("captions/temporal", fields):
            out["captions/temporal"] = ((), str)
        extra = dict(extras.MOMENT_SPEC)
        extra.update({"pair/task": ((), str), "pair/source": ((t, rd, rd, 3), np.dtype(np.uint8)),
                      "pair/target": ((t, rd, rd, 3), np.dtype(np.uint8)),
                      "pair/perm": ((self.n_colors,), i32)})
        if self.action_pairs:
            extra.update({"contrast/video": ((t, rd, rd, 3), np.dtype(np.uint8)), "contrast/caption": ((), str),
                          "contrast/events": ((self.n_events, 4), i32), "contrast/factor": ((), i32)})
        if self.audio:
            extra.update(extras.AV_SPEC)
        if self.qa_types:
            q = (self.qa_q,)
            extra.update({"qa/question": (q, str), "qa/answer": (q, str), "qa/type": (q, i32),
                          "qa/template": (q, i32), "qa/target": (q, i32)})
        out.update({k: v for k, v in extra.items() if selected(k, fields)})
        if self.audio:
            n_mels = self.mel.shape[1]
            frames = 1 + (self.n_samples - audio_lib.N_FFT) // audio_lib.HOP
            shapes = {"audio/wave": ((self.n_samples,), np.float32),
                      "audio/sources": ((audio_lib.MAX_TONES, 5), np.int32),
                      "audio/logmel": ((frames, n_mels), np.float32)}
            for k in AUDIO_FIELDS:
                if wanted(k, fields):
                    out[k] = (shapes[k][0], np.dtype(shapes[k][1]))
        out.update(META_SPEC)
        return out

    def label(self, split: str, index: int, task: str) -> int:
        """(split, index, 'action') -> action class of the main object, without rendering."""
        if task not in LABEL_TASKS:
            raise ValueError(f"unknown task {task!r} for kind 'video'; valid: {', '.join(LABEL_TASKS)}")
        m = self.motion(split, int(index))
        return self.action(m, m["main"])

    CLASS_NAME_TASKS = LABEL_TASKS

    def class_names(self, task: str, lang: str = "en") -> tuple:
        """'action' -> descriptive names in label order, e.g. 'move up fast', 'stay still and grow' (X-CLIP)."""
        if task not in LABEL_TASKS or lang != "en":
            raise ValueError(f"video class names: task {task!r} / lang {lang!r}; valid: action / en")
        out = []
        for motion in range(self.n_dirs * len(self.speeds) + 1):
            d, sp = divmod(motion, len(self.speeds))
            base = "stay still" if d == self.n_dirs else f"move {self.dir_names[d]} {self.speed_names[sp]}"
            out += [base + (f" and {sc}" if sc != "static" else "") for sc in self.sc_names]
        return tuple(out)

    def num_classes(self, task: str) -> int:
        """'action' -> (directions * speeds + 1 static) * size_changes."""
        if task not in LABEL_TASKS:
            raise ValueError(f"unknown task {task!r} for kind 'video'; valid: {', '.join(LABEL_TASKS)}")
        return (self.n_dirs * len(self.speeds) + 1) * len(self.sc_names)
