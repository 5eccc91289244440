"""World domains: medical (findings, reports, KG spans), aerial (scene types, meta captions), domain_mix web pool."""
import re

import numpy as np
import pytest

from vljax.data import world
from vljax.data.world import concepts, domains, kg

pytestmark = pytest.mark.filterwarnings("ignore:.*annotate unavailable")
MIX = {"natural": 0.8, "aerial": 0.2}
_REPORT = re.compile(r"a (solid|striped|dotted) (round|spiculated|oval|linear) (\w+) in the "
                     r"(upper left|upper right|lower left|lower right) zone(?:, suggestive of (\w+))?\.")


def make(preset, **overrides):
    """-> World of a preset with dotted-key overrides."""
    w = world.World(world.get_config(preset))
    return w.variant(**overrides) if overrides else w


def mixed(**overrides):
    """-> image64 web pool with 10 shapes / colors and domain_mix natural .8 / aerial .2."""
    return make("image64", **{"objects.shapes": 10, "objects.colors": 10, "domain_mix": MIX, **overrides})


def binomial_ok(hits: int, n: int, p: float) -> bool:
    """hits within 4 binomial standard deviations of n * p."""
    return abs(hits - n * p) <= 4 * np.sqrt(n * p * (1 - p)) + 1


def same(a: dict, b: dict) -> bool:
    """Two samples are byte-identical (arrays, strings, tuples)."""
    if set(a) != set(b):
        return False
    return all(np.array_equal(a[k], b[k]) if isinstance(a[k], np.ndarray) else a[k] == b[k] for k in a)


# ---------------------------------------------------------------- determinism and schema
@pytest.mark.parametrize("name", ["medical64", "aerial64", "mix"])
def test_determinism_and_schema(name):
    w = mixed() if name == "mix" else make(name)
    w2 = mixed() if name == "mix" else make(name)
    fields = tuple(w.cfg.fields) + ("masks", "instance_map", "captions", "spans")
    spec = w.spec(fields)
    for i in (5, 0, 17, 5):
        ex = w.sample("val", i, fields)
        assert same(ex, w2.sample("val", i, fields))
        assert set(ex) == set(spec), set(ex) ^ set(spec)
        for k, (shape, dtype) in spec.items():
            v = ex[k]
            if dtype is str:
                assert isinstance(v, (str, tuple)), k
                assert (isinstance(v, str) and shape == ()) or len(v) == shape[0], k
            else:
                a = np.asarray(v)
                assert a.shape == tuple(shape) and a.dtype == dtype, (k, a.shape, a.dtype, shape, dtype)
    assert not same(w.sample("val", 1, fields), w.sample("val", 2, fields))
    assert not same(w.sample("val", 1, fields), w.sample("test", 1, fields))
    # NOTE: asking for fewer fields never changes the ones asked for.
    small = w.sample("val", 9, ("image",))
    full = w.sample("val", 9, fields)
    assert all(np.array_equal(small[k], full[k]) if isinstance(small[k], np.ndarray) else small[k] == full[k]
               for k in small)


# ---------------------------------------------------------------- medical
def test_medical_image_report_and_ground_truth_agree():
    w = make("medical64")
    ent = w.knowledge_graph("medical").entities
    n_seen = 0
    for i in range(60):
        ex = w.sample("train", i, ("image", "masks", "captions/report", "spans/report", "caption"))
        img = ex["image"]
        assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()   # gray replicated
        valid = ex["objects/valid"]
        slots = np.flatnonzero(valid)
        report = ex["captions/report"]
        assert ex["caption"] == report
        if not len(slots):
            assert report == "no acute findings." and ex["multilabel/findings"].sum() == 0
            assert ex["labels/finding"] == -1
            continue
        parsed = _REPORT.findall(report)
        assert len(parsed) == len(slots) and " ".join(m.group(0) for m in _REPORT.finditer(report)) == report
        for (tex, ftype, name, zone, sup), i_slot in zip(parsed, slots):
            fid = kg.FINDINGS.index(name)
            assert ex["objects/finding"][i_slot] == fid
            assert fid == kg.finding_id(kg.FINDING_TYPES.index(ftype), kg.FINDING_TEXTURES.index(tex))
            assert ex["objects/shape"][i_slot] == domains.FINDING_SHAPES[kg.FINDING_TYPES.index(ftype)]
            assert concepts.TEXTURES[ex["objects/texture"][i_slot]] == tex
            assert kg.ZONES[ex["objects/zone"][i_slot]] == zone
            cx, cy = ex["objects/center"][i_slot]
            assert zone == f"{'upper' if cy < 0.5 else 'lower'} {'left' if cx < 0.5 else 'right'}"
            assert sup == "" or sup == kg.SUPERCLASSES[kg.superclass(fid)]
            # the finding is brighter than the lung field around it and its mask lies in its zone
            m = ex["masks"][i_slot]
            assert m.sum() > 10
            ys, xs = np.nonzero(m)
            assert ((ys + 0.5) / 64 < 0.5).all() == (cy < 0.5) and ((xs + 0.5) / 64 < 0.5).all() == (cx < 0.5)
        fids = ex["objects/finding"][valid]
        assert np.flatnonzero(ex["multilabel/findings"]).tolist() == sorted(set(fids.tolist()))
        assert np.flatnonzero(ex["multilabel/finding_types"]).tolist() == sorted(set((fids // 3).tolist()))
        assert np.flatnonzero(ex["multilabel/superclass"]).tolist() == sorted({kg.superclass(f) for f in fids})
        spans = ex["spans/report"]
        for s0, s1, typ, slot, concept in spans[spans[:, 0] >= 0]:
            word = report[s0:s1]
            if typ == domains.ENTITY_SPAN:
                assert ent[concept][0] == word and valid[slot]
            else:
                assert typ == domains.SHAPE_SPAN and kg.FINDING_TYPES[concept] == word
        n_seen += 1
        for task in domains.MEDICAL_TASKS:
            assert w.label("train", i, task) == ex[f"labels/{task}"] >= 0
    assert n_seen > 30


def test_medical_zone_preference_and_finding_count_rates():
    w = make("medical64")
    pref, total, counts = 0, 0, np.zeros(4, int)
    for i in range(1500):
        spec = w.scene("train", i)
        fid, _, zone = domains.findings_of(spec)
        counts[spec.num_objects] += 1
        for f, z in zip(fid[spec.valid], zone[spec.valid]):
            pref += int(z == kg.preferred_zone(int(f)))
            total += 1
    assert binomial_ok(pref, total, 0.7), pref / total
    assert all(binomial_ok(c, 1500, 0.25) for c in counts), counts


def test_medical_qa_answers_match_an_independent_solver():
    w = make("medical64", **{"qa.mc_choices": 3})
    types = set()
    for i in range(40):
        ex = w.sample("val", i, ("qa",))
        valid = ex["objects/valid"]
        zones = ex["objects/zone"]
        for q, a, t, tgt, choices, ai in zip(ex["qa/question"], ex["qa/answer"], ex["qa/type"], ex["qa/target"],
                                             ex["qa/choices"], ex["qa/answer_index"]):
            kind = domains.QA_TYPES[t]
            types.add(kind)
            assert choices[ai] == a and choices.count(a) == 1
            if kind == "count":
                assert a == domains._number(int(valid.sum()))
                continue
            assert valid[tgt]
            f = int(ex["objects/finding"][tgt])
            if kind == "zone":
                assert kg.FINDINGS[f] in q and a == kg.ZONES[zones[tgt]]
            else:
                zone = kg.ZONES[zones[tgt]]
                assert zone in q and int((zones[valid] == zones[tgt]).sum()) == 1
                assert a == (kg.FINDING_TYPES[f // 3] if kind == "finding_type" else kg.SUPERCLASSES[kg.superclass(f)])
    assert types == set(domains.MEDICAL_QA)


# ---------------------------------------------------------------- aerial
def _water_fraction(ex) -> float:
    """Share of background pixels that look like water (blue well above red and green)."""
    img = ex["image"].astype(np.float32) / 255
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    bg = ex["instance_map"] == -1
    return float(((b > r + 0.2) & (b > g + 0.1) & bg).sum() / max(bg.sum(), 1))


def test_aerial_scene_type_matches_rendered_content():
    w = make("aerial64")
    seen = set()
    for i in range(120):
        ex = w.sample("train", i, ("image", "instance_map", "caption", "captions/meta"))
        t = int(ex["labels/scene_type"])
        seen.add(t)
        assert w.label("train", i, "scene_type") == t
        name = domains.SCENE_TYPES[t]
        water = _water_fraction(ex)
        assert (water > 0.05) if name in ("river", "beach") else (water < 0.005), (i, name, water)
        inst, shape = ex["instance_map"], ex["objects/shape"]
        frac = {s: float(np.isin(inst, np.flatnonzero(shape == concepts.SHAPES.index(s))).mean())
                for s in ("square", "cross", "rectangle", "circle", "ellipse")}
        if name in ("residential", "industrial"):
            assert frac["square"] > 0.004                     # buildings (analytic minimum 0.005)
        if name == "airport":
            assert frac["cross"] > 0.003                      # planes (analytic minimum 0.0038)
        if name == "parking":
            assert frac["rectangle"] > 0.006                  # cars (analytic minimum 0.0077)
        if name == "forest":
            img = ex["image"].astype(int)
            assert ((img[..., 1] > img[..., 0] + 20) & (img[..., 1] > img[..., 2] + 20)).mean() > 0.9
        if name in ("forest", "residential", "parking", "airport", "farmland", "river"):
            assert frac["square"] == 0 or name in ("residential", "farmland")
        # captions: the phrase names the scene and every object count; meta names the type and counts
        counts = domains.aerial_counts(w.scene("train", i))
        assert sum(counts.values()) == int(ex["num_objects"])
        meta = ex["captions/meta"]
        assert domains.SCENE_TYPE_NAMES[t] in meta
        for noun, c in counts.items():
            assert f"{c} {noun if c == 1 else noun + 's'}" in meta
    assert seen == set(range(8))


def test_aerial_class_names_templates_and_geo():
    w = make("aerial64")
    assert w.class_names("scene_type") == domains.SCENE_TYPE_NAMES
    assert all(t.count("{}") == 1 for t in w.templates("en", "aerial") + w.templates("en", "medical"))
    assert w.class_names("zone") == kg.ZONES and w.num_classes("scene_type") == 8
    with pytest.raises(ValueError, match="only in 'en'"):
        w.class_names("scene_type", "xa")
    ex = w.sample("val", 3, ())
    assert -60 <= ex["geo/lat"] <= 70 and -180 <= ex["geo/lon"] <= 180 and 0.3 <= ex["geo/gsd"] <= 2.0
    assert 0 <= ex["geo/season"] < 4
    few = make("aerial64", **{"aerial.scene_types": 3})
    assert {few.label("val", i, "scene_type") for i in range(60)} == {0, 1, 2}


# ---------------------------------------------------------------- domain_mix, keywords, mismatch, duplicates
def test_domain_mix_rates_and_keywords():
    w = mixed(keyword_p=0.5)
    n = 3000
    aerial = [i for i in range(n) if w.scene("train", i).domain == "aerial"]
    assert binomial_ok(len(aerial), n, 0.2), len(aerial) / n
    kw, natural_ok = 0, 0
    for i in aerial[:300]:
        ex = w.sample("train", i, ("caption", "captions/meta"))
        assert ex["meta/domain"] == domains.DOMAINS.index("aerial") and ex["labels/scene_type"] >= 0
        assert ex["captions/meta"].startswith("lat ")
        kw += ("aerial" in ex["caption"]) or ("satellite" in ex["caption"])
    assert binomial_ok(kw, 300, 0.5), kw
    for i in [i for i in range(60) if i not in aerial][:20]:
        ex = w.sample("train", i, ("caption", "captions/meta"))
        assert ex["meta/domain"] == 0 and ex["labels/scene_type"] == -1 and ex["captions/meta"] == ""
        assert "aerial" not in ex["caption"] and "satellite" not in ex["caption"]
        natural_ok += 1
    assert natural_ok == 20
    always = mixed(keyword_p=1.0)
    assert all(("aerial" in c or "satellite" in c) for c in
               (always.sample("train", i, ("caption",))["caption"] for i in aerial[:30]))


@pytest.mark.parametrize("name", ["image64", "mix"])
def test_mismatch_swaps_in_a_hashed_other_caption(name):
    kw = {"caption.mismatch_p": 0.3}
    w = mixed(**kw) if name == "mix" else make("image64", **kw)
    truth = w.variant(**{"caption.mismatch_p": 0.0})
    fields = ("image", "caption", "captions/short", "qa")
    flags = 0
    for i in range(150):
        ex, ref = w.sample("val", i, fields), truth.sample("val", i, fields)
        j = domains.mismatch_source(w, "val", i)
        assert bool(ex["meta/mismatched"]) == (j >= 0)
        assert np.array_equal(ex["image"], ref["image"]) and ex["qa/answer"] == ref["qa/answer"]
        if j >= 0:
            flags += 1
            assert j != i
            other = truth.sample("val", j, fields)
            assert ex["caption"] == other["caption"] and ex["captions/short"] == other["captions/short"]
        else:
            assert ex["caption"] == ref["caption"]
    assert binomial_ok(flags, 150, 0.3), flags


def test_duplicates_alias_the_domain_and_scene():
    w = mixed(**{"caption.duplicate_p": 0.3})
    dups = 0
    for i in range(1, 200):
        ex = w.sample("train", i, ())
        j = int(ex["meta/dup_of"])
        if j < 0:
            continue
        dups += 1
        orig = w.sample("train", j, ())
        assert ex["meta/domain"] == orig["meta/domain"] and ex["labels/scene_type"] == orig["labels/scene_type"]
        assert np.array_equal(ex["objects/center"], orig["objects/center"])
    assert binomial_ok(dups, 199, 0.3), dups


# ---------------------------------------------------------------- config errors
@pytest.mark.parametrize("key, value, needle", [
    ("domain", "underwater", "domain"),
    ("domain_mix", {"natural": 0.7, "aerial": 0.2}, "sum to"),
    ("domain_mix", {"natural": 0.5, "surgical": 0.5}, "domain_mix"),  # NOTE: medical mixes are allowed (W4).
    ("domain_mix", {"natural": 1.2, "aerial": -0.2}, "domain_mix.aerial"),
    ("keyword_p", 1.5, "keyword_p"),
    ("caption.mismatch_p", -0.1, "caption.mismatch_p"),
    ("caption.duplicate_p", 2.0, "caption.duplicate_p"),
    ("medical.findings", (0, 5), "medical.findings"),
    ("aerial.scene_types", 9, "aerial.scene_types"),
    ("objects.shapes", 8, "objects.shapes"),
    ("objects.textures", ("solid",), "objects.textures"),
])
def test_bad_domain_config_values_name_the_field(key, value, needle):
    cfg = world.get_config("medical64" if key in ("medical.findings", "objects.textures") else "aerial64")
    node = cfg
    *parents, leaf = key.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value
    with pytest.raises(ValueError, match=re.escape(needle)):
        world.World(cfg)


def test_domain_overrides_make_a_natural_config_valid():
    base = make("image64")
    for d in ("medical", "aerial"):
        w = base.variant(**domains.domain_overrides(d, base.cfg))
        ex = w.sample("val", 4, ("image", "caption"))
        assert ex["image"].shape == (64, 64, 3) and w.scene("val", 4).domain == d
