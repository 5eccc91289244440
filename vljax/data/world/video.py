"""Video clips of the synthetic world (WORLD.md 3.5): analytic motion, per-frame 2D rendering, events.

Motion is a closed-form function of continuous time t in [0, video.duration]: the center moves as
p0 + v*t folded back into the box where the object stays fully inside the image (a reflection at each
wall is a `bounce` event), and the circumradius is s0 * (1 + g*t) for grow / shrink. Frames are the 2D
renderer (`Raster2D.render`) called once per frame time on the t=0 `SceneSpec` moved to that time.
`Video` gives the World its `sample` / `spec` / `label` for `cfg.kind == "video"`.
"""
from __future__ import annotations

import numpy as np

from vljax.data.world import audio as audio_lib
from vljax.data.world import concepts
from vljax.data.world import scene2d
from vljax.data.world import splits
from vljax.data.world.kind3d import META_SPEC, selected
from vljax.data.world.raster2d import Raster2D
from vljax.data.world.rng import stream_uniforms

# NOTE: event type ids are part of the data format (WORLD.md 3.5 order): never renumber, only append.
EVENT_TYPES = ("move", "bounce", "grow", "shrink", "appear", "disappear", "flash", "approach", "grasp",
               "carry", "cut")
EVENTS_IMPLEMENTED = ("move", "bounce", "grow", "shrink")
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
_OPT_IN = ("video/masks", "video/instance_map", "audio/logmel")


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
        if vc.action_pairs or float(vc.flash_p) > 0:
            raise ValueError("video.action_pairs / video.flash_p are not implemented yet")
        if cfg.style in ("noisy_bg", "texture_noise"):
            raise ValueError(f"style={cfg.style!r} is not implemented for kind 'video'")
        if int(cfg.downsample) != 1:
            raise ValueError(f"downsample={cfg.downsample}: kind 'video' renders at downsample 1 only")
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
        self.n_events = EVENTS_PER_OBJECT * self.o
        # NOTE: frames sample the centers of T equal time bins, so any T sees the same motion.
        self.frame_times = ((np.arange(self.t_frames) + 0.5) * (self.duration / self.t_frames)).astype(np.float32)

    # ------------------------------------------------------------------ motion
    def motion(self, split: str, index: int) -> dict:
        """(split, index) -> {spec (t=0), main, direction/speed/size_change int32 [O], velocity [O,2], growth [O]}."""
        spec, info = self.scene2d.sample(split, index)
        o = self.o
        uu = stream_uniforms(self.seed, split, index, "video", 3 * o + 1)
        u = uu[:3 * o].reshape(3, o)
        n_d = self.n_dirs + 1
        direction = np.minimum((u[0] * n_d).astype(np.int32), n_d - 1)
        speed = np.minimum((u[1] * len(self.speeds)).astype(np.int32), len(self.speeds) - 1)
        size_change = np.minimum((u[2] * len(self.sc_names)).astype(np.int32), len(self.sc_names) - 1)
        valid = spec.valid
        for a in (direction, speed, size_change):
            a[~valid] = -1
        static = direction == self.n_dirs
        speed[static] = -1  # NOTE: a static object has no speed bin.
        vel = self.unit[np.where(valid, direction, self.n_dirs)] * np.where(speed >= 0, self.speeds[speed], 0)[:, None]
        g = np.where(valid, self.growth[np.maximum(size_change, 0)], 0.0)
        # NOTE: the walls keep the whole object (at its largest over the clip) inside the image.
        s_max = spec.scale.astype(np.float64) * np.maximum(1.0, 1.0 + g * self.duration)
        lo = np.minimum(s_max, 0.5)
        p0 = np.clip(spec.center.astype(np.float64), lo[:, None], 1 - lo[:, None])
        return {"spec": spec, "main": int(info["main"]), "direction": direction, "speed": speed,
                "size_change": size_change, "velocity": vel, "growth": g, "p0": p0, "lo": lo,
                "static_caption": bool(uu[-1] < self.static_caption_p)}

    def state_at(self, m: dict, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """motion dict x float [T] times -> (centers float32 [T,O,2], scales float32 [T,O])."""
        t = np.asarray(t, np.float64)[:, None]
        lo = m["lo"][None, :, None]
        raw = m["p0"][None] + m["velocity"][None] * t[:, :, None]
        centers = reflect(raw, lo, 1 - lo) if self.bounce else np.clip(raw, lo, 1 - lo)
        scales = m["spec"].scale[None].astype(np.float64) * (1 + m["growth"][None] * t)
        return centers.astype(np.float32), scales.astype(np.float32)

    def bounces(self, m: dict) -> list:
        """motion dict -> O sorted float64 arrays of wall-hit times in (0, duration] (empty when no bounce)."""
        out = [np.zeros(0)] * self.o
        if not self.bounce:
            return out
        for j in np.flatnonzero(m["spec"].valid & (m["direction"] != self.n_dirs)):
            lo = m["lo"][j]
            out[j] = np.sort(np.concatenate([bounce_times(m["p0"][j, a], m["velocity"][j, a], lo, 1 - lo,
                                                          self.duration) for a in range(2)]))
        return out

    def events(self, m: dict, bounces: list) -> np.ndarray:
        """motion dict x per-slot bounce times -> int32 [Ev, 4] (slot, type, start, end frame), -1 padded."""
        out = np.full((self.n_events, 4), -1, np.int32)
        last = self.t_frames - 1
        rows = []
        for j in np.flatnonzero(m["spec"].valid):
            if m["direction"][j] != self.n_dirs:
                rows.append((j, 0, 0, last))
            sc = self.sc_names[m["size_change"][j]]
            if sc != "static":
                rows.append((j, EVENT_TYPES.index(sc), 0, last))
            for tb in bounces[j][:EVENTS_PER_OBJECT - 2]:
                f = int(np.clip(np.floor(tb * self.t_frames / self.duration), 0, last))
                rows.append((j, 1, f, f))
        if rows:
            out[:len(rows)] = np.asarray(rows, np.int32)
        return out

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
        if slot < 0:
            return ""
        spec = m["spec"]
        name = f"the {concepts.COLORS[spec.color[slot]]} {concepts.SHAPES[spec.shape[slot]]}"
        if m["static_caption"]:
            return name  # NOTE: `video.static_caption_p`: identity-only captions (no motion words).
        d = int(m["direction"][slot])
        text = (f"{name} stays still" if d == self.n_dirs
                else f"{name} moves {self.dir_names[d]} {self.speed_names[m['speed'][slot]]}")
        sc = self.sc_names[m["size_change"][slot]]
        if sc == "grow":
            text += " and grows"
        elif sc == "shrink":
            text += " and shrinks"
        return text

    # ------------------------------------------------------------------ World API
    def sample(self, split: str, index: int, fields: tuple) -> dict:
        """(split, index, fields) -> {path: array | str}: ground truth + opt-in video / captions + meta/*."""
        index = int(index)
        if index < 0:
            raise ValueError(f"index must be >= 0, got {index}")
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
        out["events"] = self.events(m, bounces)
        out["labels/action"] = np.int32(self.action(m, m["main"]))
        out["frame_times"] = self.frame_times
        want = tuple(k for k in VIDEO_FIELDS if wanted(k, fields))
        if want:
            out.update(self._render(m, want))
        if selected("captions/temporal", fields):
            out["captions/temporal"] = self.caption(m, m["main"])
        if self.audio and any(wanted(k, fields) for k in AUDIO_FIELDS):
            u = stream_uniforms(self.seed, split, index, "audio", 6 * audio_lib.MAX_TONES)
            src = audio_lib.draw_tones(u, bounces, self.offscreen_p, self.duration, self.sample_rate)
            wave = audio_lib.synthesize(src, self.n_samples, self.sample_rate)
            full = {"audio/wave": wave, "audio/sources": src}
            if wanted("audio/logmel", fields):
                full["audio/logmel"] = audio_lib.logmel(wave, self.mel)
            out.update({k: v for k, v in full.items() if wanted(k, fields)})
        out.update(splits.meta_fields(split, index, self.config_hash))
        return out

    def _render(self, m: dict, want: tuple) -> dict:
        """motion dict x wanted VIDEO_FIELDS -> {video u8 [T,H,W,3], video/boxes f32 [T,O,4], ...} per frame."""
        r, spec, t_n, o = self.cfg.resolution, m["spec"], self.t_frames, self.o
        centers, scales = self.state_at(m, self.frame_times)
        video = np.empty((t_n, r, r, 3), np.uint8)
        boxes = np.empty((t_n, o, 4), np.float32)
        inst = np.empty((t_n, r, r), np.int16) if "video/instance_map" in want or "video/masks" in want else None
        for i in range(t_n):
            rend = self.raster.render(spec.replace(center=centers[i], scale=scales[i]))
            video[i], boxes[i] = rend["image"], rend["boxes"]
            if inst is not None:
                inst[i] = rend["instance_map"]
        full = {"video": video, "video/boxes": boxes, "video/visible": boxes[..., 2] > boxes[..., 0]}
        if inst is not None:
            full["video/instance_map"] = inst
            full["video/masks"] = inst[:, None] == np.arange(o, dtype=np.int16)[None, :, None, None]
        return {k: full[k] for k in want}

    def spec(self, fields: tuple) -> dict:
        """fields -> {path: (shape, dtype)} of `sample` (text: dtype `str`)."""
        o, t, r = self.o, self.t_frames, int(self.cfg.resolution)
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
        shapes = {"video": ((t, r, r, 3), np.uint8), "video/boxes": ((t, o, 4), np.float32),
                  "video/visible": ((t, o), bool), "video/masks": ((t, o, r, r), bool),
                  "video/instance_map": ((t, r, r), np.int16)}
        for k in VIDEO_FIELDS:
            if wanted(k, fields):
                out[k] = (shapes[k][0], np.dtype(shapes[k][1]))
        if selected("captions/temporal", fields):
            out["captions/temporal"] = ((), str)
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

    def num_classes(self, task: str) -> int:
        """'action' -> (directions * speeds + 1 static) * size_changes."""
        if task not in LABEL_TASKS:
            raise ValueError(f"unknown task {task!r} for kind 'video'; valid: {', '.join(LABEL_TASKS)}")
        return (self.n_dirs * len(self.speeds) + 1) * len(self.sc_names)
