"""The Pallas kernels lower to Triton for CUDA (cross-platform export on CPU, no GPU needed).

Catches what interpret mode cannot: Triton's power-of-two shape rule, unsupported primitives, and
jax's default GPU lowering (Mosaic GPU) being picked instead of Triton. Compiling the Triton IR to
PTX (shared memory, registers) still needs a GPU: benchmarks/kernel_check.py on the device.
"""

import jax
import jax.numpy as jnp
import pytest
from jax import export

from vljax.kernels import late_interaction as li
from vljax.models.vit import ViT

TRITON = "__gpu$xla.gpu.triton"


@pytest.fixture
def gpu_backend(monkeypatch):
    """Makes the kernels pick their GPU tiling and Triton parameters while tracing on CPU."""
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")


def _cuda_module(fn, *shapes):
    """fn, ShapeDtypeStructs -> StableHLO text of fn exported for CUDA."""
    exported = export.export(
        jax.jit(fn), platforms=("cuda",), disabled_checks=[export.DisabledSafetyCheck.custom_call(TRITON)]
    )(*shapes)
    return exported.mlir_module()


@pytest.mark.parametrize("b,nv,nt,d,dtype", [(512, 196, 77, 256, jnp.bfloat16), (5, 7, 9, 12, jnp.float32)])
def test_late_interaction_forward_and_backward_lower_to_triton(gpu_backend, b, nv, nt, d, dtype):
    shapes = (
        jax.ShapeDtypeStruct((b, nv, d), dtype),
        jax.ShapeDtypeStruct((b, nt, d), dtype),
        jax.ShapeDtypeStruct((b, nv), jnp.bool_),
        jax.ShapeDtypeStruct((b, nt), jnp.bool_),
    )

    def loss(v, t, mv, mt):
        i2t, t2i = li.late_interaction(v, t, mv, mt, impl="pallas")
        return jnp.sum(i2t) + jnp.sum(t2i)

    text = _cuda_module(jax.grad(loss, argnums=(0, 1)), *shapes)
    # NOTE: one forward kernel and two backward kernels (dv, dt), all Triton, none Mosaic GPU.
    assert text.count(TRITON) == 3
    assert "mosaic_gpu" not in text


def test_token_merging_kernel_in_the_vit_lowers_to_triton(gpu_backend):
    model = ViT(width=384, depth=2, num_heads=6, mlp_dim=1536, patch_size=(16, 16), image_size=224, pool="cls",
                token_merging=dict(r=13))
    images = jax.ShapeDtypeStruct((4, 224, 224, 3), jnp.bfloat16)
    params = jax.eval_shape(model.init, jax.random.key(0), images)
    text = _cuda_module(model.apply, params, images)
    assert text.count(TRITON) == 4  # two matching kernels (best partner, rank) per block
    assert "mosaic_gpu" not in text


def test_pallas_flash_attention_in_the_vit_lowers_to_triton(gpu_backend):
    # ViT-B/16 shape (197 tokens: padded to 256 with segment ids), forward + backward of one block.
    model = ViT(width=768, depth=1, num_heads=12, mlp_dim=3072, patch_size=(16, 16), image_size=224, pool="cls",
                attention_impl="pallas", dtype=jnp.bfloat16)
    images = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.bfloat16)
    params = jax.eval_shape(model.init, jax.random.key(0), images)
    loss = lambda p, x: jnp.sum(model.apply(p, x).astype(jnp.float32))
    text = _cuda_module(jax.grad(loss), params, images)
    assert text.count(TRITON) == 3  # mha forward, backward preprocess, backward
    assert "mosaic_gpu" not in text
