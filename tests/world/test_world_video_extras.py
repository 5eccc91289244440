"""Video extras (WORLD.md 2.6, 3.5, 3.6): moments, flash, UniVid pairs, action pairs + order contrast, audio
captions, surgical clips. Every check compares against ground truth recomputed here from first principles."""
import numpy as np
import pytest

from vljax.data import world

DIR8 = ("up", "up right", "right", "down right", "down", "down left", "left", "up left")
WORD_DIR = {"up": (0, -1), "right": (1, 0), "down": (0, 1), "left": (-1, 0)}
for _a, _b in (("up", "right"), ("down", "right"), ("down", "left"), ("up", "left")):
    WORD_DIR[f"{_a} {_b}"] = tuple(np.add(WORD_DIR[_a], WORD_DIR[_b]) / np.sqrt(2))
SPEED = {"slow": 0.2, "medium": 0.4, "fast": 0.6}
GROW = {"static": 0.0, "grow": 0.5, "shrink": -0.4}
PALETTE = np.array([(220, 40, 40), (40, 80, 220), (40, 170, 60), (235, 215, 40), (140, 60, 180), (245, 140, 30),
                    (40, 210, 220), (245, 150, 190), (245, 245, 245), (130, 80, 40)], np.float64)
COLORS = ("red", "blue", "green", "yellow", "purple", "orange", "cyan", "pink", "white", "brown")
SHAPES = ("circle", "square", "triangle", "star", "diamond", "cross", "hexagon", "heart")
BOUNCE, MOVE = 1, 0


def make(preset="video", **overrides):
    """-> World of a preset with dotted-key overrides."""
    w = world.World(world.get_config(preset))
    return w.variant(**overrides) if overrides else w


def fold(x, lo, hi):
    """Naive reference: mirror x into [lo, hi] one wall at a time."""
    while x < lo or x > hi:
        x = 2 * lo - x if x < lo else 2 * hi - x
    return x


def track(s, w, j, times, window=None):
    """sample x slot x float [T] -> float64 [T, 2] analytic centers; `window` = (on, off) of its motion."""
    vc = w.cfg.video
    d, sp, sc = (int(s[f"objects/{k}"][j]) for k in ("direction", "speed", "size_change"))
    words = DIR8[::2] if vc.directions == 4 else DIR8
    v = np.zeros(2) if d == len(words) else np.asarray(WORD_DIR[words[d]]) * SPEED[vc.speeds[sp]]
    on, off = window or (0.0, vc.duration)
    g = GROW[vc.size_changes[sc]] / vc.duration
    lo = min(float(s["objects/scale"][j]) * max(1.0, 1.0 + g * (off - on)), 0.5)
    p0 = s["objects/center"][j].astype(np.float64)
    tau = np.clip(np.asarray(times, np.float64), on, off) - on
    return np.array([[fold(p0[a] + v[a] * t, lo, 1 - lo) for a in range(2)] for t in tau]), lo


def wall_hits(s, w, j, window=None, n=4001):
    """-> sorted analytic wall-hit times of slot j (velocity sign flips of the reference track)."""
    dur = w.cfg.video.duration
    fine = np.linspace(0, dur, n)
    cen, _ = track(s, w, j, fine, window)
    vel = np.diff(cen, axis=0)
    return sorted(fine[k + 1] for a in range(2) for k in range(len(vel) - 1) if vel[k, a] * vel[k + 1, a] < -1e-12)


def frame_span(f0, f1, w):
    """Moment frames [f0, f1] -> the time interval their bins cover."""
    dt = w.cfg.video.duration / w.cfg.video.frames
    return f0 * dt, (f1 + 1) * dt


def color_centroid(frame, color_id):
    """uint8 [H,W,3] x palette id -> (x, y) centroid in [0,1] of pixels within 14 levels of that palette color."""
    hit = np.abs(frame.astype(np.float64) - PALETTE[color_id]).max(-1) <= 14
    ys, xs = np.nonzero(hit)
    r = frame.shape[0]
    return np.array([(xs.mean() + 0.5) / r, (ys.mean() + 0.5) / r]) if len(xs) else None


# ---------------------------------------------------------------------- moments
def test_moments_contain_their_events():
    w = make(**{"objects.count": (1, 2), "video.speeds": ("fast",), "video.duration": 2.0})
    dur, seen = 2.0, {MOVE: 0, BOUNCE: 0}
    for i in range(30):
        s = w.sample("train", i, ("moments", "captions"))
        text, ev = s["captions/events"], s["events"]
        rows = s["moments/event"][s["moments/event"] >= 0]
        real = np.flatnonzero(ev[:, 0] >= 0)
        assert len(rows) == min(len(real), 8)
        for k, r in enumerate(rows):
            c0, c1, f0, f1 = s["moments"][k]
            slot, typ = int(ev[r, 0]), int(ev[r, 1])
            assert text[c0:c1] == s["moments/query"][k]
            assert text[c0:c1].startswith(f"the {COLORS[s['objects/color'][slot]]} {SHAPES[s['objects/shape'][slot]]} ")
            t0, t1 = frame_span(f0, f1, w)
            if typ == BOUNCE:
                hits = [t for t in wall_hits(s, w, slot) if t0 - 1e-3 <= t <= t1 + 1e-3]
                assert hits, (i, k)  # the analytic wall hit lies inside the moment
                assert text[c0:c1].endswith("bounces")
            elif typ == MOVE:
                assert (t0, t1) == (0.0, dur) and " moves " in text[c0:c1]
            seen[typ] = seen.get(typ, 0) + 1
        assert np.all(s["moments"][len(rows):] == -1) and all(q == "" for q in s["moments/query"][len(rows):])
        # moments are in time order
        assert np.all(np.diff(s["moments"][:len(rows), 2]) >= 0)
    assert seen[MOVE] >= 10 and seen[BOUNCE] >= 5


# ---------------------------------------------------------------------- action pairs + order contrast
def pair_world(**kw):
    base = {"video.action_pairs": True, "objects.count": (2, 2), "objects.shapes": 1, "objects.sizes": ("small",),
            "video.frames": 16, "video.size_changes": ("static",), "video.static_caption_p": 0.0}
    base.update(kw)
    return make(**base)


def test_action_pairs_move_in_sequence_and_moments_cover_them():
    w = pair_world()
    times = w.sample("train", 0, ())["frame_times"]
    half, checked = 0.5, 0
    for i in range(12):
        s = w.sample("train", i, ("video", "captions", "moments", "contrast"))
        c = s["objects/color"]
        if c[0] == c[1]:
            continue
        a, b = (f"the {COLORS[c[j]]} circle moves " for j in (0, 1))
        cap = s["captions/temporal"]
        assert cap.startswith(a) and ", then " + b in cap  # A (slot 0) first, then B
        con = s["contrast/caption"]
        assert con == ", then ".join(cap.split(", then ")[::-1])  # same actions, swapped order
        assert int(s["contrast/factor"]) == 10  # `order` in the WORLD.md 3.4 factor list
        for video, windows in ((s["video"], ((0, half), (half, 1.0))), (s["contrast/video"], ((half, 1.0), (0, half)))):
            ref = [track(s, w, j, times, windows[j])[0] for j in (0, 1)]
            for t in range(16):
                if np.abs(ref[0][t] - ref[1][t]).max() < 0.2:
                    continue  # NOTE: the two circles touch; color centroids would mix
                for j in (0, 1):
                    got = color_centroid(video[t], c[j])
                    np.testing.assert_allclose(got, ref[j][t], atol=1.5 / 64)
                    checked += 1
        # each move moment spans exactly the frames whose times lie in that object's window
        moves = 0
        for k in np.flatnonzero(s["moments/event"] >= 0):
            f0, f1 = s["moments"][k, 2:]
            slot, typ = (int(x) for x in s["events"][s["moments/event"][k], :2])
            on, off = (0, half) if slot == 0 else (half, 1.0)
            if typ == MOVE:
                inside = np.flatnonzero((times >= on) & (times <= off))
                assert (f0, f1) == (inside[0], inside[-1])
                moves += 1
            else:  # a bounce happens inside the moving window, at an analytic wall hit
                hits = wall_hits(s, w, slot, (on, off))
                t0, t1 = frame_span(f0, f1, w)
                assert any(t0 - 1e-3 <= t <= t1 + 1e-3 for t in hits) and t0 >= on - 1e-9 and t1 <= off + 1e-9
        assert moves == 2
    assert checked > 100


def test_action_pair_static_captions_carry_no_order():
    w = pair_world(**{"video.static_caption_p": 0.3})
    n_static = 0
    for i in range(100):
        s = w.sample("train", i, ("captions/temporal", "contrast/caption"))
        if " moves " not in s["captions/temporal"]:
            n_static += 1
            assert s["captions/temporal"] == s["contrast/caption"]
            assert s["captions/temporal"].count(" and ") == 1
    assert 15 <= n_static <= 45  # HiTeA: 30% static captions


# ---------------------------------------------------------------------- flash (PLLaVA)
def test_flash_frames_differ_only_where_flagged():
    plain, flash = make(), make(**{"video.flash_p": 1.0})
    assert "video/flash" not in plain.sample("train", 0, ("video",))
    for i in range(10):
        a, b = plain.sample("train", i, ("video",)), flash.sample("train", i, ("video",))
        f = b["video/flash"]
        assert f.dtype == bool and f.shape == (8,) and 1 <= f.sum() <= 2
        assert np.array_equal(a["video"][~f], b["video"][~f])
        for t in np.flatnonzero(f):
            diff = np.abs(a["video"][t].astype(int) - b["video"][t].astype(int)).max(-1) > 0
            assert diff.mean() >= 0.2  # a large patch (a quarter of the frame) or the whole frame
        assert np.array_equal(a["video/boxes"], b["video/boxes"])  # ground truth unchanged
    half = make(**{"video.flash_p": 0.5})
    share = np.mean([half.sample("train", i, ("video/flash",))["video/flash"].any() for i in range(100)])
    assert 0.35 <= share <= 0.65


# ---------------------------------------------------------------------- UniVid pairs
def test_pair_tasks_against_reference():
    w = make(**{"video.frames": 5})
    seen = set()
    for i in range(40):
        s = w.sample("train", i, ("video", "pair", "video/instance_map"))
        task, src, tgt, perm = s["pair/task"], s["pair/source"], s["pair/target"], s["pair/perm"]
        seen.add(task)
        mask = np.repeat(((s["video/instance_map"] >= 0) * 255).astype(np.uint8)[..., None], 3, -1)
        if task == "reverse":
            assert np.array_equal(src, s["video"]) and np.array_equal(tgt, s["video"][::-1])
        elif task == "segment":
            assert np.array_equal(src, s["video"]) and np.array_equal(tgt, mask)
        elif task == "unsegment":
            assert np.array_equal(src, mask) and np.array_equal(tgt, s["video"])
        else:
            assert sorted(perm.tolist()) == list(range(8)) and np.all(perm != np.arange(8))
            inst = s["video/instance_map"]
            # NOTE: antialiased rims (alpha < 0.5 is background) and thin tips blend with their neighbours;
            # compare only pixels whose 5x5 neighbourhood carries one label.
            pad = np.pad(inst, ((0, 0), (2, 2), (2, 2)), mode="edge")
            same = np.ones_like(inst, bool)
            for dy in range(5):
                for dx in range(5):
                    same &= pad[:, dy:dy + inst.shape[1], dx:dx + inst.shape[2]] == inst
            bg = same & (inst < 0)
            assert np.array_equal(src[bg], tgt[bg])  # recolor never touches the background
            for j in np.flatnonzero(s["objects/valid"]):
                inner = same & (inst == j)
                shift = PALETTE[perm[s["objects/color"][j]]] - PALETTE[s["objects/color"][j]]
                want = np.clip(src[inner].astype(np.float64) + shift, 0, 255)
                np.testing.assert_allclose(tgt[inner], want, atol=1.01)
        if task != "recolor":
            assert np.all(perm == -1)
    assert seen == {"recolor", "segment", "unsegment", "reverse"}


# ---------------------------------------------------------------------- audio captions (VALOR)
def test_audio_captions_name_the_tones():
    w = make(**{"audio.enabled": True, "video.speeds": ("fast",), "video.duration": 2.0})
    pitch, timbre = ("low", "mid", "high"), ("pure", "warm", "hollow")
    rhythm = ("beeps once", "beeps twice", "beeps three times", "hums continuously")
    subsets = []
    for i in range(200):
        s = w.sample("train", i, ("captions", "audio/sources", "flags", "spans"))
        src = s["audio/sources"]
        real = src[src[:, 0] >= 0]
        want = []
        for p, tb, r, slot, _ in real.tolist():
            who = (f"when the {COLORS[s['objects/color'][slot]]} {SHAPES[s['objects/shape'][slot]]} hits a wall, "
                   if slot >= 0 else "off screen, ")
            want.append(f"{who}a {pitch[p]} {timbre[tb]} tone {rhythm[r]}")
        assert s["captions/audio"] == " and ".join(want)
        sub = int(s["flags/av_subset"])
        subsets.append(sub)
        vis, aud, av = s["captions/temporal"], s["captions/audio"], s["captions/audiovisual"]
        assert av == {0: f"{vis} while {aud}", 1: vis, 2: aud}[sub]
        for c0, c1, typ, _, _ in s["spans/audiovisual"].tolist():
            if typ == 9:
                assert av[c0:c1] in pitch + timbre + rhythm + ("off screen",)
    subsets = np.asarray(subsets)
    assert 0.1 <= np.mean(subsets == 1) <= 0.3 and 0.1 <= np.mean(subsets == 2) <= 0.3  # av_subset (0.2, 0.2)


# ---------------------------------------------------------------------- surgical clips (SurgLaVi)
SURG_FIELDS = ("video", "caption", "captions", "moments", "spans")


def test_surgical_schema_levels_and_procedures():
    w = make("surgical")
    spec = w.spec(SURG_FIELDS)
    for i in (0, 5):
        s = w.sample("train", i, SURG_FIELDS)
        assert set(s) == set(spec)
        for k, (shape, dtype) in spec.items():
            if dtype is not str and k != "moments/query":
                assert np.asarray(s[k]).shape == shape and np.asarray(s[k]).dtype == dtype, k
    clips = [w.sample("train", i, ("caption",)) for i in range(32)]
    for p in (0, 1):
        block = clips[16 * p:16 * p + 16]
        assert {int(c["clip/procedure"]) for c in block} == {p}
        levels = [int(c["clip/level"]) for c in block]
        assert sorted(np.bincount(levels).tolist()) == [5, 5, 6]
        # phases follow the fixed order preparation < dissection < clipping < closure along procedure time
        surg = sorted((float(c["clip/start"]), int(c["labels/phase"])) for c in block if c["flags/is_surgical_content"])
        assert all(a[1] <= b[1] for a, b in zip(surg, surg[1:]))
    # held-out procedures: a different split namespace gives a different procedure timeline
    val = [w.sample("val", i, ()) for i in range(16)]
    assert [float(c["clip/end"]) for c in val] != [float(c["clip/end"]) for c in clips[:16]]
    with pytest.raises(ValueError, match=r"surgical\.phases"):
        make("surgical", **{"surgical.phases": (0, 5)})
    with pytest.raises(ValueError, match="surgical"):
        make("image64", domain="surgical")


def test_surgical_labels_tools_events_and_captions():
    w = make("surgical")
    names = {t: w.class_names(t) for t in ("phase", "step", "task", "tool")}
    assert [len(v) for v in names.values()] == [4, 12, 4, 4]
    n_noise = n_chat = 0
    for i in range(48):
        s = w.sample("train", i, SURG_FIELDS)
        if not s["flags/is_surgical_content"]:
            n_noise += 1
            assert int(s["labels/phase"]) == -1 and not s["multilabel/tools"].any() and np.all(s["events"] == -1)
            continue
        ev = s["events"][s["events"][:, 0] >= 0]
        # tools: multi-hot = the tools of the clip's task events; per-frame tool = the event covering that frame
        assert set(np.flatnonzero(s["multilabel/tools"]).tolist()) == set(ev[:, 0].tolist())
        for tool, typ, f0, f1 in ev.tolist():
            assert 7 <= typ <= 10 and s["video/tools"][f0:f1 + 1, tool].all()
        cap, level = s["caption"], int(s["clip/level"])
        first = {0: names["phase"][s["labels/phase"]] + " phase: ", 1: names["step"][s["labels/step"]] + ": ",
                 2: "the "}[level]
        assert cap.startswith(first)
        for tool in np.flatnonzero(s["multilabel/tools"]):
            assert names["tool"][tool] in cap
        for c0, c1, f0, f1 in s["moments"][s["moments"][:, 0] >= 0].tolist():
            assert s["moments/query"][list(s["moments"][:, 0]).index(c0)] == cap[c0:c1]
            assert 0 <= f0 <= f1 < 8
        raw = s["captions/raw_narration"]
        if s["flags/is_descriptive"]:
            assert raw.startswith("okay so") and all(names["tool"][t] in raw for t in ev[:, 0])
        else:
            n_chat += 1
            assert not any(t in raw for t in names["tool"])
    assert 1 <= n_noise <= 12 and 5 <= n_chat <= 25  # nonsurgical_p 0.1, chatter_p 0.3 of 48


def test_surgical_pixels_show_tool_and_target():
    w = make("surgical")
    cut_checked = 0
    for i in range(64):
        s = w.sample("train", i, ("video", "caption"))
        if not s["flags/is_surgical_content"]:
            assert np.all(s["video"] == s["video"][0])  # a static slide
            continue
        if int(s["clip/level"]) == 0:
            continue  # NOTE: phase captions name steps, not targets
        color = next(c for c in COLORS if f" {c} target" in s["caption"])
        hit = np.abs(s["video"].astype(np.float64) - PALETTE[COLORS.index(color)]).max(-1) <= 3
        assert hit.sum((1, 2)).min() > 10  # the target blob is in every frame (the tool may cover part of it)
        gray = np.abs(s["video"].astype(np.float64) - [184, 186, 194]).max(-1) <= 3
        assert gray.sum((1, 2)).min() > 4  # the tool shaft enters every frame
        ev = s["events"]
        if int(s["clip/level"]) == 2 and ev[0, 1] == 10:  # a task-level cut clip: the target splits in two
            # NOTE: the halves part by 0.08 * tau of the image side: 0.3 px in frame 0, 4.8 px in frame 7 at 64 px.
            # The cutting tool rests on the top edge, so measure the column gap on the rows below the center.
            gap = []
            for t in (0, 7):
                ys, _ = np.nonzero(hit[t])
                rows = hit[t, int(np.median(ys)) + 1:]
                gap.append(int(np.diff(np.flatnonzero(rows.any(0))).max()) - 1)
            assert gap[0] <= 1 and gap[1] >= 3, gap
            cut_checked += 1
    assert cut_checked >= 1


def test_generator_slot_renamed_and_action_names():
    w = make()
    assert hasattr(w, "_generator") and not hasattr(w, "_kind3d")
    names = w.class_names("action")
    assert len(names) == w.num_classes("action")
    for i in range(20):
        s = w.sample("train", i, ("captions",))
        if int(s["num_objects"]) == 1 and " moves " in s["captions/temporal"]:
            motion = names[s["labels/action"]].split(" and ")[0]  # "move up fast"
            assert s["captions/temporal"].split(" moves ")[1].startswith(motion[len("move "):])


def test_video_qa_without_video_qa_types_is_an_error():
    w = make()  # the preset's qa.types are image types only
    with pytest.raises(ValueError, match="qa.types"):
        w.sample("train", 0, fields=("video", "qa"))
    with pytest.raises(ValueError, match="qa.types"):
        w.sample("train", 0, fields=("qa/question",))
    ok = make(**{"qa.types": ("direction",)}).sample("train", 0, fields=("qa",))
    assert len(ok["qa/question"]) > 0
