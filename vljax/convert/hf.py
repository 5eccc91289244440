"""Hugging Face folders (config.json + *.safetensors) <-> vljax params, dispatched on `architectures`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

import numpy as np

from vljax.convert import common, hf_clip, hf_llama, hf_siglip

CONVERTERS: dict[str, ModuleType] = {
    arch: module for module in (hf_clip, hf_siglip, hf_llama) for arch in module.ARCHITECTURES
}


@dataclasses.dataclass
class Converted:
    """A converted checkpoint: vljax model, its config, sharded params and where it came from."""

    kind: str  # 'two_tower' | 'causal_lm'
    arch: str  # the Hugging Face architecture name
    model_config: dict
    model: Any
    params: dict


def converter_for(arch: str, where: str = "") -> ModuleType:
    """HF architecture name -> converter module, or ConversionError listing the supported ones."""
    if arch not in CONVERTERS:
        raise common.ConversionError(
            f"unsupported Hugging Face architecture {arch!r}{where}; supported: {', '.join(sorted(CONVERTERS))}"
        )
    return CONVERTERS[arch]


def read_config(folder: str | Path) -> tuple[dict, ModuleType]:
    """HF folder -> (config.json dict, converter module)."""
    hf = common.read_json(Path(folder) / "config.json")
    archs = hf.get("architectures") or []
    if len(archs) != 1:
        raise common.ConversionError(
            f"{folder}/config.json: expected one entry in 'architectures', got {archs}; "
            f"supported: {', '.join(sorted(CONVERTERS))}"
        )
    return hf, converter_for(archs[0], f" in {folder}/config.json")


def load_hf(
    folder: str | Path, mesh=None, *, dtype: str = "float32", rules=None, prefixes: Sequence[str] | None = None
) -> Converted:
    """HF folder -> Converted with params placed sharded on `mesh` (default: all devices, data axis)."""
    from vljax import sharding as shard_lib

    hf, conv = read_config(folder)
    cfg = conv.model_config(hf)
    mesh = mesh if mesh is not None else shard_lib.make_mesh({"data": -1})
    model = conv.build(cfg, param_dtype=common.DTYPES[dtype])
    shapes, shardings = common.abstract_params(conv.init_fn(model), mesh, rules)
    entries, ignore = conv.entries(hf, cfg)
    params = common.load_params(
        entries,
        common.SafetensorsSource(folder),
        shapes,
        shardings,
        dtype=dtype,
        ignore=ignore,
        prefixes=prefixes,
        what=f"{folder} ({hf['architectures'][0]})",
    )
    return Converted(conv.KIND, hf["architectures"][0], cfg, model, params)


def save_hf(params: Any, model_config: dict, arch: str, folder: str | Path) -> Path:
    """vljax params + model config -> HF folder (config.json + model.safetensors) for `arch`."""
    from safetensors.numpy import save_file

    conv = converter_for(arch)
    hf, tensors = conv.export(common.host_params(params), model_config, arch)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(hf, indent=2))
    save_file(
        {k: np.asarray(v, order="C") for k, v in tensors.items()},
        str(folder / "model.safetensors"),
        metadata={"format": "pt"},
    )
    return folder
