"""World configuration: `get_config(preset)` defaults (WORLD.md 5.2) and `validate(cfg)`."""
from __future__ import annotations

import difflib
import re

import ml_collections

from vljax.data.world import concepts

WORLD_VERSION = 1
PRESETS = ("image32", "image64", "hires128", "object3d", "room", "video", "surgical", "medical64", "aerial64")
# NOTE: splits with their own construction (2.4); all other names are plain namespaces.
SPECIAL_SPLITS = ("in_prior", "counter_prior", "heldout", "novel", "pairs", "cf", "ood_style",
                  "heldout_templates")
EVAL_SIZE = 2_000
# Default `fields` of the 3D presets: everything their generators produce.
OBJECT3D_FIELDS = ("points", "normals", "depth", "views", "rgb_view", "rgb_view_angle", "depth_pair")
ROOM_FIELDS = ("room", "ref", "scene_points", "rgbd")
VIDEO_FIELDS = ("video", "captions/temporal")
SURGICAL_FIELDS = ("video", "caption", "captions/raw_narration")


def _defaults() -> ml_collections.ConfigDict:
    """-> the `image64` defaults with every key of WORLD.md 5.2."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.kind = "image"
    c.domain = "natural"
    c.style = "clean"
    c.resolution = 64
    c.downsample = 1
    c.background = "gray"
    c.antialias = True
    c.color_jitter = 8 / 255

    c.objects = ml_collections.ConfigDict(dict(
        count=(1, 4), max=8, shapes=8, colors=8, sizes=("small", "medium", "large"),
        textures=("solid",), rotation=False))
    c.marks = ml_collections.ConfigDict(dict(kind="none", p=0.5, size=4 / 128))
    c.layout = ml_collections.ConfigDict(dict(mode="cells", grid=3, max_overlap=0.0))
    c.relations = ml_collections.ConfigDict(dict(max=16))
    c.compositions = ml_collections.ConfigDict(dict(heldout=()))
    c.prior = ml_collections.ConfigDict(dict(rules=(), strength=0.9))
    # NOTE: label "" = no class-conditioned sampling (ConfigDict fields keep their type).
    c.class_balance = ml_collections.ConfigDict(dict(label="", mode="uniform", ratio=50.0,
                                                     probs=(), eval=False))
    c.supervision_mix = ()
    c.domain_mix = ml_collections.ConfigDict()
    c.keyword_p = 0.5

    c.caption = ml_collections.ConfigDict(dict(
        default="long", kinds=("short", "long"),
        mention=("count", "size", "color", "texture", "shape", "position", "relation"),
        partial_generic_p=0.4, absent_p=0.3, distractor_p=0.0, mismatch_p=0.0, duplicate_p=0.0,
        ml_kind="long", av_subset=(0.2, 0.2)))
    c.ptp = ml_collections.ConfigDict(dict(grid=3))
    c.languages = ("en",)
    c.translation_noise = 0.0
    c.medical = ml_collections.ConfigDict(dict(findings=(0, 3), superclass_p=0.5))
    c.aerial = ml_collections.ConfigDict(dict(scene_types=8))
    c.qa = ml_collections.ConfigDict(dict(
        per_sample=4, mc_choices=0, text_only_p=0.0,
        types=("color", "shape", "count", "position", "existence", "relation"),
        heldout_templates=()))
    c.pope = ml_collections.ConfigDict(dict(per_sample=0))
    c.ref = ml_collections.ConfigDict(dict(per_sample=4))
    c.conversation = ml_collections.ConfigDict(dict(turns=0, merged=False))
    c.detector = ml_collections.ConfigDict(dict(
        kind="oracle", feat_dim=64, noise=0.1, regions=6, drop_p=0.0, mislabel_p=0.0, jitter=0.0))
    c.video = ml_collections.ConfigDict(dict(
        frames=8, duration=1.0, directions=4, speeds=("slow", "fast"), size_changes=("static",),
        events=("move",), action_pairs=False, static_caption_p=0.3, flash_p=0.0))
    c.audio = ml_collections.ConfigDict(dict(enabled=False, sample_rate=16000, n_mels=32,
                                             offscreen_p=0.3))
    c.points = ml_collections.ConfigDict(dict(n=1024, classes=10, views="zeroshot6"))
    c.room = ml_collections.ConfigDict(dict(
        count=(4, 10), max=10, classes=8, colors=4, points_per_object=256, scene_points=2048,
        rgbd_views=4, proposal_jitter=0.05))
    c.surgical = ml_collections.ConfigDict(dict(phases=(3, 4), steps=(2, 3), chatter_p=0.3,
                                                nonsurgical_p=0.1))
    sizes = {"train": 10_000_000, "val": EVAL_SIZE, "test": EVAL_SIZE}
    sizes.update({s: EVAL_SIZE for s in SPECIAL_SPLITS})
    c.split_sizes = ml_collections.ConfigDict(sizes)
    c.fields = ("image", "boxes", "caption", "captions", "qa")
    return c


def get_config(preset: str = "image64") -> ml_collections.ConfigDict:
    """preset name -> ConfigDict of the world (WORLD.md 5.2)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown world preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    c = _defaults()
    if preset == "image32":
        c.resolution = 32
    elif preset == "hires128":
        c.resolution = 128
    elif preset == "object3d":
        c.kind = "object3d"
        c.fields = OBJECT3D_FIELDS
    elif preset == "room":
        c.kind = "room"
        c.fields = ROOM_FIELDS
    elif preset == "video":
        c.kind = "video"
        c.fields = VIDEO_FIELDS
        c.video.size_changes = ("static", "grow", "shrink")
        c.video.events = ("move", "bounce", "grow", "shrink")
    elif preset in ("medical64", "aerial64"):
        # NOTE: domain objects use canonical shape ids up to rectangle and colors white / brown (domains.py).
        c.domain = preset[:-2]
        c.objects.shapes, c.objects.colors = 10, 10
        if preset == "medical64":
            c.objects.textures = ("solid", "striped", "dotted")
            c.objects.max, c.objects.count = 3, (0, 3)
            c.qa.types = ("finding_type", "zone", "superclass", "count")
            c.fields = ("image", "boxes", "masks", "caption", "captions/report", "spans/report", "qa")
        else:
            c.objects.max = 12
            c.fields = ("image", "boxes", "caption", "captions", "qa")
    elif preset == "surgical":
        c.kind = "video"
        c.domain = "surgical"
        c.fields = SURGICAL_FIELDS
    return c


def flat_items(cfg, prefix: str = "") -> dict:
    """ConfigDict -> {"a.b.c": value} for every leaf."""
    out = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, ml_collections.ConfigDict) and k != "domain_mix":
            out.update(flat_items(v, key + "."))
        else:
            out[key] = v
    return out


def check_known_keys(cfg, extra: tuple = ()) -> None:
    """Raises ValueError naming any key of cfg (or dotted key in `extra`) absent from the defaults."""
    valid = flat_items(_defaults())
    for key in list(flat_items(cfg)) + list(extra):
        if key not in valid and not key.startswith("domain_mix."):
            near = difflib.get_close_matches(key, list(valid), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise ValueError(f"unknown world config key {key!r}{hint}")


_TERM = re.compile(r"^\s*(\+?)\s*([a-z_]+)\s*=\s*([a-z_ ]+?)\s*$")
PREMISE_ATTRS = ("shape", "color", "size", "texture")
ROWS = ("top", "middle", "bottom")
COLS = ("left", "middle", "right")


def attr_values(attr: str, cfg) -> tuple:
    """attribute name -> tuple of enabled value names (in canonical order)."""
    if attr == "shape":
        return concepts.SHAPES[:cfg.objects.shapes]
    if attr == "color":
        return concepts.COLORS[:cfg.objects.colors]
    if attr == "size":
        return tuple(s for s in concepts.SIZES if s in cfg.objects.sizes)
    if attr == "texture":
        return tuple(t for t in concepts.TEXTURES if t in cfg.objects.textures)
    if attr == "row":
        return ROWS
    if attr == "col":
        return COLS
    raise ValueError(f"prior.rules: unknown attribute {attr!r}; valid: shape, color, size, texture, row, col")


def attr_id(attr: str, value: str) -> int:
    """(attribute, value name) -> canonical id (index into the full inventory)."""
    table = {"shape": concepts.SHAPES, "color": concepts.COLORS, "size": concepts.SIZES,
             "texture": concepts.TEXTURES, "row": ROWS, "col": COLS}[attr]
    return table.index(value)


def parse_rule(rule: str, cfg) -> dict:
    """"shape=circle -> color=red" -> {premise: (attr, id), consequence: (attr, id), cooccur: bool}."""
    parts = rule.split("->")
    if len(parts) != 2:
        raise ValueError(f"prior.rules: rule {rule!r} must look like 'shape=circle -> color=red'")
    terms = []
    for part in parts:
        m = _TERM.match(part)
        if m is None:
            raise ValueError(f"prior.rules: cannot parse {part.strip()!r} in rule {rule!r}")
        plus, attr, value = m.groups()
        if value not in attr_values(attr, cfg):
            raise ValueError(f"prior.rules: {attr}={value!r} in rule {rule!r} is not an enabled value "
                             f"({', '.join(attr_values(attr, cfg))})")
        terms.append((plus == "+", attr, attr_id(attr, value)))
    (p_plus, p_attr, p_id), (c_plus, c_attr, c_id) = terms
    if p_plus or p_attr not in PREMISE_ATTRS:
        raise ValueError(f"prior.rules: premise of {rule!r} must be one of {PREMISE_ATTRS} (no '+')")
    if c_plus and c_attr not in PREMISE_ATTRS:
        raise ValueError(f"prior.rules: co-occurrence consequence of {rule!r} must be an object attribute")
    if not c_plus and c_attr == p_attr:
        raise ValueError(f"prior.rules: rule {rule!r} constrains the premise attribute itself")
    return {"premise": (p_attr, p_id), "consequence": (c_attr, c_id), "cooccur": c_plus, "text": rule}


def parse_composition(comp: str, cfg) -> dict:
    """"red square" -> {"color": 0, "shape": 1}: one enabled value per attribute."""
    out = {}
    for word in comp.split():
        hits = [a for a in PREMISE_ATTRS if word in attr_values(a, cfg)]
        if not hits:
            raise ValueError(f"compositions.heldout: word {word!r} in {comp!r} is no enabled shape, color, "
                             "size or texture")
        if hits[0] in out:
            raise ValueError(f"compositions.heldout: {comp!r} names {hits[0]} twice")
        out[hits[0]] = attr_id(hits[0], word)
    if not out:
        raise ValueError("compositions.heldout: empty composition")
    return out


def validate(cfg) -> None:
    """Raises ValueError naming the offending field for any bad world config value."""
    check_known_keys(cfg)
    if cfg.kind not in ("image", "video", "object3d", "room"):
        raise ValueError(f"kind={cfg.kind!r}; valid: image, video, object3d, room")
    if not 32 <= cfg.resolution <= 512:
        raise ValueError(f"resolution={cfg.resolution} outside 32..512")
    if cfg.downsample < 1 or cfg.resolution % cfg.downsample:
        raise ValueError(f"downsample={cfg.downsample} must be >= 1 and divide resolution")
    if cfg.style not in concepts.STYLES:
        raise ValueError(f"style={cfg.style!r}; valid: {', '.join(concepts.STYLES)}")
    if cfg.background not in ("gray", "color", "gradient"):
        raise ValueError(f"background={cfg.background!r}; valid: gray, color, gradient")
    # NOTE: domain "surgical" is a video-only domain (WORLD.md 2.6), rendered by surgical.py.
    if cfg.domain == "surgical" and cfg.kind != "video":
        raise ValueError(f"domain='surgical' needs kind='video', got kind={cfg.kind!r}")
    from vljax.data.world import domains  # NOTE: local import: domains imports the renderer, which imports config.
    domains.validate(cfg)
    o = cfg.objects
    if not 1 <= o.shapes <= len(concepts.SHAPES):
        raise ValueError(f"objects.shapes={o.shapes} outside 1..{len(concepts.SHAPES)}")
    if not 1 <= o.colors <= len(concepts.COLORS):
        raise ValueError(f"objects.colors={o.colors} outside 1..{len(concepts.COLORS)}")
    for name, vals, inv in (("objects.sizes", o.sizes, concepts.SIZES),
                            ("objects.textures", o.textures, concepts.TEXTURES)):
        bad = [v for v in vals if v not in inv]
        if bad or not vals:
            raise ValueError(f"{name}={tuple(vals)}: unknown or empty ({bad}); valid: {', '.join(inv)}")
    lo, hi = o.count
    if not 0 <= lo <= hi:
        raise ValueError(f"objects.count={tuple(o.count)} must be an inclusive range 0 <= lo <= hi")
    if hi > o.max:
        raise ValueError(f"objects.count max {hi} > objects.max {o.max}")
    if not 2 <= cfg.layout.grid <= 8:
        raise ValueError(f"layout.grid={cfg.layout.grid} outside 2..8")
    if cfg.layout.mode not in ("cells", "free"):
        raise ValueError(f"layout.mode={cfg.layout.mode!r}; valid: cells, free")
    if cfg.layout.mode == "cells" and hi > cfg.layout.grid ** 2:
        raise ValueError(f"objects.count max {hi} does not fit layout.grid {cfg.layout.grid} "
                         f"({cfg.layout.grid ** 2} cells)")
    if not 0.0 <= cfg.layout.max_overlap < 1.0:
        raise ValueError(f"layout.max_overlap={cfg.layout.max_overlap} outside [0, 1)")
    if cfg.marks.kind not in ("none", "dot", "digit", "dots", "any"):
        raise ValueError(f"marks.kind={cfg.marks.kind!r}; valid: none, dot, digit, dots, any")
    if not 0.0 <= cfg.marks.p <= 1.0:
        raise ValueError(f"marks.p={cfg.marks.p} outside [0, 1]")
    for lang in cfg.languages:
        if lang not in concepts.LANGUAGES:
            raise ValueError(f"languages: unknown language {lang!r}; valid: {', '.join(concepts.LANGUAGES)}")
    if not 0.0 <= cfg.prior.strength <= 1.0:
        raise ValueError(f"prior.strength={cfg.prior.strength} outside [0, 1]")
    for rule in cfg.prior.rules:
        parse_rule(rule, cfg)
    if cfg.kind == "image":
        for comp in cfg.compositions.heldout:
            parse_composition(comp, cfg)
    cb = cfg.class_balance
    if cb.label and cb.label not in CLASS_BALANCE_LABELS:
        raise ValueError(f"class_balance.label={cb.label!r}; valid: {', '.join(CLASS_BALANCE_LABELS)}")
    if cb.mode not in ("uniform", "longtail", "explicit"):
        raise ValueError(f"class_balance.mode={cb.mode!r}; valid: uniform, longtail, explicit")
    if cb.mode == "longtail" and cb.ratio < 1:
        raise ValueError(f"class_balance.ratio={cb.ratio} must be >= 1")
    if cb.mode == "explicit" and (not cb.probs or min(cb.probs) < 0 or sum(cb.probs) <= 0):
        raise ValueError("class_balance.probs must be non-negative and non-empty for mode 'explicit'")
    if cfg.relations.max < 0:
        raise ValueError(f"relations.max={cfg.relations.max} must be >= 0")
    for split, size in cfg.split_sizes.items():
        if size < 0:
            raise ValueError(f"split_sizes.{split}={size} must be >= 0")


CLASS_BALANCE_LABELS = ("main_shape", "main_color", "main_color_shape", "main_size", "main_texture",
                        "main_texture_shape", "count")
