"""SigLIP: sigmoid-loss two-tower pre-training on the synthetic world (ring-sharded loss).

  vljax train --config configs/siglip.py:tiny --workdir runs/siglip_tiny
Presets: CLIP's sizes (tiny, small, base, large) and tiny_resnet (CLIP's modified ResNet image tower, as in the CPU
demo, with caption attribute dropout at p 0.6 where the demo has 0.75), each with the sigmoid loss.
"""
import ml_collections

from vljax import presets

PRESETS = presets.SIZES + ("tiny_resnet",)


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    c = presets.sibling_config(__file__, "clip.py").get_config(arg)
    c.method = "siglip"
    c.model.temperature_init = 2.3026  # log(10)
    c.model.bias_init = -10.0
    c.loss_impl = "ring"  # or "gather" (all-gather texts: memory grows with the device count)
    if arg == "tiny_resnet":
        # NOTE: CLIP's demo drops size / color words from captions at p 0.75; with the sigmoid loss 0.75 trades
        # color for shape (seed 0, 800 steps, 2000 scenes: p 0 / 0.6 / 0.75 give shape 0.580 / 0.742 / 0.827, color
        # 0.997 / 1.000 / 0.351). At 0.6, seeds 0 / 1 / 2 give shape 0.742 / 0.843 / 0.550 against 0.580 / 0.577 /
        # 0.408 at p 0, color 0.989 against 0.988 on average, for 0.09 of R@1 (docs/clip_shape_study.md).
        # Its zero-shot evals are the CLIP demo preset's (2000 scenes).
        c.data.attribute_drop.p = 0.6
    return c


def get_sweep(arg: str = "tiny"):
    """CLIP's named sweeps (same grid, so the two methods' scaling exponents can be compared)."""
    return presets.sibling_config(__file__, "clip.py").get_sweep(arg)
