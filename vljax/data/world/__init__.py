"""The synthetic multimodal world (WORLD.md): deterministic scenes with full ground truth."""
from vljax.data.world.config import PRESETS, WORLD_VERSION, get_config, validate
from vljax.data.world.scene_spec import SceneSpec
from vljax.data.world.source import WorldSource
from vljax.data.world.world import LABEL_TASKS, World

__all__ = ["PRESETS", "WORLD_VERSION", "get_config", "validate", "SceneSpec", "WorldSource",
           "LABEL_TASKS", "World"]
