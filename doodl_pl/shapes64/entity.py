"""Can an image guide tell the reference entity from its near misses? (issue 28 #2)

Personalization asks for *this* entity (shape, fill, outline colour) in a new scene. Each
held-out case holds a reference render of one outlined object; the same entity (same size) at a
new place on a new background, the *positive*; and four *near misses* there, each changed in
one way:

============  ==========================================
kind          what changes
============  ==========================================
outline       another outline colour
fill          another fill colour
no_outline    the outline removed
shape         another shape, the same colours
============  ==========================================

A guide scores an image against the reference (lower is more alike); it tells a kind apart in a
case when the positive scores better than that kind's near miss. Discrimination per kind is the
share of cases where it does (Wilson interval): 0.5 is chance, the target is 0.90.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from ..evaluation.stats import Estimate, proportion
from ..losses.base import ImageLoss, LossContext
from .render import render
from .world import BACKGROUNDS, BOUND, COLORS, SHAPES, SIZE, Obj, Scene, sample_scene

__all__ = [
    "KINDS", "discrimination", "entity_cases", "feature_guide", "fill_readings", "loss_guide",
    "near_misses",
]  # fmt: skip

KINDS = ("outline", "fill", "no_outline", "shape")

#: (reference images, candidate images) → per-candidate distance to its reference (lower: alike)
Guide = Callable[[np.ndarray, np.ndarray], Tensor | np.ndarray]


def near_misses(o: Obj, avoid: str, rng: np.random.Generator) -> dict[str, Scene]:
    """The entity ``o`` at a new place on a background other than ``avoid`` (``positive``), and
    there one near miss per kind of :data:`KINDS`, all drawn from ``rng``."""
    lo, hi = 1 + BOUND * o.r, SIZE - 1 - BOUND * o.r
    moved = replace(o, cx=float(rng.uniform(lo, hi)), cy=float(rng.uniform(lo, hi)))
    background = [b for b in BACKGROUNDS if b != avoid][int(rng.integers(len(BACKGROUNDS) - 1))]
    free = [c for c in COLORS if c not in (o.color, o.outline)]
    change = {
        "outline": replace(moved, outline=free[int(rng.integers(len(free)))]),
        "fill": replace(moved, color=free[int(rng.integers(len(free)))]),
        "no_outline": replace(moved, outline=None),
        "shape": replace(moved, shape=[s for s in SHAPES if s != o.shape][int(rng.integers(8))]),
    }
    out = {"positive": Scene(background, [moved])}
    out.update({k: Scene(background, [obj]) for k, obj in change.items()})
    return out


def entity_cases(n: int, seed0: int) -> list[dict[str, Scene]]:
    """``n`` cases: ``reference``, ``positive`` and one scene per kind of :data:`KINDS`, all
    drawn from seeds from ``seed0`` on (each case's changes from its own generator)."""
    cases, seed = [], seed0
    for i in range(n):
        while True:  # an outlined reference, as the application asks
            ref = sample_scene(seed, n_objects=1)
            seed += 1
            if ref.objects[0].outline is not None:
                break
        rng = np.random.default_rng([seed0, i])
        cases.append({"reference": ref, **near_misses(ref.objects[0], ref.background, rng)})
    return cases


def discrimination(guide: Guide, cases: list[dict[str, Scene]]) -> dict[str, Estimate]:
    """Per kind, the share of cases where ``guide`` puts the positive closer to the reference
    than that kind's near miss (ties count as failures)."""
    refs = np.stack([render(c["reference"]) for c in cases])  # the same refs for every kind

    def distance(key: str) -> np.ndarray:
        d = guide(refs, np.stack([render(c[key]) for c in cases]))
        return np.asarray(d.detach().cpu() if isinstance(d, Tensor) else d, dtype=np.float64)

    positive = distance("positive")
    return {k: proportion(positive < distance(k)) for k in KINDS}


def _tensor(images: np.ndarray) -> Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def loss_guide(loss: ImageLoss, folder: Path, seed: int = 0) -> Guide:
    """An image loss that reads ``reference_images`` (e.g. ``CLIPImageLoss``) as a guide: each
    reference is written to ``folder`` under its content's hash (so a loss's cache of reference
    embeddings stays right); case ``i``'s cuts come from generator ``seed + i``."""

    def guide(refs: np.ndarray, images: np.ndarray) -> Tensor:
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for ref in refs:
            path = folder / f"ref_{hashlib.sha1(ref.tobytes()).hexdigest()[:16]}.png"
            if not path.exists():
                Image.fromarray(ref).save(path)
            paths.append([str(path)])
        gens = [torch.Generator().manual_seed(seed + i) for i in range(len(images))]
        with torch.no_grad():
            return loss(_tensor(images), LossContext({"reference_images": paths}, gens))

    return guide


def feature_guide(features: nn.Module) -> Guide:
    """Cosine distance between feature vectors (``features``: images in [0, 1] → (N, D))."""

    def guide(refs: np.ndarray, images: np.ndarray) -> Tensor:
        with torch.no_grad():
            a, b = features(_tensor(refs)), features(_tensor(images))
        return 1 - F.cosine_similarity(a.double(), b.double(), dim=-1)

    return guide


def fill_readings(root: str | Path) -> dict[str, Estimate]:
    """On a personalization run (its folder): how often any object wears the entity's fill, and
    how often the entity's colour is lost because two objects wear the *other* object's colour
    (the colour leak of a prompt that names only that one)."""
    from ..evaluation.run import load_run
    from .analysis import find_objects

    run = load_run(root)
    wears, leaks = [], []
    for img, row in zip(run.images, run.rows, strict=True):
        truth = row["item"]["truth"]
        k = truth["entity"]
        fill, named = truth["objects"][k]["color"], truth["objects"][1 - k]["color"]
        colors = [f.color for f in find_objects(img)]
        wears.append(fill in colors)
        leaks.append(fill not in colors and colors.count(named) >= 2)
    return {"entity_fill_drawn": proportion(wears), "both_in_the_other_colour": proportion(leaks)}
