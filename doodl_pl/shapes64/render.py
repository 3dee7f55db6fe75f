"""Rasterise a Shapes-64 scene with coverage anti-aliasing (4× supersampling, box filter)."""

from __future__ import annotations

import math

import numpy as np

from .world import BACKGROUNDS, COLORS, SIZE, Obj, Scene, sample_scene

__all__ = ["OUTLINE_WIDTH", "SUPERSAMPLE", "render", "render_seed", "shape_polygon", "shape_area"]

SUPERSAMPLE = 4
OUTLINE_WIDTH = 2.0
_SUB = (np.arange(SIZE * SUPERSAMPLE) + 0.5) / SUPERSAMPLE
_YS, _XS = np.meshgrid(_SUB, _SUB, indexing="ij")


def _ngon(n: int, radius: float, first_deg: float) -> np.ndarray:
    ang = np.deg2rad(first_deg + 360.0 * np.arange(n) / n)
    # clockwise from straight up (−y): x = sin, y = −cos
    return np.stack([radius * np.sin(ang), -radius * np.cos(ang)], axis=1)


def shape_polygon(shape: str, r: float) -> np.ndarray | None:
    """Vertices relative to the center (``None`` for the circle)."""
    if shape == "circle":
        return None
    if shape == "square":
        return _ngon(4, 1.1 * r, 45)
    if shape == "diamond":
        return _ngon(4, 1.1 * r, 0)
    if shape == "triangle":
        return _ngon(3, 1.15 * r, 0)
    if shape == "star":
        outer, inner = _ngon(5, 1.1 * r, 0), _ngon(5, 0.45 * r, 36)
        return np.stack([outer, inner], axis=1).reshape(10, 2)
    if shape == "cross":
        w, length = 0.33 * r, 0.95 * r
        return np.array(
            [
                (-w, -length),
                (w, -length),
                (w, -w),
                (length, -w),
                (length, w),
                (w, w),
                (w, length),
                (-w, length),
                (-w, w),
                (-length, w),
                (-length, -w),
                (-w, -w),
            ]
        )
    n, first = {"pentagon": (5, 0), "hexagon": (6, 0), "octagon": (8, 22.5)}[shape]
    return _ngon(n, r, first)


def shape_area(shape: str, r: float) -> float:
    """Analytic area (shoelace for polygons)."""
    poly = shape_polygon(shape, r)
    if poly is None:
        return math.pi * (0.9 * r) ** 2
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _window(obj: Obj) -> tuple[slice, slice]:
    """Subsample rows/columns that can meet the object's bounding circle."""
    s, reach = SUPERSAMPLE, 1.2 * obj.r + 1
    lo_y, hi_y = max(0, int((obj.cy - reach) * s)), min(SIZE * s, int((obj.cy + reach) * s) + 1)
    lo_x, hi_x = max(0, int((obj.cx - reach) * s)), min(SIZE * s, int((obj.cx + reach) * s) + 1)
    return slice(lo_y, hi_y), slice(lo_x, hi_x)


def _inside_and_depth(obj: Obj, win: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
    """Subsample mask of the shape and each inside subsample's distance to the boundary."""
    px, py = _XS[win] - obj.cx, _YS[win] - obj.cy
    poly = shape_polygon(obj.shape, obj.r)
    if poly is None:
        rad = 0.9 * obj.r
        dist = np.hypot(px, py)
        return dist <= rad, rad - dist
    inside = np.zeros(px.shape, dtype=bool)
    depth = np.full(px.shape, np.inf)
    n = len(poly)
    for k in range(n):
        (x1, y1), (x2, y2) = poly[k], poly[(k + 1) % n]
        crosses = ((y1 > py) != (y2 > py)) & (px < (x2 - x1) * (py - y1) / (y2 - y1 + 1e-300) + x1)
        inside ^= crosses
        ex, ey = x2 - x1, y2 - y1
        t = np.clip(((px - x1) * ex + (py - y1) * ey) / (ex * ex + ey * ey), 0, 1)
        depth = np.minimum(depth, np.hypot(px - (x1 + t * ex), py - (y1 + t * ey)))
    return inside, depth


def render(scene: Scene) -> np.ndarray:
    """``(64, 64, 3)`` uint8 image of ``scene``."""
    canvas = np.empty((SIZE * SUPERSAMPLE, SIZE * SUPERSAMPLE, 3))
    canvas[:] = BACKGROUNDS[scene.background]
    for obj in scene.objects:
        win = _window(obj)
        inside, depth = _inside_and_depth(obj, win)
        view = canvas[win]
        view[inside] = COLORS[obj.color]
        if obj.outline is not None:
            view[inside & (depth <= OUTLINE_WIDTH)] = COLORS[obj.outline]
    s = SUPERSAMPLE
    small = canvas.reshape(SIZE, s, SIZE, s, 3).mean(axis=(1, 3))
    return np.clip(np.rint(small), 0, 255).astype(np.uint8)


def render_seed(seed: int, **kw) -> tuple[np.ndarray, Scene]:
    """Image and ground truth of ``seed`` (see :func:`sample_scene` for ``kw``)."""
    scene = sample_scene(seed, **kw)
    return render(scene), scene
