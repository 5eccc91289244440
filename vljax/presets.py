"""Shared config building blocks for configs/<method>.py: trainer, data, mesh and model-size presets."""
from __future__ import annotations

import ml_collections

from vljax.sharding import DEFAULT_RULES

SIZES = ("tiny", "small", "base", "large")

# Two-tower sizes: image tower (ViT variant name or explicit dims) + text tower.
# tiny/small are for CPUs and the synthetic world; base/large follow CLIP ViT-B/16, ViT-L/14.
TWO_TOWER = {
    "tiny": dict(image=dict(width=96, depth=3, num_heads=3, mlp_dim=256, patch_size=(8, 8), pool="gap"),
                 text=dict(width=96, depth=2, num_heads=3, mlp_dim=256), embed_dim=64),
    "small": dict(image=dict(variant="S/16", pool="gap"),
                  text=dict(width=384, depth=6, num_heads=6, mlp_dim=1536), embed_dim=384),
    "base": dict(image=dict(variant="B/16", pool="cls"),
                 text=dict(width=512, depth=12, num_heads=8, mlp_dim=2048), embed_dim=512),
    "large": dict(image=dict(variant="L/14", pool="cls"),
                  text=dict(width=768, depth=12, num_heads=12, mlp_dim=3072), embed_dim=768),
}


def base_config() -> ml_collections.ConfigDict:
    """Trainer / data / mesh / checkpoint defaults every method config starts from."""
    from vljax.data.world.config import get_config as world_config

    c = ml_collections.ConfigDict()
    c.method = ""
    c.seed = 0
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    c.sharding = ml_collections.ConfigDict()
    c.sharding.rules = [[name, list(axes) if isinstance(axes, tuple) else axes] for name, axes in DEFAULT_RULES]
    c.data = ml_collections.ConfigDict()
    c.data.source = "world"
    c.data.world = world_config("image64")
    c.data.split = "train"
    c.data.max_len = 32
    c.data.shuffle_seed = 0
    c.data.num_threads = 2
    c.data.prefetch = 4
    # NOTE: caption augmentation: each size / color (/ texture) word of a training caption is dropped with
    # probability p (vljax.data.transforms.DropAttributeWords; docs/clip_shape_study.md). 0 = off.
    c.data.attribute_drop = ml_collections.ConfigDict(dict(p=0.0, attributes=("size", "color")))
    c.tokenizer = ml_collections.ConfigDict(dict(kind="world", path=""))
    # Pretrained towers: '<format>:<path>' with format hf | open_clip | big_vision | vljax (docs/pretrained.md).
    c.init = ml_collections.ConfigDict(dict(image="", text="", model=""))
    c.train = ml_collections.ConfigDict()
    c.train.steps = 1000
    c.train.batch_size = 128
    c.train.grad_accum_steps = 1
    c.train.log_every = 25
    c.train.peak_flops_per_device = 0.0  # 0 = look up jax.Device.device_kind in vljax.train.flops
    c.optim = ml_collections.ConfigDict()
    c.optim.name = "adamw"
    c.optim.lr = 1e-3
    c.optim.b1 = 0.9
    c.optim.b2 = 0.98
    c.optim.eps = 1e-6
    c.optim.weight_decay = 0.1
    c.optim.schedule = "cosine"
    c.optim.warmup_steps = 100
    c.optim.end_lr_factor = 0.0
    c.optim.grad_clip_norm = 1.0
    c.optim.freeze = ()
    # NOTE: 0 = config.train.steps (a separate key, not a reference: overriding one never moves the other).
    c.optim.total_steps = 0
    c.checkpoint = ml_collections.ConfigDict(dict(every=500, keep=3, async_save=True))
    c.eval_every = 0
    c.eval_batch_size = 256
    c.evals = ml_collections.ConfigDict()
    return c


def two_tower_model(size: str) -> ml_collections.ConfigDict:
    """Two-tower model section for a size preset."""
    if size not in TWO_TOWER:
        raise ValueError(f"unknown size {size!r}; valid: {', '.join(TWO_TOWER)}")
    m = ml_collections.ConfigDict(TWO_TOWER[size])
    m.text.pool = "last"
    # NOTE: None = off; a dict {r, schedule, mode, prop_attn, impl} runs ToMe in the ViT's blocks (docs/kernels.md),
    # e.g. --config.model.image.token_merging="{'r': 6, 'schedule': 'decreasing'}".
    m.image.token_merging = None
    # NOTE: False = bidirectional text attention; True = a causal text transformer as in OpenAI CLIP and FILIP's card.
    m.text.causal = False
    m.dtype = "float32"
    m.remat = "none"
    # 'auto' = cuDNN flash attention for unmasked 16-bit attention on GPU, XLA otherwise (vljax/nn/attention.py)
    m.attention_impl = "auto"
    # 'none' = images as the methods feed them ([-1, 1]); 'clip' = OpenAI CLIP's mean / std, for its released towers
    m.pixel_norm = "none"
    return m


def sibling_config(config_file: str, name: str):
    """A config module next to `config_file` (e.g. configs/clip.py for configs/siglip.py), loaded by path.

    Config files are not a package, so presets built on another method's presets load it this way.
    """
    import importlib.util
    from pathlib import Path

    path = Path(config_file).with_name(name)
    spec = importlib.util.spec_from_file_location(f"vljax_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
