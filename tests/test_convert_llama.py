"""Llama / Mistral / Qwen2 causal LMs: HF folder -> vljax CausalLM logits parity, export round trip."""

import json

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from vljax.convert import common, hf  # noqa: E402
from vljax.sharding import make_mesh  # noqa: E402

F32_RTOL = 1e-5
BASE = dict(
    vocab_size=98,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=64,
    rms_norm_eps=1e-5,
)
VARIANTS = {
    "llama_untied_gqa": ("LlamaConfig", "LlamaForCausalLM", dict()),
    "llama_tied_linear": (
        "LlamaConfig",
        "LlamaForCausalLM",
        dict(tie_word_embeddings=True, rope_scaling=dict(rope_type="linear", factor=2.0)),
    ),
    # NOTE: max_position_embeddings below the test length so the dynamic-NTK base actually grows.
    "llama_dynamic_bias": (
        "LlamaConfig",
        "LlamaForCausalLM",
        dict(
            max_position_embeddings=8,
            attention_bias=True,
            mlp_bias=True,
            rope_scaling=dict(rope_type="dynamic", factor=3.0),
        ),
    ),
    "llama3_rope": (
        "LlamaConfig",
        "LlamaForCausalLM",
        dict(
            rope_theta=500.0,
            rope_scaling=dict(
                rope_type="llama3",
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=16,
            ),
        ),
    ),
    "qwen2_bias_tied": ("Qwen2Config", "Qwen2ForCausalLM", dict(tie_word_embeddings=True, rope_theta=1e6)),
    "mistral_window": ("MistralConfig", "MistralForCausalLM", dict(sliding_window=4, num_key_value_heads=1)),
}
LENGTH = 12


def _randomize(model, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            p.copy_(1.0 + 0.1 * noise if "norm" in name else 0.2 * noise)


def _hf_model(name, folder):
    cfg_cls, model_cls, extra = VARIANTS[name]
    cfg = getattr(transformers, cfg_cls)(**{**BASE, **extra})
    model = getattr(transformers, model_cls)(cfg).eval()
    _randomize(model, seed=len(name))
    model.save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def tokens():
    return np.random.default_rng(0).integers(0, BASE["vocab_size"], size=(2, LENGTH)).astype(np.int32)


@pytest.fixture(scope="module")
def mesh():
    return make_mesh({"data": 2, "fsdp": 2, "tensor": 2})


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))) / np.max(np.abs(b)))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_logits_parity_and_round_trip(name, tokens, mesh, tmp_path):
    ref_model = _hf_model(name, tmp_path / "hf")
    with torch.no_grad():
        ref = ref_model(torch.as_tensor(tokens, dtype=torch.long)).logits.numpy()
    conv = hf.load_hf(tmp_path / "hf", mesh)
    assert conv.kind == "causal_lm" and conv.arch == VARIANTS[name][1]
    logits = jax.jit(lambda p, t: conv.model.apply({"params": p}, t))(conv.params, tokens)
    assert _rel(logits, ref) <= F32_RTOL, _rel(logits, ref)
    # Params land sharded: the embedding table's vocab dim is split over the 'tensor' axis.
    emb = conv.params["token_embed"]["embedding"]
    assert emb.sharding.spec[0] == "tensor" and len(emb.addressable_shards) == 8
    assert emb.addressable_shards[0].data.shape[0] == BASE["vocab_size"] // 2

    hf.save_hf(conv.params, conv.model_config, conv.arch, tmp_path / "out")
    back = hf.load_hf(tmp_path / "out", mesh)
    assert back.model_config == conv.model_config
    for path, value in common.flatten(conv.params).items():
        np.testing.assert_array_equal(np.asarray(common.flatten(back.params)[path]), np.asarray(value), err_msg=path)
    exported = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        again = exported(torch.as_tensor(tokens, dtype=torch.long)).logits.numpy()
    assert _rel(again, ref) <= F32_RTOL


def test_bfloat16_load(tokens, mesh, tmp_path):
    _hf_model("llama_untied_gqa", tmp_path)
    conv = hf.load_hf(tmp_path, mesh, dtype="bfloat16")
    leaves = jax.tree.leaves(conv.params)
    assert all(x.dtype == jax.numpy.bfloat16 for x in leaves)
    f32 = hf.load_hf(tmp_path, mesh)
    a = conv.model.apply({"params": conv.params}, tokens)
    b = f32.model.apply({"params": f32.params}, tokens)
    assert _rel(a, b) <= 0.1  # bf16 weights: ~3 significant digits per weight, 2 layers


def test_errors_name_the_problem(mesh, tmp_path):
    _hf_model("llama_untied_gqa", tmp_path / "ok")
    cfg = json.loads((tmp_path / "ok" / "config.json").read_text())
    # Unsupported architecture: named, with the supported list.
    bad = tmp_path / "arch"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps(dict(cfg, architectures=["GPTNeoXForCausalLM"])))
    with pytest.raises(common.ConversionError, match=r"GPTNeoXForCausalLM.*supported: .*LlamaForCausalLM"):
        hf.load_hf(bad, mesh)
    # Missing tensor: named.
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(tmp_path / "ok" / "model.safetensors"))
    for case, edit, pattern in (
        (
            "missing",
            lambda t: t.pop("model.layers.1.mlp.up_proj.weight"),
            r"lacks 1 tensors: model\.layers\.1\.mlp\.up_proj\.weight \(for vljax block_01/mlp/wi_gate/kernel\)",
        ),
        (
            "shape",
            lambda t: t.__setitem__("model.layers.0.self_attn.k_proj.weight", np.zeros((16, 32), np.float32)),
            r"model\.layers\.0\.self_attn\.k_proj\.weight \[16, 32\] -> vljax block_00/attn/key_kernel: "
            r"expected shape \[32, 2, 16\]",
        ),
        (
            "extra",
            lambda t: t.__setitem__("model.layers.2.mlp.up_proj.weight", np.zeros((48, 32), np.float32)),
            r"does not use \(refusing a partial load.*model\.layers\.2\.mlp\.up_proj\.weight",
        ),
    ):
        folder = tmp_path / case
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(cfg))
        changed = dict(tensors)
        edit(changed)
        save_file(changed, str(folder / "model.safetensors"))
        with pytest.raises(common.ConversionError, match=pattern):
            hf.load_hf(folder, mesh)
