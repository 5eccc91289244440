"""TPU readiness without a TPU: every dispatch lowers for TPU (cross-platform export on CPU).

The late-interaction and token-merging kernels are Triton kernels; Mosaic, the TPU lowering of pallas_call,
rejects their block shapes. So on TPU the dispatchers must pick the XLA paths, an explicit request for a
Triton kernel must fail with a message that says what to do, and a whole train step must lower for TPU with
no GPU-only custom call in it. Token merging's matching also has a Mosaic kernel, which impl='pallas' takes
on TPU; it must lower to a tpu_custom_call. Compiling the exported module needs libtpu, which is not here.
"""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from jax import export

from configs import clip as clip_config
from configs import filip as filip_config
from vljax.kernels import late_interaction as li
from vljax.kernels import tiling
from vljax.kernels import token_merging as tm
from vljax.models.vit import ViT
from vljax.train.loop import Experiment


def _abstract_mesh(platform, kind):
    device = jax.sharding.AbstractDevice(device_kind=kind, num_cores=1, platform=platform)
    return jax.sharding.AbstractMesh((1,), ("data",), abstract_device=device)


TPU = _abstract_mesh("tpu", "TPU v5 lite")


def _tpu_module(fn, *shapes):
    """fn, ShapeDtypeStructs -> StableHLO text of jit(fn) exported for TPU."""
    return export.export(jax.jit(fn), platforms=("tpu",))(*shapes).mlir_module()


def _custom_calls(text):
    return sorted(set(re.findall(r'call_target_name = "([^"]+)"', text)))


def _mosaic_calls(text):
    """StableHLO text -> how many Mosaic kernels (tpu_custom_call) it calls."""
    return len(re.findall(r"custom_call @tpu_custom_call\(", text))


def _bf16_vit(image_size, patch, batch=4, **kw):
    """ViT kwargs -> (bf16 ViT with mlp_dim = 4 x width, image ShapeDtypeStruct, abstract params)."""
    model = ViT(mlp_dim=4 * kw["width"], patch_size=(patch, patch), image_size=image_size, dtype=jnp.bfloat16, **kw)
    images = jax.ShapeDtypeStruct((batch, image_size, image_size, 3), jnp.bfloat16)
    return model, images, jax.eval_shape(model.init, jax.random.key(0), images)


def test_backend_follows_the_abstract_device():
    assert tiling.backend() == jax.default_backend()
    with jax.sharding.use_abstract_mesh(TPU):
        assert tiling.backend() == "tpu"
    with jax.sharding.use_abstract_mesh(_abstract_mesh("cuda", "NVIDIA H100 80GB HBM3")):
        assert tiling.backend() == "gpu"
    with jax.set_mesh(jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])):
        assert tiling.backend() == jax.default_backend()


def test_resolve_interpret_by_backend(monkeypatch):
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert tiling.resolve_interpret(None, "k") is True  # CPU: the interpreter
    assert tiling.resolve_interpret(True, "k") is True
    with pytest.raises(ValueError, match="interpret=False needs a GPU"):
        tiling.resolve_interpret(False, "k")
    with jax.sharding.use_abstract_mesh(TPU):
        for flag in (None, False):
            with pytest.raises(ValueError, match=r"k: .*Triton.*Mosaic on TPU.*impl='auto'"):
                tiling.resolve_interpret(flag, "k")
        assert tiling.resolve_interpret(True, "k") is True
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert tiling.resolve_interpret(None, "k") is False


def test_late_interaction_on_tpu_takes_the_chunked_path():
    # B=512, Nv=196, Nt=77, D=256 (the benchmark shape): the kernel's size on GPU.
    b, nv, nt, d = 512, 196, 77, 256
    assert li.pick_impl(b, b, nv, nt, backend="gpu") == "pallas"
    shapes = (jax.ShapeDtypeStruct((b, nv, d), jnp.bfloat16), jax.ShapeDtypeStruct((b, nt, d), jnp.bfloat16))

    def loss(v, t, impl):
        i2t, t2i = li.late_interaction(v, t, impl=impl)
        return jnp.sum(i2t) + jnp.sum(t2i)

    with jax.sharding.use_abstract_mesh(TPU):
        assert li.pick_impl(b, b, nv, nt) == "chunked"
        text = _tpu_module(jax.grad(lambda v, t: loss(v, t, "auto"), argnums=(0, 1)), *shapes)
        # the Triton kernel itself is refused on TPU with a message (impl='pallas' takes the Mosaic one there)
        ones = lambda n: jnp.ones((b, n), jnp.float32)
        with pytest.raises(ValueError, match="late_interaction impl='pallas'.*Mosaic on TPU"):
            _tpu_module(lambda v, t: li.pallas(v, t, ones(nv), ones(nt)), *shapes)
    assert _custom_calls(text) == []
    assert "tpu_custom_call" not in text


def test_late_interaction_opts_into_the_mosaic_kernel_on_tpu():
    # impl='pallas' on TPU: the Mosaic forward kernel (one tpu_custom_call) and an XLA backward from its argmaxes.
    # Lowering only (compiling needs libtpu); the numbers are checked in interpret mode (test_late_interaction.py).
    b, nv, nt, d = 512, 196, 77, 256
    shapes = (jax.ShapeDtypeStruct((b, nv, d), jnp.bfloat16), jax.ShapeDtypeStruct((b, nt, d), jnp.bfloat16))

    def loss(v, t):
        i2t, t2i = li.late_interaction(v, t, impl="pallas")
        return jnp.sum(i2t) + jnp.sum(t2i)

    with jax.sharding.use_abstract_mesh(TPU):
        text = _tpu_module(jax.grad(loss, argnums=(0, 1)), *shapes)
    calls = re.findall(r"custom_call @tpu_custom_call\(.*?: \(([^)]*)\) -> \(([^)]*)\)", text)
    # Nv 196 -> 200 (sublanes), Nt 77 -> 128 and the 512 texts in blocks of 128 (lanes)
    assert calls == [(
        "tensor<512x200x256xbf16>, tensor<512x200x1xf32>, tensor<512x128x256xbf16>, tensor<512x128xf32>",
        "tensor<512x1x512xf32>, tensor<512x1x512xf32>, tensor<512x200x512xi32>, tensor<512x512x128xi32>",
    )]


def test_token_merging_vit_on_tpu_takes_the_reference_matching():
    model, images, params = _bf16_vit(224, 16, width=384, depth=2, num_heads=6, pool="cls", token_merging={"r": 13})
    loss = lambda p, x: jnp.sum(model.apply(p, x).astype(jnp.float32))
    with jax.sharding.use_abstract_mesh(TPU):
        text = _tpu_module(jax.grad(loss), params, images)
    # NOTE: bf16 unmasked attention would be cuDNN on a GPU ('auto'); on TPU it is XLA, with no custom call.
    assert _custom_calls(text) == []
    assert "tpu_custom_call" not in text


def test_token_merging_opts_into_the_mosaic_kernel_on_tpu():
    # impl='pallas' on TPU is the Mosaic kernel (match_mosaic): pallas_call lowers through Mosaic's block-shape
    # and op rules into one tpu_custom_call. Compiling that call needs libtpu (not here), so this checks the
    # lowering only; the kernel's numbers are checked in interpret mode (tests/test_token_merging.py).
    metric = jax.ShapeDtypeStruct((4, 197, 64), jnp.float32)
    with jax.sharding.use_abstract_mesh(TPU):
        text = _tpu_module(lambda m: tm.bipartite_soft_matching(m, 13, impl="pallas").src_idx, metric)
    assert _mosaic_calls(text) == 1
    # the ViT with token_merging.impl='pallas': one kernel call per merging layer, in the gradient's forward
    merging = {"r": 13, "impl": "pallas"}
    model, images, params = _bf16_vit(224, 16, width=384, depth=2, num_heads=6, pool="cls", token_merging=merging)
    loss = lambda p, x: jnp.sum(model.apply(p, x).astype(jnp.float32))
    with jax.sharding.use_abstract_mesh(TPU):
        text = _tpu_module(jax.grad(loss), params, images)
    assert _mosaic_calls(text) == 2


def test_mosaic_kernel_runs_on_each_batch_shard_of_a_tpu_mesh():
    # Under a mesh with data = 4 the kernel sees 2 of the 8 samples (shard_map), not a gathered batch of 8.
    device = jax.sharding.AbstractDevice(device_kind="TPU v5 lite", num_cores=1, platform="tpu")
    mesh = jax.sharding.AbstractMesh((4, 2), ("data", "tensor"), abstract_device=device)
    metric = jax.ShapeDtypeStruct((8, 197, 64), jnp.float32, sharding=jax.NamedSharding(mesh, jax.P("data")))
    with jax.sharding.use_abstract_mesh(mesh):
        text = _tpu_module(lambda m: tm.bipartite_soft_matching(m, 13, impl="pallas").src_idx, metric)
    calls = re.findall(r"custom_call @tpu_custom_call\(.*?: \((tensor<[^,]*>)", text)
    # A tokens padded to 128 lanes, C = 64 padded to 128
    assert calls == ["tensor<2x128x128xf32>"]


def test_mosaic_kernel_is_refused_off_tpu(monkeypatch):
    metric = jnp.ones((1, 9, 8))
    with jax.sharding.use_abstract_mesh(_abstract_mesh("cuda", "NVIDIA H100 80GB HBM3")):
        with pytest.raises(ValueError, match="Mosaic kernel compiles only for TPU.*'gpu'"):
            tm.match_mosaic(metric)
        assert tiling.resolve_interpret_tpu(True, "k") is True
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert tiling.resolve_interpret_tpu(None, "k") is True
    with pytest.raises(ValueError, match="only for TPU.*'cpu'"):
        tiling.resolve_interpret_tpu(False, "k")
    with jax.sharding.use_abstract_mesh(TPU):
        assert tiling.resolve_interpret_tpu(None, "k") is False


@pytest.mark.parametrize(
    "module,preset,kernels", [(clip_config, "tiny", 0), (filip_config, "tiny", 0), (filip_config, "tiny", 1)]
)
def test_train_step_lowers_for_tpu(monkeypatch, tmp_path, module, preset, kernels):
    # kernels = 1: FILIP with model.filip.impl='pallas', the Mosaic forward kernel inside the sharded loss's
    # shard_map (8 data shards), one tpu_custom_call; the default 'auto' has none.
    cfg = module.get_config(preset)
    cfg.train.batch_size = 16
    cfg.model.dtype = "bfloat16"
    if kernels:
        cfg.model.filip.impl = "pallas"
    exp = Experiment(cfg, tmp_path)
    state, shardings = exp.create_state()
    step = exp.jit_step(shardings)
    res, length = int(cfg.data.world.resolution), int(cfg.data.max_len)
    batch = {
        "image": jax.ShapeDtypeStruct((16, res, res, 3), jnp.uint8),
        "text": jax.ShapeDtypeStruct((16, length), jnp.int32),
    }
    # NOTE: the trainer's concrete CPU mesh names the CPU as the platform, so the dispatch is pointed at TPU here.
    monkeypatch.setattr(tiling, "backend", lambda: "tpu")
    with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
        state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
        text = export.export(step, platforms=("tpu",))(state, batch).mlir_module()
    assert _custom_calls(text) == []
    assert _mosaic_calls(text) == kernels
    assert "stablehlo.dot_general" in text


def test_pallas_attention_on_tpu_is_jax_tpu_flash_attention():
    # attention_impl='pallas' on TPU: jax's Mosaic flash attention (forward; dkv and dq kernels in the gradient).
    # Lowering only here; its numbers are checked in the TPU interpreter (tests/test_nn.py).
    model, images, params = _bf16_vit(32, 8, width=64, depth=1, num_heads=2, pool="gap", attention_impl="pallas")
    loss = lambda p, x: jnp.sum(model.apply(p, x).astype(jnp.float32))
    with jax.sharding.use_abstract_mesh(TPU):
        forward = _tpu_module(model.apply, params, images)
        grad = _tpu_module(jax.grad(loss), params, images)
    assert _mosaic_calls(forward) == 1
    kernels = re.findall(r'kernel_name = "(\w+)"', grad)
    assert sorted(kernels) == ["_flash_attention_dkv_kernel", "_flash_attention_dq_kernel", "_flash_attention_kernel"]
    # on a data-4 TPU mesh each kernel takes its shard's 2 of 8 images ([2, heads, 128-token block, 32])
    device = jax.sharding.AbstractDevice(device_kind="TPU v5 lite", num_cores=1, platform="tpu")
    mesh = jax.sharding.AbstractMesh((4, 2), ("data", "tensor"), abstract_device=device)
    model, images, params = _bf16_vit(32, 8, batch=8, width=64, depth=1, num_heads=2, pool="gap",
                                      attention_impl="pallas")
    images = jax.ShapeDtypeStruct(images.shape, images.dtype, sharding=jax.NamedSharding(mesh, jax.P("data")))
    with jax.sharding.use_abstract_mesh(mesh):
        grad = _tpu_module(jax.grad(loss), params, images)
    operands = re.findall(r"custom_call @tpu_custom_call\(.*?: \((tensor<[^,]*>)", grad)
    assert operands == ["tensor<2x2x128x32xbf16>"] * 3


def test_mosaic_rejects_the_triton_kernels(monkeypatch):
    # The reason for the dispatch above: with the refusal bypassed, both kernels fail in Mosaic's block-shape
    # check. If a jax release lowers them, this fails, and TPU dispatch is worth revisiting (docs/kernels.md).
    monkeypatch.setattr(tiling, "resolve_interpret", lambda interpret, kernel: False)
    v = jax.ShapeDtypeStruct((16, 64, 128), jnp.float32)
    t = jax.ShapeDtypeStruct((16, 16, 128), jnp.float32)
    metric = jax.ShapeDtypeStruct((8, 197, 64), jnp.float32)
    with jax.sharding.use_abstract_mesh(TPU):
        with pytest.raises(ValueError, match="Pallas TPU lowering currently requires.*_fwd_kernel"):
            ones = lambda x: jnp.ones(x.shape[:2], jnp.float32)
            _tpu_module(lambda v, t: li.pallas(v, t, ones(v), ones(t)), v, t)
        with pytest.raises(ValueError, match="Pallas TPU lowering currently requires.*_best_kernel"):
            _tpu_module(lambda m: tm.match_pallas(m), metric)
