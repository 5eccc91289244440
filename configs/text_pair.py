"""Text-tower pre-training on caption pairs (vljax/methods/text_pair.py), the language stage of the demo.

  vljax train --config configs/text_pair.py:tiny --workdir runs/text_pair_tiny
  vljax train --config configs/clip.py:tiny --workdir runs/clip_locked \
      --config.init.text=checkpoint:runs/text_pair_tiny --config.optim.freeze='("^txt_",)'
Model dims are the CLIP preset's (same arg), so the text tower and projection chain into CLIP.
"""
import ml_collections

from vljax import presets

PRESETS = presets.SIZES


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    c = presets.sibling_config(__file__, "clip.py").get_config(arg)
    c.method = "text_pair"
    # NOTE: the same scene described twice; only the position words differ, so the shared content words
    # (count, size, color, shape) are what tells a caption's partner from the batch's other captions.
    c.data.pair = ("captions/short", "captions/positional")
    # NOTE: the image tower is built (so checkpoints chain) but unused: no optimizer state, no decay.
    c.optim.freeze = ("^img_",)
    c.evals = ml_collections.ConfigDict()
    if arg == "tiny":
        c.train.steps = 300
        c.optim.warmup_steps = 30
        c.checkpoint.every = 300
    return c
