"""Opt-in extras of video clips (WORLD.md 3.5-3.6): moments, flashes, UniVid pairs, audio captions.

Everything here is a pure function of a clip's motion / event ground truth and a few uniforms drawn by
`video.Video` from its own stream, so asking for these fields never changes the fields already asked for.
- `TextBuilder` assembles a caption from pieces and records spans `(char start, char end, type, slot, id)`
  (span types of WORLD.md 3.2: 3 color, 4 shape, 8 action, 9 sound, ...).
- `moments`: one clause per event row ("the red circle bounces") with its frame span (HiTeA, SurgLaVi).
- `flash`: a brief full-frame or patch flash in 1-2 frames (PLLaVA), flagged per frame in `video/flash`.
- `pair/*`: UniVid visual sentences recolor / segment / unsegment / reverse.
- audio captions: pitch / timbre / rhythm words tied to the tones of `audio.draw_tones`.
"""
from __future__ import annotations

import numpy as np

from vljax.data.world import audio as audio_lib
from vljax.data.world import concepts

# Span types (WORLD.md 3.2).
SPAN_COLOR, SPAN_SHAPE, SPAN_ACTION, SPAN_SOUND = 3, 4, 8, 9
MAX_SPANS = 48
MAX_MOMENTS = 8
PAIR_TASKS = ("recolor", "segment", "unsegment", "reverse")
# NOTE: contrast factor ids are the WORLD.md 3.4 order; video uses only `order`.
CONTRAST_FACTORS = ("color", "shape", "size", "texture", "swap_lr", "swap_positions", "count_plus", "count_minus",
                    "mark", "direction", "order")
TIMBRE_WORDS = ("pure", "warm", "hollow")
RHYTHM_WORDS = ("beeps once", "beeps twice", "beeps three times", "hums continuously")
AV_SUBSETS = ("audiovisual", "visual_only", "audio_only")
# Uniforms of the `video` stream after the motion draws: flash (4), pair task (1), color order (10),
# av subset (1). NOTE: appended after the 3*O+1 motion draws, so the motion draws never change.
N_EXTRA = 16
FLASH_RGB = np.array([255, 255, 230], np.float32)


class TextBuilder:
    """Caption assembled from pieces; remembers a span for every typed piece."""

    def __init__(self):
        self.parts, self.spans, self.n = [], [], 0

    def add(self, text: str, kind: int = -1, slot: int = -1, concept: int = -1) -> tuple:
        """Appends `text`; kind >= 0 records a span. -> (char start, char end)."""
        start = self.n
        self.parts.append(text)
        self.n += len(text)
        if kind >= 0:
            self.spans.append((start, self.n, kind, slot, concept))
        return start, self.n

    def noun(self, color: int, shape: int, slot: int) -> tuple:
        """Appends 'the {color} {shape}' with color and shape spans. -> (char start, char end)."""
        start, _ = self.add("the ")
        self.add(concepts.COLORS[color], SPAN_COLOR, slot, color)
        self.add(" ")
        _, end = self.add(concepts.SHAPES[shape], SPAN_SHAPE, slot, shape)
        return start, end

    @property
    def text(self) -> str:
        """-> the caption so far."""
        return "".join(self.parts)

    def span_array(self) -> np.ndarray:
        """-> int32 [MAX_SPANS, 5] spans, -1 padded (first MAX_SPANS kept)."""
        out = np.full((MAX_SPANS, 5), -1, np.int32)
        if self.spans:
            sp = np.asarray(self.spans[:MAX_SPANS], np.int32)
            out[:len(sp)] = sp
        return out


# ---------------------------------------------------------------------- moments
def event_clause(b: TextBuilder, color: int, shape: int, slot: int, verb: str) -> tuple:
    """Appends 'the {color} {shape} {verb}' (action span on the verb). -> (char start, char end)."""
    start, _ = b.noun(color, shape, slot)
    b.add(" ")
    _, end = b.add(verb, SPAN_ACTION, slot)
    return start, end


def moments(events: np.ndarray, verbs: list, color: np.ndarray, shape: np.ndarray) -> dict:
    """int32 [Ev,4] events x per-row verb ('' = skip) -> captions/events, moments [Mo,4], moments/{query,event}.

    Clauses follow the events in time order (start frame, then row), joined by ', then '; moment k is
    (char start, char end, start frame, end frame) of clause k in `captions/events`.
    """
    rows = [r for r in range(len(events)) if events[r, 0] >= 0 and verbs[r]]
    rows.sort(key=lambda r: (int(events[r, 2]), r))
    rows = rows[:MAX_MOMENTS]
    b = TextBuilder()
    mom = np.full((MAX_MOMENTS, 4), -1, np.int32)
    ev_id = np.full((MAX_MOMENTS,), -1, np.int32)
    queries = [""] * MAX_MOMENTS
    for k, r in enumerate(rows):
        if k:
            b.add(", then ")
        slot = int(events[r, 0])
        c0, c1 = event_clause(b, int(color[slot]), int(shape[slot]), slot, verbs[r])
        mom[k] = (c0, c1, events[r, 2], events[r, 3])
        ev_id[k] = r
        queries[k] = b.text[c0:c1]
    return {"captions/events": b.text, "spans/events": b.span_array(), "moments": mom,
            "moments/query": tuple(queries), "moments/event": ev_id}


MOMENT_SPEC = {"captions/events": ((), str), "spans/events": ((MAX_SPANS, 5), np.dtype(np.int32)),
               "moments": ((MAX_MOMENTS, 4), np.dtype(np.int32)), "moments/query": ((MAX_MOMENTS,), str),
               "moments/event": ((MAX_MOMENTS,), np.dtype(np.int32))}


# ---------------------------------------------------------------------- flash (PLLaVA)
def flash_plan(u: np.ndarray, t_frames: int, flash_p: float) -> tuple:
    """float [4] uniforms -> (bool [T] flagged frames, kind 0 full frame / 1 patch, (x0, y0) patch origin <= .5)."""
    flags = np.zeros(t_frames, bool)
    if u[0] >= flash_p:
        return flags, 0, (0.0, 0.0)
    length = 1 + int(u[1] < 0.5 and t_frames > 1)
    start = min(int(u[2] * (t_frames - length + 1)), t_frames - length)
    flags[start:start + length] = True
    kind = int(u[3] < 0.5)
    # NOTE: the patch origin reuses the low digits of the same uniforms (no extra draws).
    return flags, kind, ((u[1] * 7.0) % 1.0 * 0.5, (u[2] * 11.0) % 1.0 * 0.5)


def apply_flash(video: np.ndarray, flags: np.ndarray, kind: int, origin: tuple) -> None:
    """uint8 [T,H,W,3] in place: flagged frames get a full-frame 75% white flash or a saturated half-side patch."""
    if not flags.any():
        return
    r = video.shape[1]
    frames = video[flags].astype(np.float32)
    if kind == 0:
        frames += 0.75 * (FLASH_RGB - frames)
    else:
        x0, y0 = int(origin[0] * r), int(origin[1] * r)
        frames[:, y0:y0 + r // 2, x0:x0 + r // 2] = FLASH_RGB
    video[flags] = (frames + 0.5).astype(np.uint8)


# ---------------------------------------------------------------------- UniVid pairs
def derangement(u: np.ndarray, n: int) -> np.ndarray:
    """float [>= n] uniforms -> int32 [n] color permutation without fixed points (a random n-cycle)."""
    order = np.argsort(u[:n], kind="stable")
    perm = np.empty(n, np.int32)
    perm[order] = np.roll(order, -1)
    return perm


def recolor_rgb(rgb: np.ndarray, color: np.ndarray, perm: np.ndarray) -> tuple:
    """float32 [O,3] jittered rgb x int32 [O] colors x [C] perm -> (new colors [O], new rgb [O,3]; jitter kept)."""
    valid = color >= 0
    new = np.where(valid, perm[np.maximum(color, 0)], -1).astype(np.int32)
    pal = np.asarray(concepts.COLOR_RGB, np.float32) / 255
    out = rgb + np.where(valid[:, None], pal[np.maximum(new, 0)] - pal[np.maximum(color, 0)], 0).astype(np.float32)
    return new, np.clip(out, 0, 1).astype(np.float32)


def mask_video(instance_map: np.ndarray) -> np.ndarray:
    """int16 [T,H,W] instance map -> uint8 [T,H,W,3] binary mask video (objects 255, background 0)."""
    fg = (instance_map >= 0).astype(np.uint8) * np.uint8(255)
    return np.repeat(fg[..., None], 3, axis=-1)


# ---------------------------------------------------------------------- audio captions
def tone_clause(b: TextBuilder, pitch: int, timbre: int, rhythm: int, a: int) -> None:
    """Appends 'a {low} {pure} tone {beeps twice}' with sound spans (slot = tone index)."""
    b.add("a ")
    b.add(audio_lib.PITCHES[pitch], SPAN_SOUND, a, pitch)
    b.add(" ")
    b.add(TIMBRE_WORDS[timbre], SPAN_SOUND, a, timbre)
    b.add(" tone ")
    b.add(RHYTHM_WORDS[rhythm], SPAN_SOUND, a, rhythm)


def audio_caption(b: TextBuilder, sources: np.ndarray, color: np.ndarray, shape: np.ndarray) -> None:
    """Appends the sound description of int32 [A,5] sources: 'when the red circle hits a wall, a low ...'."""
    real = [s for s in sources.tolist() if s[0] >= 0]
    if not real:
        b.add("silence", SPAN_SOUND)
        return
    for a, (pitch, timbre, rhythm, slot, _) in enumerate(real):
        if a:
            b.add(" and ")
        if slot >= 0:
            b.add("when ")
            b.noun(int(color[slot]), int(shape[slot]), slot)
            b.add(" ")
            b.add("hits a wall", SPAN_ACTION, slot)
            b.add(", ")
        else:
            b.add("off screen", SPAN_SOUND, -1)
            b.add(", ")
        tone_clause(b, pitch, timbre, rhythm, a)


def av_captions(visual: TextBuilder, sources: np.ndarray, color, shape, subset: int) -> dict:
    """Visual caption builder x sources x subset id -> captions/{audio,audiovisual} + spans.

    subset 0: visual + ' while ' + audio; 1: visual only; 2: audio only (`caption.av_subset`, VALOR).
    """
    aud = TextBuilder()
    audio_caption(aud, sources, color, shape)
    av = TextBuilder()
    if subset != 2:
        for (c0, c1, *rest) in visual.spans:
            av.spans.append((c0 + av.n, c1 + av.n, *rest))
        av.add(visual.text)
    if subset == 0:
        av.add(" while ")
    if subset != 1:
        for (c0, c1, *rest) in aud.spans:
            av.spans.append((c0 + av.n, c1 + av.n, *rest))
        av.add(aud.text)
    return {"captions/audio": aud.text, "spans/audio": aud.span_array(),
            "captions/audiovisual": av.text, "spans/audiovisual": av.span_array(),
            "flags/av_subset": np.int32(subset)}


AV_SPEC = {"captions/audio": ((), str), "spans/audio": ((MAX_SPANS, 5), np.dtype(np.int32)),
           "captions/audiovisual": ((), str), "spans/audiovisual": ((MAX_SPANS, 5), np.dtype(np.int32)),
           "flags/av_subset": ((), np.dtype(np.int32))}


def av_subset_id(u: float, shares: tuple) -> int:
    """uniform x (visual-only share, audio-only share) -> 0 both, 1 visual only, 2 audio only."""
    v, a = float(shares[0]), float(shares[1])
    return 1 if u < v else (2 if u < v + a else 0)


# ---------------------------------------------------------------------- downsampling (UniVid 16 px)
def box_down(video: np.ndarray, f: int) -> np.ndarray:
    """uint8 [T,H,W,C] x factor f -> uint8 [T,H/f,W/f,C]: mean over f x f pixel blocks, rounded (f = 1: as is)."""
    if f == 1:
        return video
    t, h, w, c = video.shape
    out = video.reshape(t, h // f, f, w // f, f, c).astype(np.float32).mean((2, 4))
    return (out + 0.5).astype(np.uint8)


# ---------------------------------------------------------------------- video QA (Valley, PLLaVA, SimVLG)
# NOTE: ids continue the WORLD.md 3.3 type list after domains.QA_TYPES (16 types): direction 16, ..., appear 19.
VIDEO_QA_TYPES = ("direction", "appear")
VIDEO_QA_IDS = {"direction": 16, "speed": 17, "order": 18, "appear": 19}


def _name(color: np.ndarray, shape: np.ndarray, j: int) -> str:
    return f"{concepts.COLORS[int(color[j])]} {concepts.SHAPES[int(shape[j])]}"


def _number(n: int) -> str:
    from vljax.data.world.language.lexicon import NUMBER_WORDS_EN  # NOTE: local import keeps this module light.
    return NUMBER_WORDS_EN[n] if 0 <= n < len(NUMBER_WORDS_EN) else str(n)


def video_qa(types: tuple, u: np.ndarray, color, shape, valid, direction, dir_names: tuple, t_show,
             duration: float) -> dict:
    """Video QA: float [Q,4] uniforms x per-slot ground truth -> qa/{question,answer,type,template,target} [Q].

    Objects are named by color and shape, only when that name is unique in the clip.
    - direction (template 0): "which direction does the red circle move ?" -> "up" / "down left" (a mover);
      template 1: "does the red circle move ?" -> "no" when no named object moves; template 2: "how many objects
      move ?" when no object has a unique name.
    - appear (template 0): "does the red circle appear before the blue square ?" -> yes / no (50/50 coin) for two
      named objects whose first visible times differ (one of them appears mid-clip); template 1: "how many objects
      appear during the video ?" -> number word when no such pair exists.
    """
    n_dirs = len(dir_names) - 1
    slots = np.flatnonzero(valid).tolist()
    names = [(int(color[j]), int(shape[j])) for j in slots]
    named = [j for j, k in zip(slots, names) if names.count(k) == 1]
    qs, ans, typ, tpl, tgt = [], [], [], [], []
    for row in u:
        qtype = types[min(int(row[0] * len(types)), len(types) - 1)]
        target, template = -1, 0
        if qtype == "direction":
            movers = [j for j in named if direction[j] != n_dirs]
            if movers:
                target = movers[min(int(row[1] * len(movers)), len(movers) - 1)]
                q, a = f"which direction does the {_name(color, shape, target)} move ?", dir_names[direction[target]]
            elif named:
                target, template = named[min(int(row[1] * len(named)), len(named) - 1)], 1
                q, a = f"does the {_name(color, shape, target)} move ?", "no"
            else:
                template = 2
                q, a = "how many objects move ?", _number(sum(int(direction[j] != n_dirs) for j in slots))
        else:
            pairs = [(i, j) for i in named for j in named
                     if t_show[i] < t_show[j] and t_show[j] > 0]
            if pairs:
                first, second = pairs[min(int(row[1] * len(pairs)), len(pairs) - 1)]
                yes = row[2] < 0.5
                a_, b_ = (first, second) if yes else (second, first)
                target = a_
                q = f"does the {_name(color, shape, a_)} appear before the {_name(color, shape, b_)} ?"
                a = "yes" if yes else "no"
            else:
                template = 1
                q = "how many objects appear during the video ?"
                a = _number(sum(int(0 < t_show[j] <= duration) for j in slots))
        qs.append(q)
        ans.append(a)
        typ.append(VIDEO_QA_IDS[qtype])
        tpl.append(VIDEO_QA_IDS[qtype] * 8 + template)
        tgt.append(target)
    return {"qa/question": tuple(qs), "qa/answer": tuple(ans), "qa/type": np.asarray(typ, np.int32),
            "qa/template": np.asarray(tpl, np.int32), "qa/target": np.asarray(tgt, np.int32)}
