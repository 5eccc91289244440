"""Video kind of the synthetic world (WORLD.md 3.5): determinism, schema, analytic motion, bounces, captions."""
import hashlib

import numpy as np
import pytest

from vljax.data import world
from vljax.data.world import video as video_lib

# Unit velocity per caption direction word, image coordinates (y down); written independently of video.py.
WORD_DIR = {"up": (0, -1), "right": (1, 0), "down": (0, 1), "left": (-1, 0)}
for _a, _b in (("up", "right"), ("down", "right"), ("down", "left"), ("up", "left")):
    _v = np.add(WORD_DIR[_a], WORD_DIR[_b]) / np.sqrt(2)
    WORD_DIR[f"{_a} {_b}"] = tuple(_v)
DIR8 = ("up", "up right", "right", "down right", "down", "down left", "left", "up left")
SPEED = {"slow": 0.2, "medium": 0.4, "fast": 0.6}
# sha256 of the `video` preset's first two samples (all default fields): pins generation (WORLD_VERSION).
GOLDEN_VIDEO = "b9182fdc3d5b922e"
GROW = {"static": 0.0, "grow": 0.5, "shrink": -0.4}


def make(preset="video", **overrides):
    """-> World of a preset with dotted-key overrides."""
    w = world.World(world.get_config(preset))
    return w.variant(**overrides) if overrides else w


def single(**overrides):
    """-> video World with one plain circle per clip (no occlusion, so visible boxes are full boxes)."""
    kw = {"objects.count": (1, 1), "objects.shapes": 1, "video.directions": 8}
    kw.update(overrides)
    return make(**kw)


def fold(x, lo, hi):
    """Naive reference: mirror x into [lo, hi] one wall at a time."""
    while x < lo or x > hi:
        x = 2 * lo - x if x < lo else 2 * hi - x
    return x


def reference_track(s, w, times):
    """sample dict x float [T] -> (float64 [T, 2] centers, [T] scales, float lo) of slot 0, from first principles."""
    vc = w.cfg.video
    d, sp, sc = (int(s[f"objects/{k}"][0]) for k in ("direction", "speed", "size_change"))
    words = DIR8[::2] if vc.directions == 4 else DIR8
    v = np.zeros(2) if d == len(words) else np.asarray(WORD_DIR[words[d]]) * SPEED[vc.speeds[sp]]
    g = GROW[vc.size_changes[sc]] / vc.duration
    s0 = float(s["objects/scale"][0])
    lo = min(s0 * max(1.0, 1.0 + g * w.cfg.video.duration), 0.5)
    p0 = s["objects/center"][0].astype(np.float64)
    cen = np.array([[fold(p0[a] + v[a] * t, lo, 1 - lo) for a in range(2)] for t in times])
    return cen, s0 * (1 + g * np.asarray(times)), lo


def test_determinism_and_independence():
    w = make()
    a, b = w.sample("train", 5), make().sample("train", 5)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(np.asarray(a[k]), np.asarray(b[k])), k
    c = w.sample("train", 6)
    assert not np.array_equal(a["video"], c["video"])
    assert not np.array_equal(a["video"], w.sample("val", 5)["video"])
    # NOTE: asking for fewer fields never changes the ones asked for.
    few = w.sample("train", 5, ("video/boxes",))
    assert np.array_equal(few["video/boxes"], a["video/boxes"]) and "video" not in few
    assert np.array_equal(few["events"], a["events"])


@pytest.mark.parametrize("fields", [None, ("video",), ("video/boxes", "captions"), (),
                                    ("video/masks", "video/instance_map")])
def test_schema_matches_spec(fields):
    w = make()
    spec = w.spec(fields)
    for i in range(3):
        s = w.sample("train", i, fields)
        assert set(s) == set(spec)
        for k, (shape, dtype) in spec.items():
            if dtype is str:
                assert isinstance(s[k], str), k
            else:
                assert np.asarray(s[k]).shape == shape and np.asarray(s[k]).dtype == dtype, k


def test_shapes_dtypes_and_padding():
    w = make(**{"objects.max": 5, "video.frames": 6, "resolution": 32})
    s = w.sample("train", 2)
    assert s["video"].shape == (6, 32, 32, 3) and s["video"].dtype == np.uint8
    assert s["frame_times"].shape == (6,) and s["frame_times"].dtype == np.float32
    assert np.all(np.diff(s["frame_times"]) > 0) and 0 <= s["frame_times"][0] and s["frame_times"][-1] <= 1.0
    assert s["video/boxes"].shape == (6, 5, 4) and s["video/visible"].shape == (6, 5)
    assert s["events"].shape == (5 * video_lib.EVENTS_PER_OBJECT, 4) and s["events"].dtype == np.int32
    n = int(s["num_objects"])
    for k in ("direction", "speed", "size_change"):
        assert s[f"objects/{k}"].dtype == np.int32 and np.all(s[f"objects/{k}"][n:] == -1)
    assert not s["video/visible"][:, n:].any()
    ev = s["events"]
    real = ev[:, 0] >= 0
    assert np.all(ev[~real] == -1) and np.all(ev[real, 0] < n)
    assert np.all((ev[real, 2] >= 0) & (ev[real, 2] <= ev[real, 3]) & (ev[real, 3] < 6))


def test_masks_and_instance_map_opt_in():
    w = make(**{"video.frames": 3})
    assert "video/masks" not in w.sample("train", 1, ("video",))
    s = w.sample("train", 1, ("video", "video/masks", "video/instance_map"))
    inst, masks, boxes = s["video/instance_map"], s["video/masks"], s["video/boxes"]
    res = w.cfg.resolution
    for t in range(3):
        for j in np.flatnonzero(s["video/visible"][t]):
            assert np.array_equal(masks[t, j], inst[t] == j)
            ys, xs = np.nonzero(masks[t, j])
            np.testing.assert_allclose(boxes[t, j] * res, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    assert not masks[:, ~s["objects/valid"]].any()


def test_boxes_follow_analytic_trajectory():
    w = single(**{"video.frames": 12})
    res = w.cfg.resolution
    times = w.sample("train", 0, ())["frame_times"]
    moving = 0
    for i in range(24):
        s = w.sample("train", i, ("video/boxes", "video/visible"))
        cen, scale, _ = reference_track(s, w, times)
        box = s["video/boxes"][:, 0].astype(np.float64) * res
        assert s["video/visible"][:, 0].all()
        np.testing.assert_allclose((box[:, :2] + box[:, 2:]) / 2, cen * res, atol=1.0)
        np.testing.assert_allclose(box[:, 2:] - box[:, :2], np.repeat(2 * scale[:, None] * res, 2, 1),
                                   atol=1.5)  # NOTE: each edge quantizes to a pixel
        moving += int(s["objects/direction"][0] != 8)
    assert moving >= 12  # NOTE: 8 of 9 direction ids move; the check must cover real motion.


def test_bounces_happen_at_walls():
    w = single(**{"video.frames": 8, "video.speeds": ("fast",), "video.duration": 2.0})
    t_frames, dur = 8, 2.0
    fine = np.linspace(0, dur, 4001)
    seen = 0
    for i in range(40):
        s = w.sample("train", i, ())
        cen, _, lo = reference_track(s, w, fine)
        vel = np.diff(cen, axis=0)
        # Reference bounce times: a velocity component flips sign.
        flips = [fine[k + 1] for a in range(2) for k in range(len(vel) - 1)
                 if vel[k, a] * vel[k + 1, a] < -1e-12]
        ev = s["events"]
        bounces = ev[ev[:, 1] == video_lib.EVENT_TYPES.index("bounce")]
        assert len(bounces) == min(len(flips), video_lib.EVENTS_PER_OBJECT - 2)
        for (slot, _, f0, f1), t in zip(bounces, sorted(flips)):
            assert slot == 0 and f0 == f1 == min(int(t * t_frames / dur), t_frames - 1)
            k = int(np.argmin(np.abs(fine - t)))
            # At the hit the object touches a wall: its center lies `lo` from an image border.
            assert np.min(np.abs(np.concatenate([cen[k] - lo, 1 - lo - cen[k]]))) < 2e-3
        seen += len(bounces)
    assert seen >= 10


def test_no_bounce_event_clamps_at_walls():
    w = single(**{"video.events": ("move",), "video.speeds": ("fast",), "video.duration": 2.0})
    for i in range(10):
        s = w.sample("train", i, ("video/boxes",))
        assert not np.any(s["events"][:, 1] == video_lib.EVENT_TYPES.index("bounce"))


def test_caption_names_true_direction():
    w = single(**{"video.speeds": ("fast",), "video.size_changes": ("static",), "video.static_caption_p": 0.0})
    res = w.cfg.resolution
    checked = 0
    for i in range(30):
        s = w.sample("train", i, ("video/boxes", "captions"))
        cap = s["captions/temporal"]
        assert cap.startswith("the ") and cap.split()[2] == "circle"
        if int(s["objects/direction"][0]) == 8:
            assert cap.endswith("stays still")
            continue
        word = cap.split(" moves ")[1].rsplit(" ", 1)[0]
        assert cap.endswith(" fast")
        ev = s["events"]
        if np.any((ev[:, 1] == video_lib.EVENT_TYPES.index("bounce")) & (ev[:, 2] == 0)):
            continue
        b = s["video/boxes"][:2, 0].astype(np.float64) * res
        step = (b[1, :2] + b[1, 2:]) / 2 - (b[0, :2] + b[0, 2:]) / 2
        assert np.dot(step / np.linalg.norm(step), WORD_DIR[word]) > 0.9, (cap, step)
        checked += 1
    assert checked >= 10


def test_static_caption_p():
    caps = [make(**{"video.static_caption_p": p}).sample("train", i, ("captions",))["captions/temporal"]
            for p in (0.0, 1.0) for i in range(20)]
    assert all(" moves " in c or " stays still" in c for c in caps[:20])
    assert all(len(c.split()) == 3 for c in caps[20:])
    w = make()
    share = np.mean([len(w.sample("train", i, ("captions",))["captions/temporal"].split()) == 3
                     for i in range(100)])
    assert 0.15 < share < 0.45  # preset: static_caption_p = 0.3


def test_action_label_and_classes():
    w = make()
    n_cls = w.num_classes("action")
    assert n_cls == (4 * 2 + 1) * 3
    labels = set()
    for i in range(300):
        s = w.sample("train", i, ())
        d, sp, sc = (int(s[f"objects/{k}"][0]) for k in ("direction", "speed", "size_change"))
        want = (8 if d == 4 else d * 2 + sp) * 3 + sc  # single-object: slot 0 is the main object
        if int(s["num_objects"]) == 1:
            assert int(s["labels/action"]) == want
        assert w.label("train", i, "action") == int(s["labels/action"])
        labels.add(int(s["labels/action"]))
    assert labels == set(range(n_cls))  # every class occurs: none is empty
    shots = make(**{"video.size_changes": ("static",)}).few_shot("action", 1, seed=0, pool="val")
    assert len(shots) == 4 * 2 + 1
    with pytest.raises(ValueError, match="task"):
        w.label("train", 0, "main_shape")
    with pytest.raises(ValueError, match="kind 'image'"):
        w.scene("train", 0)


@pytest.mark.parametrize("key,value", [("video.directions", 5), ("video.speeds", ("warp",)),
                                       ("video.size_changes", ("melt",)), ("video.events", ("cut",)),
                                       ("video.frames", 0), ("video.static_caption_p", 1.5)])
def test_bad_video_config_names_field(key, value):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        make(**{key: value})


def test_golden_hash():
    w = make()
    h = hashlib.sha256()
    for i in range(2):
        s = w.sample("train", i)
        for k in sorted(s):
            h.update(k.encode())
            h.update(s[k].encode() if isinstance(s[k], str) else np.ascontiguousarray(s[k]).tobytes())
    assert h.hexdigest()[:16] == GOLDEN_VIDEO



# ---------------------------------------------------------------------- audio (WORLD.md 3.6)
def audio_world(**overrides):
    """-> single-circle video World with audio on and every tone tied to a bouncing object when possible."""
    kw = {"audio.enabled": True, "audio.offscreen_p": 0.0, "video.speeds": ("fast",), "video.duration": 2.0}
    kw.update(overrides)
    return single(**kw)


def test_audio_schema_and_opt_in_logmel():
    w = audio_world()
    assert "audio/wave" not in w.sample("train", 0, ("video",))
    for fields in [("audio",), ("audio", "audio/logmel"), ("audio/sources",)]:
        spec, s = w.spec(fields), w.sample("train", 1, fields)
        assert set(s) == set(spec)
        for k, (shape, dtype) in spec.items():
            if dtype is not str:
                assert np.asarray(s[k]).shape == shape and np.asarray(s[k]).dtype == dtype, k
    s = w.sample("train", 1, ("audio", "audio/logmel"))
    assert s["audio/wave"].shape == (32000,) and s["audio/logmel"].shape == (1 + (32000 - 400) // 160, 32)


def test_tones_start_at_bounces_and_sound_their_pitch():
    w = audio_world()
    sr, dur = 16000, 2.0
    fine = np.linspace(0, dur, 8001)
    tied = 0
    for i in range(20):
        s = w.sample("train", i, ("audio",))
        src, wave = s["audio/sources"], s["audio/wave"].astype(np.float64)
        real = src[src[:, 0] >= 0]
        assert 1 <= len(real) <= 2 and np.all(src[len(real):] == -1)
        assert abs(np.abs(wave).max() - 0.9) < 1e-6
        first = int(real[:, 4].min())
        assert np.all(wave[:first] == 0) and np.abs(wave[first:first + 200]).max() > 0.05
        cen, _, _ = reference_track(s, w, fine)
        vel = np.diff(cen, axis=0)
        flips = [fine[k + 1] for a in range(2) for k in range(len(vel) - 1) if vel[k, a] * vel[k + 1, a] < -1e-12]
        for pitch, timbre, rhythm, slot, onset in real.tolist():
            assert timbre == pitch and 0 <= rhythm < 4
            if flips:
                assert slot == 0 and abs(onset / sr - min(flips)) < 2 * dur / 8000
                tied += 1
            else:
                assert slot == -1
        if len(real) == 1:  # one tone: its strongest frequency over the first beep is the fundamental
            seg = wave[first:first + int(0.1 * sr)]
            f = np.fft.rfftfreq(len(seg), 1 / sr)[np.argmax(np.abs(np.fft.rfft(seg)))]
            assert abs(f - (220.0, 440.0, 880.0)[real[0, 0]]) <= 10.0
    assert tied >= 5
    off = audio_world(**{"audio.offscreen_p": 1.0})
    assert all(np.all(off.sample("train", i, ("audio",))["audio/sources"][:, 3] == -1) for i in range(10))


def test_logmel_matches_naive_reference():
    w = audio_world(**{"audio.n_mels": 16, "video.duration": 0.2})
    s = w.sample("val", 3, ("audio", "audio/logmel"))
    x = s["audio/wave"].astype(np.float64)
    sr, n_fft, hop, m = 16000, 400, 160, 16
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    inv = lambda z: 700.0 * (10 ** (z / 2595.0) - 1.0)  # noqa: E731
    pts = [inv(mel(sr / 2) * k / (m + 1)) for k in range(m + 2)]
    ref = []
    for f0 in range(0, len(x) - n_fft + 1, hop):
        frame = x[f0:f0 + n_fft] * (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft))
        k = np.arange(n_fft // 2 + 1)
        spec = np.abs(np.exp(-2j * np.pi * np.outer(k, np.arange(n_fft)) / n_fft) @ frame) ** 2
        freqs = k * sr / n_fft
        row = []
        for b in range(m):
            lo, c, hi = pts[b], pts[b + 1], pts[b + 2]
            tri = np.clip(np.minimum((freqs - lo) / (c - lo), (hi - freqs) / (hi - c)), 0, None)
            row.append(np.log(tri @ spec + 1e-6))
        ref.append(row)
    np.testing.assert_allclose(s["audio/logmel"], np.asarray(ref), rtol=1e-4, atol=1e-4)  # float32 output


def test_bad_audio_config_names_field():
    with pytest.raises(ValueError, match=r"audio\.offscreen_p"):
        audio_world(**{"audio.offscreen_p": 2.0})
    with pytest.raises(ValueError, match=r"audio\.n_mels"):
        audio_world(**{"audio.n_mels": 0})
