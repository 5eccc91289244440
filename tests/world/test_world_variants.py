"""World variants and text: contrast / preference / counterfactual, constructed splits, text-only QA,
conversations, translation noise, continual tasks and frozen export (WORLD.md 2.4, 3.3, 3.4, 3.8, 5.1)."""
import collections

import numpy as np
import pytest

from vljax.data.world import annotate as ann
from vljax.data.world import concepts, config, conversation, splits, variants
from vljax.data.world import world as world_lib
from vljax.data.world.language import lexicon, parse, templates

RULES = ("shape=circle -> color=red", "shape=triangle -> +shape=star", "shape=star -> row=top",
         "size=large -> shape=square")


def _world(**over):
    cfg = config.get_config("image64")
    cfg.objects.textures = ("solid", "striped", "dotted")
    cfg.objects.count = (1, 5)
    cfg.marks.kind = "dot"
    for k, v in over.items():
        node = cfg
        *path, leaf = k.split(".")
        for p in path:
            node = node[p]
        node[leaf] = v
    return world_lib.World(cfg)


@pytest.fixture(scope="module")
def world():
    return _world(**{"prior.rules": RULES, "conversation.turns": 3})


def _truth(objects):
    """objects/* arrays -> sorted (count, size, color, texture, shape, position) groups with English names."""
    c = collections.Counter()
    for i in np.flatnonzero(objects["valid"]):
        x, y = objects["center"][i]
        pos = concepts.POSITIONS[min(int(y * 3), 2) * 3 + min(int(x * 3), 2)]
        c[(concepts.SIZES[objects["size"][i]], concepts.COLORS[objects["color"][i]],
           concepts.TEXTURES[objects["texture"][i]], concepts.SHAPES[objects["shape"][i]], pos)] += 1
    return sorted((n,) + k for k, n in c.items())


def _footprint(w, spec, slots):
    """-> bool [H, W]: the given slots' visible masks (alpha >= 0.5), dilated by two pixels.

    NOTE: two, not one: antialiased pixels with alpha < 0.5 sit up to 2 px from the mask at star tips.
    """
    d = w.render(spec, masks=True)["masks"][[s for s in slots if s >= 0]].any(0)
    for _ in range(2):
        m = d.copy()
        d[1:] |= m[:-1]
        d[:-1] |= m[1:]
        d[:, 1:] |= m[:, :-1]
        d[:, :-1] |= m[:, 1:]
    return d


# ---------------------------------------------------------------- contrast
@pytest.mark.parametrize("factor", variants.IMAGE_FACTORS)
def test_contrast_changes_one_factor_and_only_its_pixels(world, factor):
    seen = 0
    for i in range(40):
        spec = world.scene("val", i)
        if factor not in variants.contrast_factors(world, spec):
            continue
        ex = world.contrast("val", i, factor, fields=("contrast",))
        _, new, _ = variants.contrast_spec(world, spec, "val", i, factor)
        np.testing.assert_array_equal(world.render(new)["image"], ex["contrast/image"])
        assert ex["contrast/factor"] == variants.CONTRAST_FACTORS.index(factor)
        before = world.render(spec)["image"]
        diff = (before != ex["contrast/image"]).any(-1)
        slots = [int(s) for s in ex["contrast/slots"]]
        n0, n1 = spec.num_objects, int(ex["contrast/objects/valid"].sum())
        # Which pixels may change: the edited slot (recolor, retexture, mark: its own mask; reshape / resize:
        # old and new masks); swaps and mirrors: all moved objects before and after; count_plus: the added
        # object; count_minus: the removed object's old pixels.
        if factor in ("color", "texture", "mark"):
            allowed = _footprint(world, spec, slots)
        elif factor in ("shape", "size"):
            allowed = _footprint(world, spec, slots) | _footprint(world, new, slots)
        elif factor == "swap_lr":
            allowed = _footprint(world, spec, range(n0)) | _footprint(world, new, range(n1))
        elif factor == "swap_positions":
            allowed = _footprint(world, spec, slots) | _footprint(world, new, slots)
        elif factor == "count_plus":
            allowed = _footprint(world, new, slots)
        else:
            allowed = _footprint(world, spec, slots)
        assert not (diff & ~allowed).any(), (factor, i)
        assert n1 == n0 + {"count_plus": 1, "count_minus": -1}.get(factor, 0)
        # exactly one factor: compare attribute multisets of the unedited slots.
        keep = [j for j in range(n0) if j not in slots]
        if factor in ("color", "shape", "size", "texture"):
            k = slots[0]
            assert ex[f"contrast/objects/{factor}"][k] != getattr(spec, factor)[k]
            for a in ("color", "shape", "size", "texture"):
                if a != factor:
                    assert ex[f"contrast/objects/{a}"][k] == getattr(spec, a)[k]
            for j in keep:
                assert all(ex[f"contrast/objects/{a}"][j] == getattr(spec, a)[j] for a in ("color", "shape", "size"))
        if factor == "swap_lr":
            np.testing.assert_allclose(ex["contrast/objects/center"][:n0, 0], 1 - spec.center[:n0, 0], atol=1e-6)
        got = parse.parse(ex["contrast/caption"], "en")
        want = _truth({k: ex[f"contrast/objects/{k}"] for k in ("valid", "center", "size", "color", "texture",
                                                                "shape")})
        assert sorted(got.mentions) == want, (factor, ex["contrast/caption"])
        seen += 1
        if seen >= 4:
            break
    assert seen >= 2, factor


def test_contrast_fields_are_opt_in_and_do_not_change_other_fields(world):
    base = world.sample("val", 3, ("image", "captions", "qa"))
    assert not any(k.startswith(("contrast", "pref", "cf/", "conversation", "qa/context")) for k in base)
    full = world.sample("val", 3, ("image", "captions", "qa", "contrast", "pref", "cf", "conversation"))
    for k, v in base.items():
        assert np.array_equal(np.asarray(v), np.asarray(full[k])) if not isinstance(v, (str, tuple)) else v == full[k]
    only = world.sample("val", 3, ("contrast/factor",))
    assert "contrast/image" not in only and only["contrast/factor"] == full["contrast/factor"]
    spec = world.spec(("contrast", "pref", "cf", "conversation"))
    for k, (shape, dtype) in spec.items():
        v = full[k]
        if dtype is str:
            assert isinstance(v, (str, tuple)) and (np.shape(v) == shape or isinstance(v, str)), k
        else:
            assert np.asarray(v).shape == shape and np.asarray(v).dtype == dtype, k


# ---------------------------------------------------------------- preference (POVID)
def test_pref_rejected_differs_by_exactly_the_flagged_edits(world):
    counts = np.zeros(4, int)
    for i in range(60):
        ex = world.sample("val", i, ("pref",))
        spec = world.scene("val", i)
        chosen, rejected = parse.parse(ex["pref/chosen"]), parse.parse(ex["pref/rejected"])
        objs = {k: getattr(spec, k) for k in ("valid", "center", "size", "color", "texture", "shape")}
        assert sorted(chosen.mentions) == _truth(objs)
        edits = ex["pref/edits"]
        counts += edits
        assert edits.sum() >= 1
        n = len(chosen.mentions)
        assert len(rejected.mentions) == n + edits[0]
        changed = set()
        for a, b in zip(chosen.mentions, rejected.mentions[:n]):
            changed |= {f for f, x, y in zip(("count", "size", "color", "texture", "shape", "position"), a, b)
                        if x != y}
        want = {f for f, e in zip(("", "color", "count", "position"), edits[:4]) if e and f}
        assert changed == want, (ex["pref/chosen"], ex["pref/rejected"], edits)
        if edits[0]:
            present = {concepts.SHAPES[s] for s in spec.shape[spec.valid]}
            assert rejected.mentions[-1][4] not in present
        assert ex["pref/random_rejected"] != ex["pref/chosen"] or i == 0
    assert (counts > 0).all(), counts


# ---------------------------------------------------------------- counterfactual (VLind)
def _exists(spec, m):
    """does some object of spec fit mention m (count, size, color, texture, shape, position)?"""
    for i in np.flatnonzero(spec.valid):
        pos = ann.position_id(*spec.center[i].tolist())
        vals = (None, concepts.SIZES[spec.size[i]], concepts.COLORS[spec.color[i]], concepts.TEXTURES[spec.texture[i]],
                concepts.SHAPES[spec.shape[i]], concepts.POSITIONS[pos])
        if all(x is None or x == v for x, v in zip(m[1:], vals[1:])):
            return True
    return False


def test_cf_statements_true_and_false_in_the_counterfactual_image(world):
    rules_seen = set()
    for i in range(30):
        ex = world.sample("val", i, ("cf",))
        u = variants._U(variants.stream_uniforms(world.seed, "val", i, "counterfactual", 64))
        k, rule, fact, cf, alt = variants._cf_specs(world, world.scene("val", i), u)
        assert k == ex["cf/rule"]
        rules_seen.add(k)
        (t,), (f,) = parse.parse(ex["cf/true_statement"]).mentions, parse.parse(ex["cf/false_statement"]).mentions
        assert _exists(cf, t) and not _exists(cf, f), (ex["cf/true_statement"], ex["cf/false_statement"])
        assert _exists(fact, f)
        assert ex["cf/images"].shape == (3, 64, 64, 3) and ex["cf/images"].dtype == np.uint8
        np.testing.assert_array_equal(ex["cf/images"][0], world.render(cf, style="clean")["image"])
        assert not np.array_equal(ex["cf/images"][0], ex["cf/images"][1])
        # the factual and counterfactual scenes differ only in object 0 (and the one it swapped cells with).
        diff = (ex["cf/factual_image"] != ex["cf/images"][0]).any(-1)
        moved = [j for j in range(cf.num_objects) if not np.allclose(cf.center[j], fact.center[j])] + [0]
        allowed = _footprint(world, fact, moved) | _footprint(world, cf, moved)
        assert not (diff & ~allowed).any()
        assert ex["cf/existent_noun"] in {concepts.SHAPES[s] for s in cf.shape[cf.valid]}
        assert ex["cf/nonexistent_noun"] not in {concepts.SHAPES[s] for s in cf.shape[cf.valid]}
        assert ex["cf/context"].startswith("in this world ") and ex["cf/context"] != ex["cf/factual_context"]
    assert rules_seen == {0, 2, 3}  # NOTE: the co-occurrence rule 1 has no counterfactual attribute.


def test_cf_split_scene_is_the_counterfactual_scene(world):
    for i in range(5):
        ex = world.sample("cf", i, ("image", "cf"))
        np.testing.assert_array_equal(ex["image"], ex["cf/images"][0])


# ---------------------------------------------------------------- constructed splits
def test_novel_pairs_and_heldout_template_splits():
    w = _world(**{"qa.heldout_templates": ("size", 56), "qa.types": ("color", "shape", "count", "existence",
                                                                       "relation", "size")})
    novel = {concepts.SHAPES.index(s) for s in templates.base_novel("shape", w.cfg)[1]}
    for i in range(40):
        spec = w.scene("novel", i)
        assert set(spec.shape[spec.valid].tolist()) <= novel
        assert w.scene("pairs", i).num_objects >= 2
        assert len(variants.contrast_factors(w, w.scene("pairs", i))) >= 6
    held = ann.heldout_template_ids(("size", 56))
    assert held == {16, 17, 18, 56}
    for split in ("train", "val", "test"):
        for i in range(80):
            t = w.sample(split, i, ("qa",))["qa/template"]
            assert not set(t.tolist()) & held, (split, i)
    got = set()
    for i in range(60):
        t = w.sample("heldout_templates", i, ("qa",))["qa/template"]
        t = t[t >= 0]
        assert set(t.tolist()) <= held and t.size
        got |= set(t.tolist())
    assert got == held
    with pytest.raises(ValueError, match="qa.heldout_templates"):
        _world(**{"qa.heldout_templates": (58,)}).sample("train", 0, ("qa",))


# ---------------------------------------------------------------- text-only QA
def _objects_from_context(text):
    """context -> (object dicts, relation triples over them) read by the parser alone."""
    p = parse.parse(text)
    objs = []
    for n, size, color, texture, shape, pos in p.mentions:
        for _ in range(n):
            objs.append(dict(slot=len(objs), size=size, color=color, texture=texture, shape=shape, position=pos))
    rels = set()
    for s_m, pred, o_m in p.relations:
        subj = [o for o in objs if _fits(o, s_m)]
        obj = [o for o in objs if _fits(o, o_m)]
        for a in subj:
            rels.add((a["slot"], concepts.RELATIONS.index(pred), obj[0]["slot"]))
    return objs, rels


def _fits(o, m):
    return all(v is None or o[k] == v for k, v in zip(("size", "color", "texture", "shape", "position"), m[1:]))


def _solve(q, objs, rels):
    """question -> answer from the objects and relations read off the context."""
    p = parse.parse(q)
    frame = p.frames[0]
    if frame.startswith("ASK:"):
        attr = frame[4:]
        if p.relations:
            (_, pred, o_m), = p.relations
            (b,) = [o for o in objs if _fits(o, o_m)]
            pi = concepts.RELATIONS.index(pred)
            xs = {o[attr] for o in objs if (o["slot"], pi, b["slot"]) in rels}
            (x,) = xs
            return x
        (x,) = [o for o in objs if _fits(o, p.mentions[0])]
        return x[attr]
    if frame == "WHERE":
        (x,) = [o for o in objs if _fits(o, p.mentions[0])]
        return x["position"]
    if frame == "COUNT":
        return lexicon.NUMBER_WORDS_EN[sum(_fits(o, p.mentions[0]) for o in objs)]
    if frame == "EXISTQ":
        return "yes" if any(_fits(o, p.mentions[0]) for o in objs) else "no"
    if frame == "COMPARE":
        a, b = (sum(_fits(o, m) for o in objs) for m in p.mentions)
        return "yes" if a > b else "no"
    (s_m, pred, o_m), = p.relations
    (s,) = [o for o in objs if _fits(o, s_m)]
    (o_,) = [o for o in objs if _fits(o, o_m)]
    return "yes" if (s["slot"], concepts.RELATIONS.index(pred), o_["slot"]) in rels else "no"


def test_text_only_qa_is_answerable_from_its_context_alone():
    w = _world(**{"qa.text_only_p": 0.4, "qa.per_sample": 6, "qa.types": ann.QA_TYPES})
    n_text, n_all, types = 0, 0, collections.Counter()
    for i in range(120):
        ex = w.sample("val", i, ("qa",))
        for q, a, ctx, need, t in zip(ex["qa/question"], ex["qa/answer"], ex["qa/context"], ex["qa/needs_image"],
                                      ex["qa/type"]):
            if not q:
                continue
            n_all += 1
            if need:
                assert ctx == ""
                continue
            n_text += 1
            types[ann.QA_TYPES[t]] += 1
            objs, rels = _objects_from_context(ctx)
            assert _solve(q, objs, rels) == a, (q, a, ctx)
    assert abs(n_text / n_all - 0.4) < 0.06, n_text / n_all
    assert {"relation", "two_hop", "count", "color"} <= set(types), types
    plain = _world().sample("val", 1, ("qa",))
    assert "qa/context" not in plain


# ---------------------------------------------------------------- conversations
def test_single_source_conversations_cover_tasks_and_answers_are_true():
    w = _world(**{"conversation.turns": 3, "languages": ("en", "xb")})
    tasks = collections.Counter()
    for i in range(80):
        ex = w.sample("val", i, ("conversation", "boxes", "ref"))
        conv = ex["conversation"]
        assert len(conv) == 6 and [r for r, _ in conv] == ["user", "assistant"] * 3
        task = ex["conversation/task"]
        tasks[task] += 1
        assert set(ex["conversation/sources"]) <= {task, "caption"}
        for (_, q), (_, a) in zip(conv[::2], conv[1::2]):
            if task == "rec" and "answer with a box" in q:
                spec = w.scene("val", i)
                text = q[len("where is "):q.index(" ? answer")]
                hits = [j for j, t in enumerate(ex["ref/text"]) if t == text]
                box = ex["boxes"][ex["ref/target"][hits[0]]] if hits else None
                if box is not None:
                    np.testing.assert_allclose(conversation.parse_box(a), box, atol=0.5 / 99 + 1e-6)
                assert spec.num_objects >= 1
            if task == "translate":
                src, tgt = q.split(" : ")[0].split()[2], q.split(" : ")[0].split()[4]
                body = q.split(" : ", 1)[1]
                ms, mt = parse.parse(body, src).mentions, parse.parse(a, tgt).mentions
                assert len(ms) == len(mt)
        if task == "translate":
            src = conv[0][1].split()[2]
            homonym = lexicon.LANGS["xb"].words["shape:circle"]
            has = any(homonym in q.replace("-", " ").split() for _, q in conv[::2])
            assert bool(ex["conversation/ambiguous"]) == (src == "xb" and has)
        else:
            assert not ex["conversation/ambiguous"]
    assert set(tasks) == set(conversation.TASKS), tasks


def test_merged_conversation_has_a_compositional_turn_needing_two_facts():
    w = _world(**{"conversation.turns": 4, "conversation.merged": True})
    n_comp = 0
    for i in range(40):
        ex = w.sample("val", i, ("conversation",))
        assert ex["conversation/task"] == "merged"
        k = int(ex["conversation/compositional"])
        if k < 0:
            continue
        n_comp += 1
        q, a = ex["conversation"][k][1], ex["conversation"][k + 1][1]
        q1, q2 = q[:-2].split(" and what ")
        spec = w.scene("val", i)
        objs = [dict(slot=j, size=concepts.SIZES[spec.size[j]], color=concepts.COLORS[spec.color[j]],
                     texture=concepts.TEXTURES[spec.texture[j]], shape=concepts.SHAPES[spec.shape[j]],
                     position=concepts.POSITIONS[ann.position_id(*spec.center[j].tolist())])
                for j in np.flatnonzero(spec.valid)]
        answers = [_solve(q1 + " ?", objs, set()), _solve("what " + q2 + " ?", objs, set())]
        assert a == " and ".join(answers), (q, a)
        assert len(set(ex["conversation/sources"])) >= 1
    assert n_comp >= 25
    box = np.array([0.1, 0.25, 0.5, 1.0], np.float32)
    assert conversation.format_box(box) == "[10,25,50,99]"
    np.testing.assert_allclose(conversation.parse_box("the box [10,25,50,99] ."), box, atol=0.5 / 99)


# ---------------------------------------------------------------- translation noise
def test_translation_noise_rate_and_flag():
    p = 0.1
    w = _world(**{"languages": ("en", "xa", "xc"), "translation_noise": p})
    clean = _world(**{"languages": ("en", "xa", "xc")})
    ctx = ann._context(w)
    replaced = content = 0
    for i in range(150):
        ex = w.sample("val", i, ("captions_ml",))
        spec, rel = w.scene("val", i), w.relations(w.scene("val", i))
        assert ex["captions_ml/en"] == clean.sample("val", i, ("captions_ml/en",))["captions_ml/en"]
        for lang in ("xa", "xc"):
            ref = ann.caption_text(clean, spec, rel, "val", i, "long", lang)
            plan = ann._plan_long(ctx, ann._objects(spec), ann._rel_set(rel, 8),
                                  ann._Draws(ann.stream_uniforms(0, "val", i, "caption", 8 * 48)[
                                      2 * 48:3 * 48].tolist()))
            text, n_rep, n_cont = ann.noisy_caption(ctx, plan, lang, "val", i)
            assert text == ex[f"captions_ml/{lang}"]
            assert bool(ex[f"captions_ml_noisy/{lang}"]) == (n_rep > 0)
            words_ref, words = ref.replace("-", " ").split(), text.replace("-", " ").split()
            assert len(words_ref) == len(words)
            assert sum(a != b for a, b in zip(words_ref, words)) == n_rep
            replaced += n_rep
            content += n_cont
    rate = replaced / content
    assert abs(rate - p) < 3 * np.sqrt(p * (1 - p) / content) + 0.005, (rate, content)


# ---------------------------------------------------------------- continual tasks, export
def test_continual_tasks_draw_disjoint_shape_families():
    w = _world()
    tasks = w.continual_tasks("shape_families")
    assert len(tasks) == 4
    seen = []
    for t, fam in zip(tasks, splits.CTP_FAMILIES):
        shapes = set()
        for i in range(60):
            spec = t.scene("train", i)
            shapes |= {concepts.SHAPES[s] for s in spec.shape[spec.valid]}
        assert shapes == set(fam), (fam, shapes)
        seen.append(shapes)
    assert all(not (a & b) for j, a in enumerate(seen) for b in seen[j + 1:])
    with pytest.raises(ValueError, match="overlaps"):
        w.continual_tasks([("circle",), ("circle", "square")])


def test_export_reads_back_equal_to_sampling(tmp_path, world):
    fields = ("image", "boxes", "captions", "qa", "conversation")
    man = world.export("val", [5, 2, 9, 4, 7], str(tmp_path / "frozen"), fields, num_shards=2)
    assert man["config_hash"] == world.config_hash and man["records"] == 5
    man2, recs = world_lib.World.load_export(str(tmp_path / "frozen"))
    assert man2["indices"] == man["indices"] == [5, 9, 7, 2, 4]
    for idx, rec in zip(man2["indices"], recs):
        ex = world.sample("val", idx, fields)
        assert set(rec) == set(ex)
        for k, v in ex.items():
            if isinstance(v, (str, tuple)):
                assert rec[k] == v, k
            else:
                assert np.asarray(rec[k]).dtype == np.asarray(v).dtype and np.array_equal(rec[k], v), k


def test_continual_tasks_over_domains_build_valid_worlds():
    # NOTE: domain tasks carry the inventories their renderer needs (domains.domain_overrides).
    w = world_lib.World(config.get_config("image64"))
    tasks = w.continual_tasks(("natural", "medical", "aerial"))
    assert [t.cfg.domain for t in tasks] == ["natural", "medical", "aerial"]
    for t in tasks:
        s = t.sample("train", 0)
        assert s["image"].shape == (64, 64, 3)
