"""The Shapes-64 world: constants of ``shared/specs/shapes64.md``, scene sampling and captions."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

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
    "sample_scene",
]

SIZE = 64
BACKGROUNDS = {
    "white": (255, 255, 255),
    "cream": (245, 240, 225),
    "light gray": (225, 225, 225),
    "pale blue": (220, 232, 245),
}
COLORS = {
    "red": (215, 48, 39),
    "orange": (244, 140, 30),
    "yellow": (240, 205, 40),
    "green": (50, 160, 70),
    "blue": (40, 90, 200),
    "purple": (130, 60, 170),
}
SHAPES = [
    "circle",
    "square",
    "diamond",
    "triangle",
    "star",
    "cross",
    "pentagon",
    "hexagon",
    "octagon",
]
SHAPE_WORD = {s: ("polygon" if s in ("pentagon", "hexagon", "octagon") else s) for s in SHAPES}
BOUND = 1.15  # bounding-circle radius factor
GRID_POS = [
    ["in the top left corner", "at the top", "in the top right corner"],
    ["on the left", "in the center", "on the right"],
    ["in the bottom left corner", "at the bottom", "in the bottom right corner"],
]


@dataclass
class Obj:
    """One object: class, fill and outline color names, size r and center (cx, cy) in pixels."""

    shape: str
    color: str
    outline: str | None
    r: float
    cx: float
    cy: float

    @property
    def word(self) -> str:
        return SHAPE_WORD[self.shape]


@dataclass
class Scene:
    """A scene and its ground truth (the caption is drawn separately, see :func:`caption`)."""

    background: str
    objects: list[Obj]
    relation: str | None = None
    caption: str = ""
    aesthetic: float | None = None
    extra: dict = field(default_factory=dict)

    def record(self) -> dict:
        d = asdict(self)
        for o, od in zip(self.objects, d["objects"], strict=True):
            od["word"] = o.word
        return d


def size_word(r: float) -> str | None:
    return "small" if r < 9.5 else "large" if r > 12.5 else None


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def relation(a: Obj, b: Obj) -> str:
    """Relation of A (first named) to B, from Δ = center(B) − center(A)."""
    dx, dy = b.cx - a.cx, b.cy - a.cy
    if abs(dx) >= abs(dy):
        return "to the left of" if a.cx < b.cx else "to the right of"
    return "above" if a.cy < b.cy else "below"


def position_phrase(cx: float, cy: float) -> str:
    col = 0 if cx < SIZE / 3 else (1 if cx < 2 * SIZE / 3 else 2)
    row = 0 if cy < SIZE / 3 else (1 if cy < 2 * SIZE / 3 else 2)
    return GRID_POS[row][col]


def aesthetic_score(obj: Obj) -> float:
    """1 + 9·(0.5·s + 0.5·c), s = clip((r − 7)/8), c = clip(1 − d/24), d to (32, 32)."""
    s = min(max((obj.r - 7) / 8, 0.0), 1.0)
    d = math.hypot(obj.cx - 32, obj.cy - 32)
    c = min(max(1 - d / 24, 0.0), 1.0)
    return 1 + 9 * (0.5 * s + 0.5 * c)


def _center(rng: np.random.Generator, r: float) -> tuple[float, float]:
    lo, hi = 1 + BOUND * r, SIZE - 1 - BOUND * r
    return float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))


def _outline(rng: np.random.Generator, fill: str) -> str | None:
    if rng.random() >= 0.25:
        return None
    others = [c for c in COLORS if c != fill]
    return others[int(rng.integers(len(others)))]


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """Draw a caption for ``scene`` following the spec's grammar and probabilities."""
    if len(scene.objects) == 2:
        a, b = scene.objects
        return (
            f"{article(a.color)} {a.color} {a.word} {scene.relation} "
            f"{article(b.color)} {b.color} {b.word}"
        )
    (o,) = scene.objects
    words = []
    sw = size_word(o.r)
    if sw and rng.random() < 0.5:
        words.append(sw)
    if rng.random() < 0.9:
        words.append(o.color)
    words.append(o.word)
    text = f"{article(words[0])} {' '.join(words)}"
    if rng.random() < 0.5:
        text += " " + position_phrase(o.cx, o.cy)
    return text


def sample_scene(seed: int, n_objects: int | None = None, shape: str | None = None) -> Scene:
    """The scene of ``seed``: background, objects, relation, caption and aesthetic score.

    ``n_objects`` and ``shape`` force a one/two-object scene or the (first) object's class, for
    building evaluation sets; left ``None`` they follow the spec's probabilities.
    """
    rng = np.random.default_rng(seed)
    bg = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    two = (rng.random() >= 0.6) if n_objects is None else n_objects == 2
    names = list(COLORS)
    if not two:
        sh = shape or SHAPES[int(rng.integers(len(SHAPES)))]
        color = names[int(rng.integers(len(names)))]
        r = float(rng.uniform(7, 15))
        cx, cy = _center(rng, r)
        obj = Obj(sh, color, _outline(rng, color), r, cx, cy)
        scene = Scene(bg, [obj], None, aesthetic=aesthetic_score(obj))
    else:
        shapes = [
            shape or SHAPES[int(rng.integers(len(SHAPES)))],
            SHAPES[int(rng.integers(len(SHAPES)))],
        ]
        ca, cb = rng.choice(len(names), size=2, replace=False)
        colors = [names[int(ca)], names[int(cb)]]
        rs = [float(rng.uniform(7, 11)), float(rng.uniform(7, 11))]
        while True:
            (ax, ay), (bx, by) = _center(rng, rs[0]), _center(rng, rs[1])
            dx, dy = bx - ax, by - ay
            dom, other = (abs(dx), abs(dy)) if abs(dx) >= abs(dy) else (abs(dy), abs(dx))
            if (
                math.hypot(dx, dy) >= BOUND * (rs[0] + rs[1]) + 3
                and dom >= 14
                and dom >= 1.5 * other
            ):
                break
        objs = [
            Obj(shapes[k], colors[k], _outline(rng, colors[k]), rs[k], *c)
            for k, c in enumerate(((ax, ay), (bx, by)))
        ]
        scene = Scene(bg, objs, relation(objs[0], objs[1]))
    scene.caption = caption(scene, rng)
    return scene
