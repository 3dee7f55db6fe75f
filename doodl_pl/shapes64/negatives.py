"""Hard-negative captions of two-object scenes: the true caption changed in exactly one way.

The NegCLIP recipe (Yuksekgonul et al. 2023): a contrastive text guide learns what its negatives
force it to tell apart. Three kinds, for a scene captioned "a red square above a blue star":

=========  ====================================  ==========================================
kind       what changes                          example
=========  ====================================  ==========================================
colors     the two objects' colors exchange      a blue square above a red star
shapes     the two objects' shape words exchange a red star above a blue square
relation   the relation is reversed              a red square below a blue star
=========  ====================================  ==========================================

Negatives are deduplicated by the scene they describe (:func:`scene_key`), not by their text:
"a blue star above a red square" (the objects exchanged) says what the reversed relation says,
so it is not a kind of its own; and a kind is left out when its scene is the true one (two red
polygons: reversing the relation changes the words, not the scene) or an earlier kind's.
"""

from __future__ import annotations

from dataclasses import replace

from .world import SHAPE_WORD, Obj, Scene, article

__all__ = [
    "KINDS",
    "OPPOSITE",
    "describe",
    "hard_negatives",
    "places_exchanged",
    "relation_matters",
    "scene_key",
]

KINDS = ("colors", "shapes", "relation")
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


def scene_key(a: Obj, relation: str, b: Obj) -> tuple:
    """What ``describe(a, relation, b)`` says, whatever its wording: each object as (color,
    shape word), and the relation turned to "to the left of" or "above" ("B below A" is "A above
    B")."""
    if relation in ("to the right of", "below"):
        a, b, relation = b, a, OPPOSITE[relation]
    return (a.color, SHAPE_WORD[a.shape]), relation, (b.color, SHAPE_WORD[b.shape])


def relation_matters(scene: Scene) -> bool:
    """A two-object scene whose reversed relation describes another scene (not two like
    objects, same color and shape word, where reversing changes the words only)."""
    if len(scene.objects) != 2 or scene.relation is None:
        return False
    a, b = scene.objects
    return scene_key(a, OPPOSITE[scene.relation], b) != scene_key(a, scene.relation, b)


def places_exchanged(scene: Scene) -> Scene:
    """The two-object ``scene`` with its objects' centres exchanged (the caption's relation
    reversed in the picture)."""
    a, b = scene.objects
    return replace(scene, objects=[replace(a, cx=b.cx, cy=b.cy), replace(b, cx=a.cx, cy=a.cy)])


def hard_negatives(scene: Scene) -> dict[str, str]:
    """``kind → caption`` for each kind of :data:`KINDS` whose scene differs from the true one
    and from every earlier kind's; empty for a one-object scene."""
    if len(scene.objects) != 2 or scene.relation is None:
        return {}
    a, b = scene.objects
    rel = scene.relation
    changed = {
        "colors": (replace(a, color=b.color), rel, replace(b, color=a.color)),
        "shapes": (replace(a, shape=b.shape), rel, replace(b, shape=a.shape)),
        "relation": (a, OPPOSITE[rel], b),
    }
    seen = {scene_key(a, rel, b)}
    kept = {}
    for kind, parts in changed.items():
        key = scene_key(*parts)
        if key not in seen:
            kept[kind] = describe(*parts)
            seen.add(key)
    return kept
