"""Concept inventories of the synthetic world in canonical order (WORLD.md 2.1).

A config integer ``n`` for an inventory means "the first n" of these tuples, so ids
are stable across configs. NOTE: the order is part of the data format; append only.
"""
from __future__ import annotations

SHAPES = ("circle", "square", "triangle", "star", "diamond", "cross", "hexagon", "heart",
          "ellipse", "rectangle", "pentagon", "ring", "sun")
COLORS = ("red", "blue", "green", "yellow", "purple", "orange", "cyan", "pink", "white", "brown")
# RGB in 0..255 per color id (same order as COLORS).
COLOR_RGB = ((220, 40, 40), (40, 80, 220), (40, 170, 60), (235, 215, 40), (140, 60, 180),
             (245, 140, 30), (40, 210, 220), (245, 150, 190), (245, 245, 245), (130, 80, 40))
BACKGROUND_GRAY = (128, 128, 128)
SIZES = ("tiny", "small", "medium", "large")
# Circumradius as a fraction of the image side (before the +-10% jitter).
SIZE_SCALE = (0.03, 0.08, 0.12, 0.17)
TEXTURES = ("solid", "striped", "dotted", "checkered", "ringed", "noisy", "outlined")
MARK_KINDS = ("none", "dot", "digit", "dots")
POSITIONS = ("top left", "top", "top right", "left", "center", "right",
             "bottom left", "bottom", "bottom right")
RELATIONS = ("left_of", "right_of", "above", "below", "near", "overlaps", "in_front_of",
             "bigger_than", "smaller_than", "same_color", "same_shape")
STYLES = ("clean", "noisy_bg", "texture_noise", "inverted", "outlined")
SHAPE_FAMILIES = {
    "round": ("circle", "ellipse", "ring"),
    "boxy": ("square", "rectangle"),
    "angular": ("triangle", "diamond", "pentagon", "hexagon"),
    "spiky": ("star", "cross", "sun"),
    "heart": ("heart",),
}
SHAPES_3D = ("cube", "sphere", "cylinder", "cone", "torus", "pyramid", "capsule", "prism", "plane", "l_shape")
ROOM_OBJECTS = ("table", "chair", "lamp", "cup", "box", "shelf", "bed", "plant")
# Toy languages: "en" plus synthetic ones with their own lexicons and word orders (WORLD.md 3.8).
LANGUAGES = ("en", "xa", "xb", "xc", "xd", "xe")
