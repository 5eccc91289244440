"""Generative LVLM (ViT + projector + Llama-style LM) trained by next-token prediction on world QA / captions.

  vljax train --config configs/lvlm_ntp.py:tiny --workdir runs/lvlm_tiny
Presets: tiny (CPU demo: color QA, full tuning), tiny_align (stage 1: projector only),
tiny_encoder_free (patches straight into the LM), small.
"""

import ml_collections

from vljax import presets

PRESETS = ("tiny", "tiny_align", "tiny_encoder_free", "small")

# NOTE: stage 1 (align) trains only the projector; stage 2 (full) trains everything.
STAGE_FREEZE = {"align": ("^language_model/", "^vision_encoder/"), "full": ()}


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    c = presets.base_config()
    c.method = "lvlm_ntp"
    c.task = "qa"  # qa | caption
    c.loss_normalize = "token"
    c.loss_vocab_chunk = 0  # NOTE: > 0 = vocabulary-chunked cross-entropy (no [B, T, V] logits); 0 = full logits.
    c.model = ml_collections.ConfigDict(
        dict(
            vision=dict(width=96, depth=2, num_heads=3, mlp_dim=256, patch_size=(8, 8), pool="gap"),
            lm=dict(width=128, depth=2, num_heads=4, num_kv_heads=2, mlp_dim=256, tie_embeddings=True),
            projector="pool_mlp",
            projector_pool=2,
            patch_size=8,
            image_token_id=4,
            dtype="float32",
            remat="none",
        )
    )
    c.data.world.qa.types = ("color",)
    c.data.world.objects.count = (1, 2)
    c.evals.generation = ml_collections.ConfigDict(
        dict(kind="generation", split="test", n=256, task="qa", max_new_tokens=4, num_beams=1, batch_size=128)
    )
    # NOTE: generative evaluators (docs/lvlm.md "Evaluators"), off by default: n=0 skips one. The CLI cannot add
    # keys, so they exist here; enable with e.g. --config.evals.pope.n=64 (n = scenes / images).
    gen = dict(split="test", n=0, num_beams=1, batch_size=128)
    c.evals.captioning = ml_collections.ConfigDict(dict(gen, kind="captioning", refs=("short",), max_new_tokens=24))
    c.evals.vqa = ml_collections.ConfigDict(dict(gen, kind="vqa", humans=10, max_new_tokens=4))
    c.evals.pope = ml_collections.ConfigDict(dict(gen, kind="pope", per_sample=4, max_new_tokens=4))
    c.evals.grounding = ml_collections.ConfigDict(
        dict(gen, kind="grounding", per_sample=4, iou_threshold=0.5, max_new_tokens=16)
    )
    if arg.startswith("tiny"):
        c.data.world.resolution = 32
        c.data.max_len = 24  # NOTE: 4 image tokens + the longest color QA (14 words) + 4 specials = 22.
        c.train.steps = 400
        c.train.batch_size = 32
        c.train.log_every = 50
        c.optim.lr = 1e-3
        c.optim.warmup_steps = 40
        c.optim.weight_decay = 0.01
        c.checkpoint.every = 1000
        if arg == "tiny_encoder_free":
            c.model.vision = None
            c.data.max_len = 40  # NOTE: 16 patch tokens enter the LM unpooled (longest QA: 34 tokens).
    else:
        c.data.world.resolution = 64
        c.data.max_len = 64
        c.model.projector = "mlp"
        c.data.world.qa.types = ("color", "shape", "count", "position", "existence", "relation")
        c.model.vision = dict(variant="S/16", pool="gap")
        c.model.lm = dict(width=512, depth=8, num_heads=8, num_kv_heads=4, mlp_dim=1376, tie_embeddings=True)
        c.train.steps = 5000
        c.train.batch_size = 256
    c.optim.freeze = STAGE_FREEZE["align" if arg == "tiny_align" else "full"]
    return c


def get_sweep(arg: str = "tiny"):
    """Named sweeps: seeds (run-to-run noise) and projector kinds."""
    del arg
    return {
        "seeds": [{"seed": s} for s in (0, 1, 2)],
        "projector": [{"model.projector": p} for p in ("linear", "mlp", "pool_mlp")],
    }
