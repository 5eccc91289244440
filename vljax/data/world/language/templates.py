"""Class names, prompt templates and descriptors per language (WORLD.md 3.9).

`photo` prompts are deliberately unlike the captions; `caption_style` matches them. Toy-language
prompts are the lexicon's words for the same template keys, so every template exists in every language.
"""
from __future__ import annotations

from vljax.data.world import concepts
from vljax.data.world.language import lexicon
from vljax.data.world.language import realize as rz

TASKS = ("shape", "color", "size", "texture", "color_shape", "count", "position")
KINDS = ("photo", "caption_style", "ensemble_image", "point_cloud", "depth")

# Template keys: "{}" is the class slot, other "{key}" are lexicon words, bare tokens are English literals.
_KEYED = {
    "photo": ("{photo} {of} {} .",),
    "caption_style": ("{} .", "{exist} {} .", "{image} {with} {} ."),
    "ensemble_image": tuple(f"{adj}{noun} {{of}} {{}} ." for adj, noun in (
        ("", "{photo}"), ("", "{image}"), ("", "{drawing}"), ("", "{rendering}"), ("{bright} ", "{photo}"),
        ("{dark} ", "{photo}"), ("{blurry} ", "{photo}"), ("{cropped} ", "{photo}"), ("{clean} ", "{photo}"),
        ("{bright} ", "{image}"), ("{dark} ", "{drawing}"), ("{blurry} ", "{rendering}"))),
    "point_cloud": ("{point} {cloud} {of} {} .",),
    "depth": ("{depth} {image} {of} {} .",),
}
_EN = {
    "photo": ("a photo of a {}.",),
    "caption_style": ("a {}.", "there is a {}.", "an image with a {}."),
    "ensemble_image": ("a photo of a {}.", "an image of a {}.", "a drawing of a {}.", "a rendering of a {}.",
                       "a bright photo of a {}.", "a dark photo of a {}.", "a blurry photo of a {}.",
                       "a cropped photo of a {}.", "a clean photo of a {}.", "a bright image of a {}.",
                       "a dark drawing of a {}.", "a blurry rendering of a {}."),
    "point_cloud": ("point cloud of a {}.",),
    "depth": ("image of a {}.",),
}
_SHAPE_DESCRIPTORS = {
    "circle": ("round", "no corners"), "square": ("four equal sides", "four corners"),
    "triangle": ("three sides", "three corners"), "star": ("five points", "spiky outline"),
    "diamond": ("four slanted sides", "stands on a corner"), "cross": ("two crossing bars", "plus sign"),
    "hexagon": ("six sides", "six corners"), "heart": ("two round lobes", "pointed bottom"),
    "ellipse": ("oval", "stretched circle"), "rectangle": ("four sides", "longer than wide"),
    "pentagon": ("five sides", "five corners"), "ring": ("round", "hole in the middle"),
    "sun": ("round center", "many rays"),
}
_SIZE_DESCRIPTORS = {"tiny": ("very small", "barely visible"), "small": ("small", "takes little space"),
                     "medium": ("medium sized", "neither small nor large"), "large": ("large", "fills much space")}


def _fill(template: str, L: lexicon.Language) -> str:
    """keyed template -> surface template with "{}" kept."""
    toks = []
    for tok in template.split():
        if tok == "{}":
            toks.append("{}")
        elif tok.startswith("{"):
            toks.append(L.words[tok[1:-1]])
        else:
            toks.append(tok)
    return " ".join(toks).replace(" .", ".")


def templates(lang: str, kind: str) -> tuple:
    """(language, kind) -> tuple of prompt templates with one "{}" slot."""
    L = lexicon.language(lang)
    if kind not in _KEYED:
        raise ValueError(f"unknown template kind {kind!r}; valid: {', '.join(KINDS)}")
    if lang == "en":
        return _EN[kind]
    return tuple(_fill(t, L) for t in _KEYED[kind])


def _inventory(task: str, config) -> tuple:
    """task -> enabled values (names) by the config's "first n" sizes (full inventories without a config)."""
    if config is None:
        inv = {"shape": concepts.SHAPES, "color": concepts.COLORS, "size": concepts.SIZES,
               "texture": concepts.TEXTURES}
        return inv[task]
    if task == "shape":
        return concepts.SHAPES[:config.objects.shapes]
    if task == "color":
        return concepts.COLORS[:config.objects.colors]
    if task == "size":
        return tuple(s for s in concepts.SIZES if s in config.objects.sizes)
    return tuple(t for t in concepts.TEXTURES if t in config.objects.textures)


def class_names(task: str, lang: str = "en", config=None) -> tuple:
    """(task, language, optional world config) -> tuple of class names in label order."""
    L = lexicon.language(lang)
    T = rz._TABLES[L.code]
    if task == "position":
        return T.pos
    if task == "count":
        lo, hi = (tuple(config.objects.count) if config is not None else (1, 8))
        return tuple(T.num[i] for i in range(lo, hi + 1))
    if task in ("shape", "color", "size", "texture"):
        ids = [getattr(concepts, task.upper() + "S").index(v) for v in _inventory(task, config)]
        if task == "shape":
            return tuple(T.shape_sg[i] for i in ids)
        return tuple(getattr(T, task)[i] for i in ids)
    if task == "color_shape":
        colors = [concepts.COLORS.index(c) for c in _inventory("color", config)]
        shapes = [concepts.SHAPES.index(s) for s in _inventory("shape", config)]
        return tuple(rz.join(rz.np_pieces(L, rz.NP(color=c, shape=s)), False)[0] for c in colors for s in shapes)
    raise ValueError(f"unknown class-name task {task!r}; valid: {', '.join(TASKS)}")


def descriptors(task: str, config=None) -> dict:
    """task -> {English class name: [attribute phrases]} (PCB-style descriptors)."""
    if task == "shape":
        return {s: list(_SHAPE_DESCRIPTORS[s]) for s in _inventory("shape", config)}
    if task == "color":
        return {c: [f"{c} color", f"painted {c}"] for c in _inventory("color", config)}
    if task == "size":
        return {s: list(_SIZE_DESCRIPTORS[s]) for s in _inventory("size", config)}
    if task == "texture":
        return {t: [f"{t} texture", f"{t} surface"] for t in _inventory("texture", config)}
    if task == "color_shape":
        return {f"{c} {s}": [f"{c} color", *_SHAPE_DESCRIPTORS[s]]
                for c in _inventory("color", config) for s in _inventory("shape", config)}
    raise ValueError(f"unknown descriptor task {task!r}; valid: shape, color, size, texture, color_shape")


# NOTE: the attributes a noun phrase can name besides its class, in concepts' id order.
PHRASE_ATTRIBUTES = ("size", "color", "texture", "shape")


def attribute_phrases(task: str, marginalize, lang: str = "en", config=None) -> tuple:
    """-> per class of `task` (label order), the noun phrases naming it with every combination of the
    `marginalize` attributes' values, in the language's word order: shape with ('size', 'color') gives
    ('medium red circle', 'large red circle', 'medium blue circle', ...) for 'circle'. Zero-shot prompts
    averaged over them leave out the attributes that captions always name but a class prompt does not."""
    marginalize = tuple(marginalize)
    bad = [a for a in (task, *marginalize) if a not in PHRASE_ATTRIBUTES]
    if bad or task in marginalize or len(set(marginalize)) != len(marginalize):
        raise ValueError(
            f"attribute_phrases: task {task!r} and marginalize {marginalize} must be distinct attributes of "
            f"{PHRASE_ATTRIBUTES}"
        )
    L = lexicon.language(lang)
    ids = lambda a: [getattr(concepts, a.upper() + "S").index(v) for v in _inventory(a, config)]
    combos = [{}]
    for a in marginalize:
        combos = [dict(c, **{a: i}) for c in combos for i in ids(a)]
    return tuple(
        tuple(rz.join(rz.np_pieces(L, rz.NP(**c, **{task: k})), False)[0] for c in combos) for k in ids(task)
    )


def base_novel(task: str, config=None) -> tuple:
    """task -> (base, novel): English class names sorted, first half base."""
    names = sorted(class_names(task, "en", config))
    half = len(names) // 2
    return tuple(names[:half]), tuple(names[half:])
