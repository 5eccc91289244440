"""CLIP / SigLIP: HF, open_clip and big_vision checkpoints -> vljax TwoTower parity; export round trips."""

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from vljax.convert import big_vision, common, hf, open_clip  # noqa: E402
from vljax.sharding import make_mesh  # noqa: E402

F32_RTOL = 1e-5
VOCAB, EOS, PAD, MAX_LEN, IMAGE, PATCH = 98, 97, 1, 16, 16, 4
TOWER = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4)


def _randomize(model, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if "norm" in name:
                p.copy_((1.0 + 0.1 * noise) if name.endswith("weight") else 0.1 * noise)
            elif "logit" not in name:
                p.copy_(0.2 * noise)


def _save(model, folder, seed):
    _randomize(model.eval(), seed)
    model.save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def mesh():
    return make_mesh({"data": 2, "fsdp": 2, "tensor": 2})


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(3, IMAGE, IMAGE, 3)).astype(np.float32)
    tokens = rng.integers(2, EOS, size=(3, MAX_LEN)).astype(np.int32)
    for row, end in enumerate((5, 9, MAX_LEN - 1)):
        tokens[row, end] = EOS
        tokens[row, end + 1 :] = PAD
    return images, tokens


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip")
    cfg = transformers.CLIPConfig(
        text_config=dict(
            TOWER, vocab_size=VOCAB, max_position_embeddings=MAX_LEN, eos_token_id=EOS, pad_token_id=PAD, bos_token_id=0
        ),
        vision_config=dict(TOWER, image_size=IMAGE, patch_size=PATCH),
        projection_dim=24,
    )
    return folder, _save(transformers.CLIPModel(cfg), folder, 1)


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("siglip")
    cfg = transformers.SiglipConfig(
        text_config=dict(TOWER, vocab_size=VOCAB, max_position_embeddings=MAX_LEN, pad_token_id=PAD),
        vision_config=dict(TOWER, image_size=IMAGE, patch_size=PATCH),
    )
    model = transformers.SiglipModel(cfg)
    with torch.no_grad():  # NOTE: non-default scale/bias so a dropped or swapped scalar shows up.
        model.logit_scale.fill_(1.3)
        model.logit_bias.fill_(-2.5)
    return folder, _save(model, folder, 2)


def _reference(model, images, tokens):
    with torch.no_grad():
        out = model(
            input_ids=torch.as_tensor(tokens, dtype=torch.long),
            pixel_values=torch.as_tensor(images.transpose(0, 3, 1, 2)),
        )
    return dict(img=out.image_embeds.numpy(), txt=out.text_embeds.numpy(), logits=out.logits_per_image.numpy())


def _ours(conv, images, tokens):
    out = jax.jit(lambda p, i, t: conv.model.apply({"params": p}, i, t))(conv.params, images, tokens)
    logits = out["logit_scale"] * out["img"] @ out["txt"].T
    if out["logit_bias"] is not None:
        logits = logits + out["logit_bias"]
    return dict(img=out["img"], txt=out["txt"], logits=logits)


def _assert_parity(ours, ref):
    for key in ("img", "txt", "logits"):
        a, b = np.asarray(ours[key], np.float64), np.asarray(ref[key], np.float64)
        assert a.shape == b.shape, key
        rel = np.max(np.abs(a - b)) / np.max(np.abs(b))
        assert rel <= F32_RTOL, (key, rel)


def _assert_same_params(a, b):
    fa, fb = common.flatten(a), common.flatten(b)
    assert sorted(fa) == sorted(fb)
    for path in fa:
        np.testing.assert_array_equal(np.asarray(fa[path]), np.asarray(fb[path]), err_msg=path)


@pytest.mark.parametrize("which", ["clip", "siglip"])
def test_hf_parity_and_round_trip(which, clip_dir, siglip_dir, inputs, mesh, tmp_path):
    folder, ref_model = clip_dir if which == "clip" else siglip_dir
    ref = _reference(ref_model, *inputs)
    conv = hf.load_hf(folder, mesh)
    assert conv.kind == "two_tower"
    _assert_parity(_ours(conv, *inputs), ref)

    hf.save_hf(conv.params, conv.model_config, conv.arch, tmp_path / "out")
    back = hf.load_hf(tmp_path / "out", mesh)
    assert back.model_config == conv.model_config
    _assert_same_params(back.params, conv.params)
    exported = transformers.AutoModel.from_pretrained(tmp_path / "out").eval()
    _assert_parity(_ours(conv, *inputs), _reference(exported, *inputs))


def _open_clip_state(hf_model):
    """HF CLIPModel -> open_clip state dict: q/k/v packed into in_proj, projections as [W, E]."""
    sd = {k: v.detach().clone() for k, v in hf_model.state_dict().items()}
    out = {
        "visual.conv1.weight": sd["vision_model.embeddings.patch_embedding.weight"],
        "visual.class_embedding": sd["vision_model.embeddings.class_embedding"],
        "visual.positional_embedding": sd["vision_model.embeddings.position_embedding.weight"],
        "visual.proj": sd["visual_projection.weight"].T.contiguous(),
        "text_projection": sd["text_projection.weight"].T.contiguous(),
        "token_embedding.weight": sd["text_model.embeddings.token_embedding.weight"],
        "positional_embedding": sd["text_model.embeddings.position_embedding.weight"],
        "logit_scale": sd["logit_scale"],
        "attn_mask": torch.full((MAX_LEN, MAX_LEN), float("-inf")).triu(1),
    }
    for ours, theirs in (
        ("visual.ln_pre", "vision_model.pre_layrnorm"),
        ("visual.ln_post", "vision_model.post_layernorm"),
        ("ln_final", "text_model.final_layer_norm"),
    ):
        for p in ("weight", "bias"):
            out[f"{ours}.{p}"] = sd[f"{theirs}.{p}"]
    for tower, ours in (("vision_model", "visual.transformer"), ("text_model", "transformer")):
        for i in range(TOWER["num_hidden_layers"]):
            s, o = f"{tower}.encoder.layers.{i}", f"{ours}.resblocks.{i}"
            for p in ("weight", "bias"):
                out[f"{o}.attn.in_proj_{p}"] = torch.cat([sd[f"{s}.self_attn.{x}_proj.{p}"] for x in "qkv"])
                for a, b in (
                    ("attn.out_proj", "self_attn.out_proj"),
                    ("ln_1", "layer_norm1"),
                    ("ln_2", "layer_norm2"),
                    ("mlp.c_fc", "mlp.fc1"),
                    ("mlp.c_proj", "mlp.fc2"),
                ):
                    out[f"{o}.{a}.{p}"] = sd[f"{s}.{b}.{p}"]
    return out


def test_open_clip_state_dict(clip_dir, inputs, mesh, tmp_path):
    folder, ref_model = clip_dir
    state = _open_clip_state(ref_model)
    torch.save(state, tmp_path / "model.pt")
    conv = open_clip.load_open_clip(tmp_path / "model.pt", mesh, image_heads=4, text_heads=4)
    _, tokens = inputs
    # NOTE: open_clip pools at argmax(ids); EOS is the largest id in these tokens, as with its tokenizer.
    assert conv.model_config["text"]["pool"] == "argmax"
    _assert_parity(_ours(conv, *inputs), _reference(ref_model, *inputs))
    # A torn state dict is refused, naming the tensor.
    del state["transformer.resblocks.1.attn.in_proj_weight"]
    torch.save(state, tmp_path / "torn.pt")
    with pytest.raises(common.ConversionError, match=r"transformer\.resblocks\.1\.attn\.in_proj_weight"):
        open_clip.load_open_clip(tmp_path / "torn.pt", mesh, image_heads=4, text_heads=4)


def test_big_vision_npz(siglip_dir, inputs, mesh, tmp_path):
    folder, ref_model = siglip_dir
    conv = hf.load_hf(folder, mesh)
    path = big_vision.save_big_vision(common.host_params(conv.params), conv.model_config, tmp_path / "siglip.npz")
    keys = set(np.load(path).files)
    assert "params/img/Transformer/encoderblock_1/MultiHeadDotProductAttention_0/query/kernel" in keys
    assert "params/txt/Encoder_0/encoder_norm/scale" in keys and "params/t" in keys
    back = big_vision.load_big_vision(path, mesh)
    assert back.model_config == conv.model_config
    _assert_same_params(back.params, conv.params)
    _assert_parity(_ours(back, *inputs), _reference(ref_model, *inputs))


def test_partial_load_and_errors(clip_dir, mesh, tmp_path):
    folder, _ = clip_dir
    towers = hf.load_hf(folder, mesh, prefixes=("img_tower", "img_proj"))
    assert set(towers.params) == {"img_tower", "img_proj"}
    with pytest.raises(common.ConversionError, match=r"no vljax params under \['image_tower'\]"):
        hf.load_hf(folder, mesh, prefixes=("image_tower",))
    conv = hf.load_hf(folder, mesh)
    bad = dict(conv.model_config, image=dict(conv.model_config["image"], pool="gap"))
    with pytest.raises(common.ConversionError, match=r"image\.pool='gap' \(CLIP needs 'cls'\)"):
        hf.save_hf(conv.params, bad, "CLIPModel", tmp_path / "bad")
    with pytest.raises(common.ConversionError, match=r"unsupported Hugging Face architecture 'BlipModel'"):
        hf.save_hf(conv.params, conv.model_config, "BlipModel", tmp_path / "bad")
