"""`World`: the synthetic world's public API (WORLD.md 5.1) for 2D image scenes and 3D kinds.

`sample(split, i, fields)` is a pure function of (config, split, i). Core ground truth
(`objects/*`, `num_objects`, `relations`, `labels/*`, `multilabel/*`, `has/*`, `meta/*`,
`has_image`) is always returned; pixels (`image`, `boxes`, `masks`, `instance_map`) and all
text (`captions/*`, `qa/*`, ... from `annotate.annotate`) are opt-in by path prefix.
`cfg.kind` "object3d" / "room" dispatches `sample` / `spec` / `label` to `kind3d.Kind3D`, "video" to
`video.Video` (domain "surgical": `surgical.Surgical`), all held in `World._generator`.
"""
from __future__ import annotations

import copy
import hashlib
import importlib
import inspect
import warnings

import ml_collections
import numpy as np

from vljax.data.world.text_api import TextAPI
from vljax.data.world import concepts
from vljax.data.world import config as config_lib
from vljax.data.world import domains as domains_lib
from vljax.data.world import kind3d
from vljax.data.world import relations as relations_lib
from vljax.data.world import scene2d
from vljax.data.world import splits
from vljax.data.world import variants
from vljax.data.world import video as video_lib
from vljax.data.world.raster2d import Raster2D
from vljax.data.world.rng import stream_uniforms
from vljax.data.world.scene_spec import SceneSpec

LABEL_TASKS = ("main_shape", "main_color", "main_color_shape", "main_size", "main_texture",
               "main_texture_shape", "main_position", "count")
PIXEL_FIELDS = ("image", "boxes", "masks", "instance_map")
_OBJ_INT = ("shape", "color", "size", "texture", "cell", "z")
_OBJ_FLOAT = ("scale", "angle", "area")
_NOISY_STYLES = (concepts.STYLES.index("noisy_bg"), concepts.STYLES.index("texture_noise"))


def _selected(path: str, fields: tuple) -> bool:
    """True when `path` equals a requested field or lies under one (prefix selection)."""
    return any(path == f or path.startswith(f + "/") for f in fields)


def _load_annotate():
    """-> the language engineer's annotate module, or None (with a warning) when it cannot import."""
    try:
        return importlib.import_module("vljax.data.world.annotate")
    except Exception as e:  # noqa: BLE001  NOTE: text is optional; pixels and ground truth must still work.
        warnings.warn(f"vljax.data.world.annotate unavailable ({type(e).__name__}: {e}); "
                      "text fields are skipped", RuntimeWarning, stacklevel=3)
        return None


class World(TextAPI):
    """Deterministic 2D scene world: `World(cfg).sample(split, i, fields) -> dict` (WORLD.md 3.1)."""

    def __init__(self, cfg: ml_collections.ConfigDict):
        config_lib.validate(cfg)
        if cfg.kind not in ("image", "video") + kind3d.KINDS:
            raise ValueError(f"kind={cfg.kind!r}: World renders kinds image, video, {', '.join(kind3d.KINDS)}")
        self.cfg = copy.deepcopy(cfg)
        self.cfg.lock()
        self.kind = self.cfg.kind
        self.default_fields = tuple(self.cfg.fields)
        self._generator = None
        if self.kind in kind3d.KINDS or self.kind == "video":
            self.config_hash = _config_hash(self.cfg)
            # NOTE: non-image kinds share one dispatch slot: sample / spec / label / num_classes.
            if self.kind == "video" and self.cfg.domain == "surgical":
                from vljax.data.world import surgical  # NOTE: local import: only surgical worlds need it.
                self._generator = surgical.Surgical(self.cfg, self.config_hash)
            else:
                self._generator = (video_lib.Video(self.cfg, self.config_hash) if self.kind == "video"
                                   else kind3d.Kind3D(self.cfg, self.config_hash))
            self._annotate = None
            return
        self.scene2d = scene2d.Scene2D(self.cfg)
        self.raster = Raster2D(self.cfg.resolution, self.cfg.antialias, self.cfg.marks.size, self.cfg.seed)
        self.o_max = int(self.cfg.objects.max)
        self.may_overlap = self.cfg.layout.mode != "cells"
        self.config_hash = _config_hash(self.cfg)
        self._annotate = _load_annotate()
        self._annotate_kw = (set(inspect.signature(self._annotate.annotate).parameters)
                             if self._annotate is not None else set())
        # NOTE: ConfigDict lookups are slow; the hot path reads these plain attributes.
        self.seed = int(self.cfg.seed)
        self.duplicate_p = float(self.cfg.caption.duplicate_p)
        self.supervision_mix = tuple(self.cfg.supervision_mix)
        self.max_relations = int(self.cfg.relations.max)
        self.downsample = int(self.cfg.downsample)
        self.n_shapes, self.n_colors = int(self.cfg.objects.shapes), int(self.cfg.objects.colors)
        self.mismatch_p = float(self.cfg.caption.mismatch_p)
        self._truthful = None  # NOTE: mismatch-free twin World that supplies swapped-in captions (built lazily)
        # NOTE: medical / aerial / domain_mix worlds sample through domains.py; the natural path stays as is.
        self._dom = (domains_lib.Domains(self.cfg) if self.cfg.domain != "natural" or len(self.cfg.domain_mix)
                     else None)
        self._text_spec = {}
        self._selections = {}
        self._pixel_kw = tuple((k, src) for k, src in (("boxes", "boxes"), ("areas", "area")) if k in self._annotate_kw)

    # ------------------------------------------------------------------ scenes and labels
    def split_size(self, split: str) -> int:
        """split name -> number of indices (`split_sizes`; train is virtual)."""
        return splits.split_size(self.cfg, split)

    def _dup_of(self, split: str, index: int) -> int:
        """-> earlier index this one aliases (`caption.duplicate_p`), or -1."""
        p = self.duplicate_p
        if p <= 0 or index == 0:
            return -1
        u = stream_uniforms(self.seed, split, index, "split", 2)
        if u[0] >= p:
            return -1
        # NOTE: follow the alias chain to an original scene, so duplicates of duplicates agree.
        j = int(u[1] * index)
        while j > 0:
            u = stream_uniforms(self.seed, split, j, "split", 2)
            if u[0] >= p:
                break
            j = int(u[1] * j)
        return j

    def _image_only(self, what: str) -> None:
        """Raises ValueError for 2D-scene API calls on a 3D or video world."""
        if self._generator is not None:
            raise ValueError(f"World.{what} needs kind 'image'; this world has kind={self.kind!r}")

    def scene(self, split: str, index: int) -> SceneSpec:
        """(split, index) -> SceneSpec (sampled ground truth, no rendering)."""
        self._image_only("scene")
        return self._scene_info(split, index)[0]

    def _scene_info(self, split: str, index: int) -> tuple:
        """(split, index) -> (SceneSpec, info): duplicates resolved, constructed splits (novel, pairs, cf) built."""
        dup = self._dup_of(split, index)
        if self._dom is not None:
            return self._dom.scene(self, split, dup if dup >= 0 else index)
        spec, info = self.scene2d.sample(split, dup if dup >= 0 else index)
        if split in variants.CONSTRUCTED_SPLITS:
            spec = variants.construct(self, spec, split, dup if dup >= 0 else index)
            info = dict(info, main=scene2d.main_object(spec))
        return spec, info

    def scene_info(self, split: str, index: int) -> dict:
        """(split, index) -> sampling decisions {class, rule, composition, main} of that scene."""
        self._image_only("scene_info")
        return self._scene_info(split, index)[1]

    def labels(self, spec: SceneSpec) -> dict:
        """SceneSpec -> {task: int} for all LABEL_TASKS."""
        return self.scene2d.labels(spec)

    def label(self, split: str, index: int, task: str) -> int:
        """(split, index, task) -> int class label, without rendering."""
        if self._generator is not None:
            return self._generator.label(split, index, task)
        if self._dom is not None and task in domains_lib.DOMAIN_TASKS:
            return self._dom.label(self, split, index, task)
        if task not in LABEL_TASKS:
            raise ValueError(f"unknown task {task!r}; valid: {', '.join(LABEL_TASKS)}")
        return self.labels(self.scene(split, index))[task]

    def num_classes(self, task: str) -> int:
        """task -> number of classes C (labels lie in 0..C-1; count labels are raw counts 0..objects.max)."""
        if self._generator is not None:
            return self._generator.num_classes(task)
        if self._dom is not None and task in domains_lib.DOMAIN_TASKS:
            return self._dom.num_classes(task)
        if task == "count":
            return self.o_max + 1
        return len(scene2d.class_values(self.cfg, task))

    def relations(self, spec: SceneSpec) -> np.ndarray:
        """SceneSpec -> int32 [R, 3] true triples padded with -1."""
        return relations_lib.relations_array(spec, self.max_relations, self.may_overlap)

    # ------------------------------------------------------------------ rendering and samples
    def render(self, spec: SceneSpec, style: str | int | None = None, masks: bool = False) -> dict:
        """SceneSpec -> {image [H,W,3] u8, boxes [O,4] f32, area [O] f32, instance_map [H,W] i16, masks?}."""
        self._image_only("render")
        if isinstance(style, str):
            if style not in concepts.STYLES:
                raise ValueError(f"style={style!r}; valid: {', '.join(concepts.STYLES)}")
            style = concepts.STYLES.index(style)
        noise_rng = None
        if (spec.style if style is None else style) in _NOISY_STYLES:
            noise_rng = np.random.Generator(np.random.Philox(key=(int(spec.noise_seed), 0x5EED)))
        # NOTE: domain specs carry their layer parameters; Scene2D specs (natural) never do.
        raster = self._dom.rasters[spec.domain] if spec.domain_params else self.raster
        out = raster.render(spec, style=style, masks=masks, noise_rng=noise_rng)
        f = self.downsample
        if f > 1:
            h = out["image"].shape[0] // f
            img = out["image"].reshape(h, f, h, f, 3).astype(np.float32).mean((1, 3))
            out["image"] = (img + 0.5).astype(np.uint8)
        return out

    def sample(self, split: str, index: int, fields=None) -> dict:
        """(split, index, fields) -> flat dict of numpy arrays / str (WORLD.md 3.1); core always present."""
        fields = self.default_fields if fields is None else ((fields,) if isinstance(fields, str) else tuple(fields))
        if self._generator is not None:
            return self._generator.sample(split, index, fields)
        index = int(index)
        if self._dom is not None:
            return self._dom.sample(self, split, index, fields)
        pixels, text_fields = self._selection(fields)
        dup = self._dup_of(split, index)
        if split in variants.CONSTRUCTED_SPLITS:
            spec, info = self._scene_info(split, index)
        else:
            spec, info = self.scene2d.sample(split, dup if dup >= 0 else index)
        rel = self.relations(spec)
        rend = self.render(spec, masks="masks" in pixels)
        out = self._core(spec, rel, rend["area"], split, index, dup, info["main"])
        for k in pixels:
            out[k] = rend[k]
        if text_fields and self._annotate is not None:
            extra = self._annotate.annotate(self, spec, rel, split, index, text_fields,
                                            **self._pixel_kwargs(rend))
            out.update(extra)
            if self.mismatch_p > 0:
                domains_lib.apply_mismatch(self, split, index, out)
        return out

    def _selection(self, fields: tuple) -> tuple:
        """fields -> (selected pixel fields, text fields), memoized per fields tuple."""
        sel = self._selections.get(fields)
        if sel is None:
            sel = self._selections[fields] = (tuple(k for k in PIXEL_FIELDS if _selected(k, fields)),
                                              tuple(f for f in fields if f not in PIXEL_FIELDS))
        return sel

    def _pixel_kwargs(self, rend: dict) -> dict:
        """Visible boxes / areas for annotate, when its signature takes them (grounded text uses them)."""
        return {k: rend[src] for k, src in self._pixel_kw}

    def _core(self, spec, rel, area, split, index, dup, main) -> dict:
        """Always-present fields: objects/*, relations, labels/*, multilabel/*, has/*, meta/*."""
        out = {"has_image": np.bool_(True)}
        for k in _OBJ_INT:
            out[f"objects/{k}"] = getattr(spec, k)
        out["objects/scale"] = spec.scale
        out["objects/angle"] = spec.angle
        out["objects/area"] = area
        out["objects/center"] = spec.center
        out["objects/mark"] = spec.mark
        out["objects/valid"] = spec.valid
        out["num_objects"] = np.int32(spec.num_objects)
        out["relations"] = rel
        for k, v in self.scene2d.labels(spec, main).items():
            out[f"labels/{k}"] = np.int32(v)
        ns, nc = self.n_shapes, self.n_colors
        shapes = np.zeros(ns, np.uint8)
        shapes[spec.shape[spec.valid]] = 1
        colors = np.zeros(nc, np.uint8)
        colors[spec.color[spec.valid]] = 1
        style = np.zeros(len(concepts.STYLES), np.uint8)
        style[spec.style] = 1
        preds = np.zeros(len(concepts.RELATIONS), np.uint8)
        preds[rel[rel[:, 1] >= 0, 1]] = 1
        out["multilabel/shapes"] = shapes
        out["multilabel/colors"] = colors
        out["multilabel/tags"] = np.concatenate([shapes, style, preds])
        has_label, has_caption = True, True
        mix = self.supervision_mix
        if mix:
            u = float(stream_uniforms(self.seed, split, index, "supervision", 1)[0])
            cum = np.cumsum(np.asarray(mix, np.float64) / sum(mix))
            kind = int(np.searchsorted(cum, u, side="right"))  # 0 label only, 1 caption only, 2 both
            has_label, has_caption = kind != 1, kind != 0
        out["has/label"] = np.bool_(has_label)
        out["has/caption"] = np.bool_(has_caption)
        out.update(splits.meta_fields(split, index, self.config_hash, dup_of=dup))
        return out

    # ------------------------------------------------------------------ schema
    def spec(self, fields=None) -> dict:
        """fields -> {path: (shape tuple, dtype)} static schema of `sample` (str fields: dtype `str`)."""
        fields = tuple(self.cfg.fields if fields is None else ((fields,) if isinstance(fields, str) else fields))
        if self._generator is not None:
            return self._generator.spec(fields)
        o, r = self.o_max, int(self.cfg.relations.max)
        h = self.cfg.resolution // self.cfg.downsample
        ns, nc = self.cfg.objects.shapes, self.cfg.objects.colors
        out = {"has_image": ((), np.dtype(bool))}
        for k in _OBJ_INT:
            out[f"objects/{k}"] = ((o,), np.dtype(np.int32))
        for k in _OBJ_FLOAT:
            out[f"objects/{k}"] = ((o,), np.dtype(np.float32))
        out["objects/center"] = ((o, 2), np.dtype(np.float32))
        out["objects/mark"] = ((o, 2), np.dtype(np.int32))
        out["objects/valid"] = ((o,), np.dtype(bool))
        out["num_objects"] = ((), np.dtype(np.int32))
        out["relations"] = ((r, 3), np.dtype(np.int32))
        for k in LABEL_TASKS:
            out[f"labels/{k}"] = ((), np.dtype(np.int32))
        out["multilabel/shapes"] = ((ns,), np.dtype(np.uint8))
        out["multilabel/colors"] = ((nc,), np.dtype(np.uint8))
        out["multilabel/tags"] = ((ns + len(concepts.STYLES) + len(concepts.RELATIONS),), np.dtype(np.uint8))
        out["has/label"] = out["has/caption"] = ((), np.dtype(bool))
        for k in ("index", "split_id", "dup_of"):
            out[f"meta/{k}"] = ((), np.dtype(np.int64))
        out["meta/mismatched"] = ((), np.dtype(bool))
        out["meta/config_hash"] = ((), str)
        if _selected("image", fields):
            out["image"] = ((h, h, 3), np.dtype(np.uint8))
        if _selected("boxes", fields):
            out["boxes"] = ((o, 4), np.dtype(np.float32))
        res = self.cfg.resolution
        if _selected("masks", fields):
            out["masks"] = ((o, res, res), np.dtype(bool))
        if _selected("instance_map", fields):
            out["instance_map"] = ((res, res), np.dtype(np.int16))
        text_fields = tuple(f for f in fields if f not in PIXEL_FIELDS)
        if self._dom is not None:
            out.update(self._dom.core_spec())
            if text_fields:
                out.update(self._dom.text_spec(self, text_fields))
            return out
        if text_fields and self._annotate is not None:
            out.update(self._annotate_spec(text_fields))
        return out

    def _annotate_spec(self, text_fields: tuple) -> dict:
        """Schema of annotate's fields: its own `spec` when it has one, else read off one sample."""
        if text_fields not in self._text_spec:
            if hasattr(self._annotate, "spec"):
                spec = dict(self._annotate.spec(self, text_fields))
            else:
                # NOTE: text shapes are fixed by the config (padding), so one sample gives the schema.
                s, _ = self.scene2d.sample("train", 0)
                rend = self.render(s)
                ex = self._annotate.annotate(self, s, self.relations(s), "train", 0, text_fields,
                                             **self._pixel_kwargs(rend))
                spec = {k: _leaf_spec(v) for k, v in ex.items()}
            self._text_spec[text_fields] = spec
        return dict(self._text_spec[text_fields])

    # ------------------------------------------------------------------ subsets and variants
    def few_shot(self, task: str, shots: int, seed: int, pool: str = "train") -> np.ndarray:
        """(task, K, seed, pool) -> int64 [C*K] indices of `pool` with exactly K per class (class-major)."""
        classes = (scene2d.class_values(self.cfg, "count") if task == "count"
                   else list(range(self.num_classes(task))))
        return splits.few_shot(lambda i: self.label(pool, i, task), classes, self.split_size(pool), shots,
                               seed, name=f"pool {pool!r} for task {task!r}")

    def label_fraction(self, split: str, frac: float, seed: int) -> np.ndarray:
        """(split, fraction, seed) -> sorted int64 [round(frac*N)] indices; nested across fractions."""
        return splits.label_fraction(self.split_size(split), frac, seed, split)

    def variant(self, **overrides) -> "World":
        """(dotted or '__'-separated key=value overrides) -> a new World."""
        cfg = copy.deepcopy(self.cfg)
        cfg.unlock()
        for key, value in overrides.items():
            path = key.replace("__", ".")
            config_lib.check_known_keys(ml_collections.ConfigDict({}), extra=(path,))
            *parents, leaf = path.split(".")
            node = cfg
            for part in parents:
                node = node[part]
            node[leaf] = value
        return World(cfg)

    def contrast(self, split: str, index: int, factor: str | None = None, fields=("contrast",)) -> dict:
        """(split, index, factor name or None = drawn) -> contrast/* of that scene with that factor changed."""
        self._image_only("contrast")
        return variants.contrast(self, self.scene(split, index), split, int(index), tuple(fields), factor)

    def blind(self, split: str, index: int, fields=None) -> dict:
        """(split, index, fields) -> `sample` with has_image False and its images zeroed (blind variant, S-VCO)."""
        self._image_only("blind")
        return variants.blind(self.sample(split, index, fields))

    @staticmethod
    def format_box(box) -> str:
        """normalized xyxy [4] -> "[x1,y1,x2,y2]" with integers in 0..99."""
        from vljax.data.world import conversation  # NOTE: local import keeps world.py light.
        return conversation.format_box(box)

    @staticmethod
    def parse_box(text: str) -> np.ndarray:
        """"[x1,y1,x2,y2]" -> float32 [4] normalized box."""
        from vljax.data.world import conversation
        return conversation.parse_box(text)

    def continual_tasks(self, name_or_list="shape_families") -> list:
        """"shape_families" (CTP) or a list of shape-name tuples / domain names -> list of World variants."""
        return [self.variant(**ov) for ov in splits.continual_overrides(self.cfg, name_or_list)]

    def export(self, split: str, indices, path: str, fields=None, num_shards: int = 1) -> dict:
        """(split, int n or indices, path prefix, fields) -> manifest dict; writes array_record shards + manifest."""
        return splits.export(self, split, indices, path, fields, num_shards)

    @staticmethod
    def load_export(path: str):
        """path prefix of `export` -> (manifest dict, list of sample dicts equal to `sample`)."""
        return splits.load_export(path)

    def source(self, split: str, fields=None):
        """(split, fields) -> grain RandomAccessDataSource over `sample(split, i, fields)`."""
        from vljax.data.world.source import WorldSource  # NOTE: local import: source imports World.
        return WorldSource(self.cfg, split, fields)


def _config_hash(cfg) -> str:
    """ConfigDict -> sha256(WORLD_VERSION + config JSON)[:16] (`meta/config_hash`)."""
    blob = f"{config_lib.WORLD_VERSION}:{cfg.to_json(sort_keys=True)}"
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _leaf_spec(v) -> tuple:
    """A sample value -> (shape, dtype) with dtype `str` for text."""
    if isinstance(v, str):
        return ((), str)
    if isinstance(v, tuple):
        inner = _leaf_spec(v[0]) if v else ((), str)
        return ((len(v),) + inner[0], inner[1])
    a = np.asarray(v)
    return (a.shape, a.dtype)
