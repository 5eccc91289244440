"""Config loading, overrides and validation: errors name the key before any compute."""

import pytest

from vljax.config import ConfigError, load_config


def test_presets_load():
    for preset in ("tiny", "small", "base", "large"):
        c = load_config(f"configs/clip.py:{preset}")
        assert c.method == "clip"
    assert load_config("configs/siglip.py:tiny").method == "siglip"


def _embed_two_images(c):
    """config -> (CLIP model outputs for 2 random 64 px images, params): the preset builds and runs."""
    import jax
    import numpy as np

    from vljax.methods import get_method

    method = get_method("clip")
    model = method.build(c, vocab_size=64)
    params = method.init_params(model, c, jax.random.key(0))
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    return model.apply({"params": params}, method.preprocess_images(images), np.ones((2, 32), np.int32)), params


def test_tiny_conv_preset_is_a_conv_tower_that_runs():
    c = load_config("configs/clip.py:tiny_conv")
    assert (c.model.image.stem, c.model.image.depth, c.train.steps) == ("conv", 0, 1200)
    tiny = load_config("configs/clip.py:tiny")
    assert (tiny.model.image.stem, tiny.model.image.depth, tiny.train.steps) == ("patch", 3, 600)
    out, params = _embed_two_images(c)
    assert out["img"].shape == (2, c.model.embed_dim)
    assert "block_00" not in params["img_tower"] and "embedding" in params["img_tower"]


def test_resnet_presets_build_clip_resnets():
    c = load_config("configs/clip.py:tiny_resnet")
    assert (c.model.image.arch, c.model.img_proj_kind) == ("resnet", "none")
    assert c.train.steps == 900
    out, params = _embed_two_images(c)
    assert out["img"].shape == (2, c.model.embed_dim)
    tower = params["img_tower"]
    assert "img_proj" not in params and "stage_2_block_0" in tower and "stage_3_block_0" not in tower
    # the norm fields are overridable: 4 groups normalizes differently from the default per-width count
    grouped, _ = _embed_two_images(load_config("configs/clip.py:tiny_resnet", ["--config.model.image.norm_groups=4"]))
    assert grouped["img"].shape == out["img"].shape and float(abs(grouped["img"] - out["img"]).max()) > 1e-3
    rn50 = load_config("configs/clip.py:rn50")
    assert (rn50.model.image.variant, rn50.model.embed_dim, rn50.data.world.resolution) == ("RN50", 1024, 224)
    assert (rn50.model.image.norm, rn50.model.image.norm_groups) == ("group", None)
    # caption attribute dropout: the CLIP demo preset's 0.75, SigLIP's ResNet preset 0.6 (0.75 loses color there)
    assert (c.data.attribute_drop.p, rn50.data.attribute_drop.p) == (0.75, 0.0)
    sig = load_config("configs/siglip.py:tiny_resnet")
    assert (sig.method, sig.model.image.arch, sig.data.attribute_drop.p, sig.model.bias_init) == (
        "siglip", "resnet", 0.6, -10.0)


def test_override_types_and_references():
    c = load_config(
        "configs/clip.py:tiny",
        [
            "--config.train.steps=7",
            "--config.optim.lr=1",
            "--config.model.dtype=bfloat16",
            "--config.data.world.objects.count=(1, 3)",
        ],
    )
    assert c.train.steps == 7
    assert isinstance(c.optim.lr, float) and c.optim.lr == 1.0
    assert tuple(c.data.world.objects.count) == (1, 3)


def test_unknown_key_names_nearest():
    with pytest.raises(ConfigError, match=r"train\.stpes.*train\.steps"):
        load_config("configs/clip.py:tiny", ["--config.train.stpes=3"])


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match=r"train\.steps"):
        load_config("configs/clip.py:tiny", ["--config.train.steps=abc"])
    with pytest.raises(ConfigError, match=r"train\.steps.*expected int"):
        load_config("configs/clip.py:tiny", ["--config.train.steps=1.5"])


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'tiyn'.*tiny"):
        load_config("configs/clip.py:tiyn")


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config("configs/nope.py:tiny")


def test_every_presets_world_evals_fit_their_splits():
    # NOTE: an eval asking for more scenes than its split holds fails only after training; check it at config time.
    import importlib
    from pathlib import Path

    checked = 0
    for path in sorted(Path("configs").glob("*.py")):
        for preset in importlib.import_module(f"configs.{path.stem}").PRESETS:
            c = load_config(f"{path}:{preset}")
            sizes = c.data.world.split_sizes
            for name, e in c.evals.items():
                if "n" in e and e.get("split") in sizes:
                    assert e.n <= sizes[e.split], f"{path}:{preset} evals.{name}.n={e.n} > {e.split} size"
                    checked += 1
    assert checked > 20
    demo = load_config("configs/clip.py:tiny_resnet")
    # the demo's zero-shot evals read the whole test split
    assert demo.evals.zeroshot.n == demo.evals.zeroshot_attr.n == demo.data.world.split_sizes.test == 2000


@pytest.mark.parametrize("override, match", [
    ("model.dtype=bfloat17",
     r"config\.model\.dtype='bfloat17' is not one of float32, bfloat16 \(did you mean bfloat16"),
    ("model.attention_impl=flsh", r"config\.model\.attention_impl='flsh' is not one of auto, xla, cudnn, pallas"),
    ("train.steps=0", r"config\.train\.steps=0: must be an integer >= 1"),
    ("train.batch_size=-4", r"config\.train\.batch_size=-4: must be an integer >= 1"),
    ("eval_every=-1", r"config\.eval_every=-1: must be an integer >= 0"),
    ("optim.total_steps=-1", r"config\.optim\.total_steps=-1: must be an integer >= 0"),
    ("model.image.patch_size=(7, 7)", r"config\.model\.image\.patch_size=\(7, 7\) does not divide the 64x64 image"),
    ("method=clpi", r"unknown method 'clpi'; available: clip, .* \(did you mean clip"),
    ("evals.retrieval.kind=retreival", r"config\.evals\.retrieval\.kind: unknown evaluator 'retreival'"),
    # NOTE: an evaluator whose method hook is missing (text_lm has no encoders) fails at load, not after training.
    ("method=text_lm", r"config\.evals\.\w+ \(kind .\w+.\) needs the method hook encoders, which "
                       r"vljax\.methods\.text_lm lacks"),
])
def test_bad_values_fail_at_load_naming_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config("configs/clip.py:tiny", [f"--config.{override}"])


@pytest.mark.parametrize("spec, override, match", [
    ("configs/filip.py:tiny", "model.filip.impl=palas", r"config\.model\.filip\.impl='palas' is not one of auto"),
    ("configs/filip.py:tiny", "model.filip.token_keep_ratio=1.5", r"token_keep_ratio must be in \(0, 1\]"),
    ("configs/prior.py:tiny", "prior.variant=priorr", r"config\.prior\.variant='priorr' is not one of"),
    ("configs/lvlm_ntp.py:tiny", "task=vqa", r"config\.task='vqa' is not one of qa, caption"),
])
def test_a_methods_check_config_hook_runs_at_load(spec, override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(spec, [f"--config.{override}"])


def test_every_evaluator_declares_its_method_hooks():
    """METHOD_HOOKS covers every evaluator and every `method.<hook>` its module (or the generation helpers it calls)
    reads, so a method without one fails at load, not after training."""
    import re
    from pathlib import Path

    from vljax import eval as ev

    assert set(ev.METHOD_HOOKS) == set(ev.EVALUATORS)
    folder = Path(ev.__file__).parent
    uses = lambda text: set(re.findall(r"\bmethod\.([a-z]\w*)", text))
    generation = uses((folder / "generation.py").read_text())
    for kind, hooks in ev.METHOD_HOOKS.items():
        text = (folder / f"{ev._MODULES.get(kind, kind)}.py").read_text()
        used = uses(text)
        if re.search(r"\bgeneration\.\w+\(|from vljax\.eval\.generation import", text) or kind == "generation":
            # NOTE: select_text is read by build_prompts only (the generation and prior_probe evaluators).
            used |= generation - ({"select_text"} if "build_prompts(" not in text and kind != "generation" else set())
        declared = {h for alt in hooks for h in alt.split("|")}
        # NOTE: config / data_spec are the method interface's required parts, checked by get_method.
        assert used - declared - {"data_spec", "build", "init_params", "make_loss"} == set(), kind


def test_config_path_must_be_a_python_file(tmp_path):
    for bad in ("configs", "README.md"):
        with pytest.raises(ConfigError, match=r"expected a Python config file"):
            load_config(bad)
    with pytest.raises(ConfigError, match=r"config file not found: clip; config files here: .*configs/clip\.py"):
        load_config("clip:tiny")


def test_cli_takes_both_override_forms():
    import argparse

    from vljax.config import parse_cli

    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir")
    args, overrides = parse_cli(parser, ["--config.train.steps", "3", "--workdir", "w", "--config.optim.lr=0.1",
                                         "--config.optim.b1", "-1"])
    assert args.workdir == "w"
    assert overrides == ["--config.train.steps=3", "--config.optim.lr=0.1", "--config.optim.b1=-1"]


def test_override_args_rebuild_the_config_from_its_spec():
    """The report's reproduce line and `vljax eval` without --config: spec + override_args == the run's config."""
    import json

    from vljax.config import config_changes, override_args

    cfg = load_config("configs/clip.py:tiny", ["--config.train.steps=7", "--config.model.dtype=bfloat16",
                                               "--config.data.world.objects.count=(1, 3)",
                                               "--config.optim.freeze=('^txt_',)"])
    args = override_args(cfg)
    assert "--config.train.steps=7" in args and "--config.model.dtype=bfloat16" in args
    for source in (cfg, json.loads(cfg.to_json_best_effort())):  # a ConfigDict or a workdir's config.json
        again = load_config("configs/clip.py:tiny", override_args(source))
        assert config_changes(again, cfg) == []
        assert tuple(again.data.world.objects.count) == (1, 3) and tuple(again.optim.freeze) == ("^txt_",)
    assert override_args(load_config("configs/clip.py:tiny")) == []


def test_schedule_length_follows_train_steps_unless_set_and_the_two_never_move_together():
    from vljax.config import override_args
    from vljax.train.optim import make_schedule

    c = load_config("configs/clip.py:tiny", ["--config.train.steps=40", "--config.optim.warmup_steps=0"])
    assert c.optim.total_steps == 0  # 0 = train.steps
    assert float(make_schedule(c.optim, c.train.steps)(40)) == 0.0  # cosine ends at train.steps
    assert override_args(c) == ["--config.optim.warmup_steps=0", "--config.train.steps=40"]
    longer = load_config("configs/clip.py:tiny", ["--config.train.steps=40", "--config.optim.total_steps=100"])
    assert (longer.train.steps, longer.optim.total_steps) == (40, 100)
    assert float(make_schedule(longer.optim, longer.train.steps)(40)) > 0.0  # stopped early on a longer schedule
    alone = load_config("configs/clip.py:tiny", ["--config.optim.total_steps=100"])
    assert alone.train.steps == 600  # the preset's, untouched
    with pytest.raises(ValueError, match="total_steps"):
        make_schedule(c.optim)
