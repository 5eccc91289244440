"""`vljax convert` CLI (hf -> vljax -> hf) and config.init pretrained loading into sharded params."""

import jax
import ml_collections
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from vljax.convert import common, hf  # noqa: E402
from vljax.convert.init import load_pretrained  # noqa: E402
from vljax.main import main  # noqa: E402
from vljax.sharding import DEFAULT_RULES, make_mesh  # noqa: E402

TOWER = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=4)


@pytest.fixture(scope="module")
def mesh():
    return make_mesh({"data": 2, "fsdp": 2, "tensor": 2})


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama")
    cfg = transformers.LlamaConfig(vocab_size=64, num_key_value_heads=2, **TOWER)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(cfg).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip")
    cfg = transformers.CLIPConfig(
        text_config=dict(TOWER, vocab_size=64, max_position_embeddings=8, eos_token_id=63),
        vision_config=dict(TOWER, image_size=8, patch_size=4),
        projection_dim=16,
    )
    torch.manual_seed(1)
    transformers.CLIPModel(cfg).save_pretrained(folder)
    return folder


def _fresh(conv, mesh, seed):
    """A randomly initialized, sharded param tree of the converted model's architecture."""
    from vljax.convert.hf import converter_for

    init = converter_for(conv.arch).init_fn(conv.model)
    shapes, shardings = common.abstract_params(init, mesh)
    out = jax.jit(lambda r: common.flatten(init(r)), out_shardings=shardings)(jax.random.key(seed))
    return common.unflatten(out)


def _equal(a, b):
    fa, fb = common.flatten(a), common.flatten(b)
    assert sorted(fa) == sorted(fb)
    return all(np.array_equal(np.asarray(fa[k]), np.asarray(fb[k])) for k in fa)


def test_cli_round_trip(llama_dir, tmp_path, capsys):
    assert main(["convert", "--from", "hf", "--src", str(llama_dir), "--dst", str(tmp_path / "v")]) == 0
    assert (
        main(["convert", "--from", "vljax", "--src", str(tmp_path / "v"), "--to", "hf", "--dst", str(tmp_path / "hf")])
        == 0
    )
    assert _equal(hf.load_hf(tmp_path / "hf").params, hf.load_hf(llama_dir).params)
    bf16 = tmp_path / "v16"
    assert main(["convert", "--from", "hf", "--src", str(llama_dir), "--dst", str(bf16), "--dtype", "bfloat16"]) == 0
    assert main(["convert", "--from", "hf", "--src", str(tmp_path), "--dst", str(tmp_path / "x")]) == 2
    assert "config.json not found" in capsys.readouterr().err
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)  # a training workdir is not a convert output folder
    run = ["convert", "--from", "vljax", "--src", str(tmp_path / "run"), "--to", "hf", "--dst", str(tmp_path / "y")]
    assert main(run) == 2
    assert "is a vljax training run" in capsys.readouterr().err


def test_init_towers_and_subtree(clip_dir, llama_dir, mesh, tmp_path):
    clip = hf.load_hf(clip_dir, mesh)
    params = _fresh(clip, mesh, seed=3)
    config = ml_collections.ConfigDict(
        dict(
            init=dict(image=f"hf:{clip_dir}", text="", model=""), sharding=dict(rules=[list(r) for r in DEFAULT_RULES])
        )
    )
    out = load_pretrained(config, params)
    assert _equal(out["img_tower"], clip.params["img_tower"]) and _equal(out["img_proj"], clip.params["img_proj"])
    assert _equal(out["txt_tower"], params["txt_tower"])  # untouched
    emb = out["img_tower"]["embedding"]["proj"]["kernel"]
    assert emb.sharding == params["img_tower"]["embedding"]["proj"]["kernel"].sharding

    config.init = dict(image="", text="", model=f"hf:{clip_dir}")
    assert _equal(load_pretrained(config, params), clip.params)

    assert main(["convert", "--from", "hf", "--src", str(llama_dir), "--dst", str(tmp_path / "v")]) == 0
    llm = hf.load_hf(llama_dir, mesh)
    tree = {"llm": _fresh(llm, mesh, seed=4), "other": params["img_proj"]}
    config.init = dict(llm=f"vljax:{tmp_path / 'v'}")
    out = load_pretrained(config, tree)
    assert _equal(out["llm"], llm.params) and _equal(out["other"], tree["other"])

    config.init = dict(image=f"nope:{clip_dir}")
    with pytest.raises(ValueError, match=r"config\.init\.image='nope:"):
        load_pretrained(config, params)
    config.init = dict(model=f"hf:{llama_dir}")
    with pytest.raises(common.ConversionError, match=r"config\.init\.model: checkpoint params"):
        load_pretrained(config, params)


@pytest.mark.parametrize(
    "mean,std,expected",
    [
        ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711], "clip"),  # OpenAI CLIP
        ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5], "none"),  # SigLIP: [-1, 1]
        ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225], None),  # ImageNet: no vljax setting matches
    ],
)
def test_checkpoint_pixel_norm_from_the_preprocessor_config(tmp_path, mean, std, expected):
    import json

    from vljax.convert.init import checkpoint_pixel_norm

    assert checkpoint_pixel_norm("hf", str(tmp_path)) is None  # no preprocessor_config.json
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_mean": mean, "image_std": std}))
    assert checkpoint_pixel_norm("hf", str(tmp_path)) == expected
    assert checkpoint_pixel_norm("open_clip", "x.pt") == "clip"
    assert checkpoint_pixel_norm("big_vision", "x.npz") == "none"
    assert checkpoint_pixel_norm("vljax", str(tmp_path)) is None


def test_init_warns_when_pixel_norm_differs_from_the_checkpoint(clip_dir, mesh, tmp_path, caplog):
    import json
    import shutil

    folder = tmp_path / "clip"
    shutil.copytree(clip_dir, folder)
    # NOTE: what CLIPProcessor.save_pretrained writes next to a released CLIP (the fields read here).
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {"image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}
        )
    )
    params = _fresh(hf.load_hf(folder, mesh), mesh, seed=3)
    config = ml_collections.ConfigDict(
        dict(
            init=dict(image=f"hf:{folder}", text="", model=""),
            model=dict(pixel_norm="none"),
            sharding=dict(rules=[list(r) for r in DEFAULT_RULES]),
        )
    )
    with caplog.at_level("WARNING", logger="vljax.convert.init"):
        load_pretrained(config, params)
    assert "expects config.model.pixel_norm='clip', the config has 'none'" in caplog.text
    caplog.clear()
    config.model.pixel_norm = "clip"
    with caplog.at_level("WARNING", logger="vljax.convert.init"):
        load_pretrained(config, params)
    config.init = dict(image="", text=f"hf:{folder}", model="")  # a text tower alone: pixels do not matter
    config.model.pixel_norm = "none"
    with caplog.at_level("WARNING", logger="vljax.convert.init"):
        load_pretrained(config, params)
    assert "pixel_norm" not in caplog.text
