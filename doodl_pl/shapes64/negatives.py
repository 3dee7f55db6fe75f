"""Hard-negative captions of two-object scenes: the true caption changed in exactly one way.

The NegCLIP recipe (Yuksekgonul et al. 2023): a contrastive text guide learns what its negatives
force it to tell apart. Four kinds, for a scene captioned "a red square above a blue star":

=========  ====================================  ==========================================
kind       what changes                          example
=========  ====================================  ==========================================
colors     the two objects' colors exchange      a blue square above a red star
shapes     the two objects' shape words exchange a red star above a blue square
relation   the relation is reversed              a red square below a blue star
objects    the two objects exchange places       a blue star above a red square
=========  ====================================  ==========================================

A kind is left out when it would give back the true caption (e.g. two squares for ``shapes``)
or an earlier kind's caption (two "polygon"s: swapping colors = swapping objects).
"""

from __future__ import annotations

from dataclasses import replace

from .world import SHAPE_WORD, Obj, Scene, article

__all__ = ["KINDS", "OPPOSITE", "describe", "hard_negatives"]

KINDS = ("colors", "shapes", "relation", "objects")
OPPOSITE = {
    "to the left of": "to the right of",
    "to the right of": "to the left of",
    "above": "below",
    "below": "above",
}


def describe(a: Obj, relation: str, b: Obj) -> str:
    """The two-object caption of the world's grammar: ``{a} {relation} {b}``."""
    return (
        f"{article(a.color)} {a.color} {SHAPE_WORD[a.shape]} {relation} "
        f"{article(b.color)} {b.color} {SHAPE_WORD[b.shape]}"
    )


def hard_negatives(scene: Scene) -> dict[str, str]:
    """``kind → caption`` for each kind of :data:`KINDS` that differs from the true caption;
    empty for a one-object scene."""
    if len(scene.objects) != 2 or scene.relation is None:
        return {}
    a, b = scene.objects
    rel = scene.relation
    true = describe(a, rel, b)
    out = {
        "colors": describe(replace(a, color=b.color), rel, replace(b, color=a.color)),
        "shapes": describe(replace(a, shape=b.shape), rel, replace(b, shape=a.shape)),
        "relation": describe(a, OPPOSITE[rel], b),
        "objects": describe(b, rel, a),
    }
    seen = {true}
    kept = {}
    for k, v in out.items():  # a kind that repeats the truth or an earlier kind is left out
        if v not in seen:
            kept[k] = v
            seen.add(v)
    return kept
