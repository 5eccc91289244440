"""The vljax converted-checkpoint folder: model.json (kind, arch, model config) + params/ (orbax)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import jax

from vljax.convert import common
from vljax.convert.hf import Converted, converter_for


def save_vljax(conv: Converted, folder: str | Path) -> Path:
    """Converted -> FOLDER/model.json + FOLDER/params (orbax StandardCheckpointer, sharded write)."""
    import orbax.checkpoint as ocp

    folder = Path(folder).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(
        json.dumps(dict(kind=conv.kind, arch=conv.arch, model_config=conv.model_config), indent=2)
    )
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(folder / "params", conv.params, force=True)
    return folder


def load_vljax(
    folder: str | Path, mesh=None, *, dtype: str = "float32", rules=None, prefixes: Sequence[str] | None = None
) -> Converted:
    """FOLDER written by save_vljax -> Converted with params restored directly into their shardings."""
    import orbax.checkpoint as ocp

    from vljax import sharding as shard_lib

    folder = Path(folder).absolute()
    if not (folder / "model.json").is_file() and (folder / "checkpoints").is_dir():
        raise common.ConversionError(
            f"{folder} is a vljax training run (it has checkpoints/), not a `vljax convert` output folder "
            f"(model.json + params/); start another run from its weights with "
            f"--config.init.model=checkpoint:{folder} (or init.image / init.text for one tower)")
    meta = common.read_json(folder / "model.json")
    conv = converter_for(meta["arch"], f" in {folder}/model.json")
    mesh = mesh if mesh is not None else shard_lib.make_mesh({"data": -1})
    model = conv.build(meta["model_config"], param_dtype=common.DTYPES[dtype])
    shapes, shardings = common.abstract_params(conv.init_fn(model), mesh, rules)
    target = common.unflatten(
        {p: jax.ShapeDtypeStruct(s.shape, common.DTYPES[dtype], sharding=shardings[p]) for p, s in shapes.items()}
    )
    with ocp.StandardCheckpointer() as ckptr:
        params = ckptr.restore(folder / "params", target)
    if prefixes is not None:
        params = {k: v for k, v in params.items() if k in prefixes}
    return Converted(meta["kind"], meta["arch"], meta["model_config"], model, params)
