"""SceneSpec: the sampled ground truth of one 2D scene, before rendering (WORLD.md 3.1).

Arrays are padded to ``O = objects.max`` slots; padding is -1 (ints), 0.0 (floats) and
False (``valid``). Positions are resolution-free: normalized (x, y) in [0, 1]^2, y down.
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class SceneSpec:
    """Ground truth of one scene; every array has leading dim O (slots)."""

    shape: np.ndarray      # int32 [O]  id into concepts.SHAPES
    color: np.ndarray      # int32 [O]  id into concepts.COLORS
    size: np.ndarray       # int32 [O]  id into concepts.SIZES
    texture: np.ndarray    # int32 [O]  id into concepts.TEXTURES
    cell: np.ndarray       # int32 [O]  row-major cell on the layout grid (G x G)
    z: np.ndarray          # int32 [O]  paint order (higher is on top)
    scale: np.ndarray      # float32 [O] circumradius as a fraction of the image side
    angle: np.ndarray      # float32 [O] rotation in radians (0 unless objects.rotation)
    center: np.ndarray     # float32 [O, 2] (x, y) in [0, 1]
    mark: np.ndarray       # int32 [O, 2] (kind, value); (0, 0) = no mark
    rgb: np.ndarray        # float32 [O, 3] jittered fill color in [0, 1]
    valid: np.ndarray      # bool [O]
    background: int = 0    # background kind id: 0 gray, 1 color, 2 gradient (natural domain)
    background_rgb: tuple = (0.5, 0.5, 0.5)  # (r, g, b) in [0, 1]; gradient: (top rgb, bottom rgb)
    style: int = 0         # id into concepts.STYLES
    grid: int = 3          # layout grid size G
    horizon: float = 0.5   # gradient background: y of the sky/ground transition
    noise_seed: int = 0    # seeds pixel noise of noisy styles (drawn on the scene's style stream)
    domain: str = "natural"  # NOTE: renderer switch; medical / aerial / surgical slot in here
    domain_params: tuple = ()  # background-layer parameters of a non-natural domain (domains.py); () for natural

    @property
    def num_objects(self) -> int:
        """Number of real (valid) objects."""
        return int(self.valid.sum())

    def replace(self, **changes) -> "SceneSpec":
        """Returns a copy with fields replaced (used for contrast / counterfactual edits)."""
        return dataclasses.replace(self, **changes)
