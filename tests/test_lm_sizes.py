"""Named LM sizes (vljax/models/lm_sizes.py): abstract param counts == closed form == published counts, config
resolution by name, and FSDP placement of the 7B params on a mocked 8-device mesh (abstract shapes only)."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import AbstractMesh, NamedSharding

from vljax.methods import lvlm_ntp, text_lm
from vljax.models.causal_lm import CausalLM
from vljax.models.lm_sizes import LM_SIZES, REFERENCE_VOCAB, lm_param_count, resolve_lm
from vljax.sharding import DEFAULT_RULES, MESH_AXES

# NOTE: published totals: Llama-2-7B (HF model card / safetensors index, untied), Llama-3-8B, Llama-3.2-1B (tied).
PUBLISHED = {"llama-7b": 6_738_415_616, "llama3-8b": 8_030_261_248, "llama-1b": 1_235_814_400}


def _abstract_params(name: str):
    """-> boxed abstract params (ShapeDtypeStruct leaves inside nn.LogicallyPartitioned) of the named size."""
    model = CausalLM(**dict(resolve_lm(name), vocab_size=REFERENCE_VOCAB[name]))
    return jax.eval_shape(lambda r: model.init(r, jnp.zeros((1, 8), jnp.int32))["params"], jax.random.key(0))


def _count(tree) -> int:
    return sum(math.prod(x.shape) for x in jax.tree.leaves(nn.meta.unbox(tree)))


@pytest.mark.parametrize("name", sorted(LM_SIZES))
def test_param_count_matches_closed_form_and_published(name):
    n = _count(_abstract_params(name))
    assert n == lm_param_count(LM_SIZES[name], REFERENCE_VOCAB[name])
    if name in PUBLISHED:
        assert n == PUBLISHED[name]


def test_closed_form_by_hand_for_llama2_7b():
    """Llama-2-7B written out: 2 * V * D embeddings + D + 32 * (4 D^2 + 3 D M + 2 D)."""
    v, d, m = 32000, 4096, 11008
    assert lm_param_count(LM_SIZES["llama-7b"], v) == 2 * v * d + d + 32 * (4 * d * d + 3 * d * m + 2 * d)


def test_resolve_by_name_dict_and_overrides():
    assert resolve_lm("llama-7b") == LM_SIZES["llama-7b"]
    over = resolve_lm(ml_collections.ConfigDict(dict(size="small", remat="full", depth=3)))
    assert over == {**LM_SIZES["small"], "remat": "full", "depth": 3}
    plain = dict(width=8, depth=1, num_heads=2, mlp_dim=16)
    assert resolve_lm(plain) == plain
    with pytest.raises(ValueError, match="config.model.lm size 'llama-70b'"):
        resolve_lm("llama-70b")
    # NOTE: resolving returns a copy; the table stays untouched.
    resolve_lm("tiny")["width"] = 1
    assert LM_SIZES["tiny"]["width"] == 128


def test_builders_accept_a_size_name():
    c = ml_collections.ConfigDict(dict(model=dict(lm="base", dtype="float32")))
    model = text_lm.build(c, vocab_size=100)
    assert (model.width, model.depth, model.num_kv_heads, model.vocab_size) == (768, 12, 4, 100)
    c = ml_collections.ConfigDict(dict(
        model=dict(lm=dict(size="tiny", depth=1), vision=None, remat="none", projector="linear", projector_pool=1,
                   patch_size=8, image_token_id=4, dtype="float32"),
        data=dict(world=dict(resolution=32))))
    lvlm = lvlm_ntp.build(c, vocab_size=50)
    assert lvlm.lm == {**LM_SIZES["tiny"], "depth": 1, "vocab_size": 50}


def _per_device_bytes(boxed, mesh_shape: dict[str, int]) -> int:
    """Boxed abstract params + logical rules on an AbstractMesh -> bytes of one device's shards (float32)."""
    mesh = AbstractMesh(tuple(mesh_shape[a] for a in MESH_AXES), MESH_AXES)
    specs = nn.get_partition_spec(boxed)
    total = 0
    for x, spec in zip(jax.tree.leaves(nn.meta.unbox(boxed)), jax.tree.leaves(specs,
                                                                               is_leaf=lambda s: isinstance(s, jax.P))):
        pspec = nn.logical_to_mesh_axes(tuple(spec), DEFAULT_RULES)
        shard = NamedSharding(mesh, pspec).shard_shape(x.shape)
        total += math.prod(shard) * np.dtype(x.dtype).itemsize
    return total


@pytest.mark.parametrize("name", ["llama-7b", "llama3-8b"])
def test_7b_params_shard_evenly_over_fsdp(name):
    """fsdp 8 -> each device holds total / 8 (within 1%); 2x2x2 data/fsdp/tensor -> total / 4 (data replicates)."""
    boxed = _abstract_params(name)
    total = _count(boxed) * 4
    fsdp8 = _per_device_bytes(boxed, dict(data=1, fsdp=8, tensor=1))
    assert abs(fsdp8 / (total / 8) - 1) < 0.01, (fsdp8, total / 8)
    cube = _per_device_bytes(boxed, dict(data=2, fsdp=2, tensor=2))
    assert abs(cube / (total / 4) - 1) < 0.01, (cube, total / 4)
