"""Shapes-64: a small synthetic world with exact ground truth, and the models trained on it."""

from .render import render, render_seed, shape_area, shape_polygon
from .world import (
    BACKGROUNDS,
    COLORS,
    SHAPE_WORD,
    SHAPES,
    Obj,
    Scene,
    aesthetic_score,
    caption,
    relation,
    sample_scene,
)

__all__ = [
    "BACKGROUNDS",
    "COLORS",
    "SHAPES",
    "SHAPE_WORD",
    "Obj",
    "Scene",
    "aesthetic_score",
    "caption",
    "relation",
    "render",
    "render_seed",
    "sample_scene",
    "shape_area",
    "shape_polygon",
]
