"""Per-method tuning grids for the Shapes-64 benchmark.

Every method's knobs are chosen on the ``tune`` split and the winner is reported on the disjoint
``eval`` split. A grid is written ``METHOD:KEY=V1,V2,...`` (values parsed as YAML, keys dotted
under ``model.init_args``); keys of one method are crossed. The score of a grid point is the
mean of the application's headline success rates (the proportions among ``HEADLINE[app]``).
"""

from __future__ import annotations

import itertools
from typing import Any

import yaml

from .benchmark import parse_method_key, split_top

__all__ = ["HEADLINE", "Grid", "parse_grid", "grid_points", "tuning_score", "pick_best"]

HEADLINE: dict[str, list[str]] = {
    "text": ["full_match", "color", "shape", "relation", "clip_score"],
    "vocabulary": ["validity", "shape", "color", "fid"],
    "personalization": ["full_match", "entity", "shape", "outline", "relation", "clip_i"],
    "aesthetic": ["edit_success", "improved", "content_kept", "aesthetic_gain", "aesthetic"],
    "personalization_alone": ["full_match", "entity", "shape", "outline", "position", "clip_i"],
}

Grid = dict[str, dict[str, list[Any]]]


def parse_grid(values: list[str]) -> Grid:
    """``["doodl:gamma=0.9,1", ...]`` → ``{"doodl": {"gamma": [0.9, 1]}}``."""
    grid: Grid = {}
    for v in values:
        try:
            method, key, rest = parse_method_key(v, "METHOD:KEY=V1,V2,...")
        except ValueError as err:
            raise ValueError(f"tune grid {err}") from None
        options = [yaml.safe_load(x) for x in split_top(rest) if x.strip()]
        if not key or not options:
            raise ValueError(f"tune grid {v!r}: needs a key and at least one value")
        axes = grid.setdefault(method, {})
        if key in axes:
            raise ValueError(f"tune grid {v!r}: key {key!r} given twice for {method}")
        axes[key] = options
    return grid


def _label(key: str, value: Any) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return key.split(".")[-1] + text


def grid_points(method: str, axes: dict[str, list[Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Every combination of ``axes`` as ``(run name, overrides)``, in grid order."""
    keys = list(axes)
    points = []
    for combo in itertools.product(*(axes[k] for k in keys)):
        over = dict(zip(keys, combo, strict=True))
        name = "_".join([method, *(_label(k, v) for k, v in over.items())])
        points.append((name, over))
    return points


def tuning_score(app: str, result: dict) -> float:
    """Mean of ``app``'s headline success rates (Wilson-interval proportions) in ``result``."""
    vals = [
        result["metrics"][k]["value"]
        for k in HEADLINE[app]
        if k in result["metrics"] and result["metrics"][k]["method"] == "wilson"
    ]
    return sum(vals) / len(vals) if vals else float("-inf")


def pick_best(scores: dict[str, float]) -> str:
    """The highest-scoring name; the first of equals in grid order (so a default listed first
    wins ties)."""
    if not scores:
        raise ValueError("`scores` is empty: no tuning run finished")
    return max(scores, key=scores.get)
