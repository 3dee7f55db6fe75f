"""Ground-truth checks on Shapes-64 outputs: objects, colors, shapes, outlines, relation, aesthetic.

An item states what its image must show under ``truth`` (an extra field of the items file)::

    {"objects": [{"color": "red", "word": "star"}, {"color": "blue", "shape": "hexagon",
                  "outline": "orange"}], "relation": "to the left of"}

Only the keys present are checked: ``shape`` is the exact class, ``word`` the caption word
("polygon" accepts any of the three hidden classes). With ``"edit": true`` the item is an edit of
its ``image`` and the checks ask whether the content was kept while the measured aesthetic rose.
``"entity": k`` (personalization) adds ``entity``: object k drawn whole (fill, exact shape,
outline), whatever the rest of the scene. ``"position"`` (one object) is the caption's grid
cell, read from the object's centroid.
Shapes are read by the evaluation classifier on each object isolated on its background; colors,
outlines, sizes and positions by :mod:`doodl_pl.shapes64.analysis`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..data.images import load_image
from ..evaluation.run import RunOutputs
from ..evaluation.validity import Validity
from .analysis import Found, find_objects, isolate, relation_of
from .render import shape_area
from .world import SHAPE_WORD, SHAPES, Obj, aesthetic_score, position_phrase

__all__ = ["Shapes64Checks", "measured_aesthetic"]

_UNIT_AREA = {s: shape_area(s, 1.0) for s in SHAPES}


def measured_aesthetic(obj: Found, shape: str) -> float:
    """The spec's aesthetic formula on a detected object: r from its area, center from its
    centroid."""
    r = math.sqrt(obj.area / _UNIT_AREA[shape])
    return aesthetic_score(Obj(shape, obj.color, obj.outline, r, obj.cx, obj.cy))


class Shapes64Checks:
    """Per-item ground-truth checks, judged by ``classifier`` (the evaluation classifier)."""

    def __init__(self, classifier: Validity) -> None:
        self.classifier = classifier

    def shape_of(self, img: np.ndarray, obj: Found, found: list[Found]) -> str:
        x = torch.from_numpy(isolate(img, obj, found)).permute(2, 0, 1)[None].float() / 255.0
        return SHAPES[int(self.classifier.predict(x)[0])]

    def check(self, img: np.ndarray, truth: dict[str, Any], source: np.ndarray | None) -> dict:
        found = find_objects(img)
        want = truth.get("objects", [])
        out: dict[str, float] = {"found": float(len(found) == len(want))}
        matched: list[Found | None] = []
        free = list(found)
        for w in want:
            pick = next((f for f in free if f.color == w.get("color")), None)
            if pick is None and "color" not in w and free:
                pick = free[0]
            if pick is not None:
                free.remove(pick)
            matched.append(pick)
        colors = [m is not None for w, m in zip(want, matched, strict=True) if "color" in w]
        if colors:
            out["color"] = float(all(colors))
        shapes, outlines = [], []
        predicted: list[str | None] = []
        for w, m in zip(want, matched, strict=True):
            pred = self.shape_of(img, m, found) if m is not None else None
            predicted.append(pred)
            if "shape" in w:
                shapes.append(pred == w["shape"])
            elif "word" in w:
                shapes.append(pred is not None and SHAPE_WORD[pred] == w["word"])
            if "outline" in w:
                outlines.append(m is not None and m.outline == w["outline"])
        if shapes:
            out["shape"] = float(all(shapes))
        if outlines:
            out["outline"] = float(all(outlines))
        if truth.get("relation") and len(want) == 2:
            a, b = matched
            out["relation"] = float(
                a is not None and b is not None and relation_of(a, b) == truth["relation"]
            )
        if truth.get("position") and len(want) == 1:
            m = matched[0]
            out["position"] = float(
                m is not None and position_phrase(m.cx, m.cy) == truth["position"]
            )
        out["full_match"] = float(all(v == 1.0 for v in out.values()))
        if truth.get("entity") is not None:
            k = truth["entity"]
            w, m = want[k], matched[k]
            out["entity"] = float(
                m is not None and predicted[k] == w["shape"] and m.outline == w.get("outline")
            )
        if len(want) == 1 and found:
            top = matched[0] or found[0]
            out["aesthetic_measured"] = measured_aesthetic(top, predicted[0] or SHAPES[0])
        if truth.get("edit") and source is not None:
            out.update(self._edit(out, source, want))
        return out

    def _edit(self, out: dict[str, float], source: np.ndarray, want: list[dict]) -> dict:
        src = find_objects(source)
        if not src or "aesthetic_measured" not in out:
            return {"content_kept": 0.0, "improved": 0.0, "edit_success": 0.0}
        before = measured_aesthetic(src[0], self.shape_of(source, src[0], src))
        kept = float(all(out.get(k, 1.0) == 1.0 for k in ("found", "color", "shape", "outline")))
        gain = out["aesthetic_measured"] - before
        return {
            "aesthetic_source": before,
            "aesthetic_gain": gain,
            "content_kept": kept,
            "improved": float(gain > 0),
            "edit_success": float(kept and gain > 0),
        }

    def __call__(self, run: RunOutputs) -> dict[str, list[float]]:
        per: list[dict[str, float]] = []
        for img, row in zip(run.images, run.rows, strict=True):
            truth = row["item"].get("truth")
            if not truth:
                per.append({})
                continue
            source = None
            if truth.get("edit") and row["item"].get("image"):
                source = (load_image(row["item"]["image"]).permute(1, 2, 0).numpy() * 255).round()
                source = source.astype(np.uint8)
            per.append(self.check(img, truth, source))
        keys = list(dict.fromkeys(k for p in per for k in p))
        return {k: [p.get(k, float("nan")) for p in per] for k in keys}
