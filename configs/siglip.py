"""SigLIP: sigmoid-loss two-tower pre-training on the synthetic world (ring-sharded loss).

  vljax train --config configs/siglip.py:tiny --workdir runs/siglip_tiny
"""
import ml_collections

from vljax import presets

PRESETS = presets.SIZES


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    c = presets.sibling_config(__file__, "clip.py").get_config(arg)
    c.method = "siglip"
    c.model.temperature_init = 2.3026  # log(10)
    c.model.bias_init = -10.0
    c.loss_impl = "ring"  # or "gather" (all-gather texts: memory grows with the device count)
    return c


def get_sweep(arg: str = "tiny"):
    """CLIP's named sweeps (same grid, so the two methods' scaling exponents can be compared)."""
    return presets.sibling_config(__file__, "clip.py").get_sweep(arg)
