"""Ground-truth checks on generated Shapes-64 images: find objects, read colors and relations.

Objects are the connected regions of non-background pixels; each region's fill is the palette
color of its interior (pixels more than 2 px from the region's edge), its outline the palette color
of its edge band when that differs. Shape needs a classifier: :func:`isolate` paints every other
region with the background so one object can be classified on its own.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from .world import BACKGROUNDS, COLORS, Obj
from .world import relation as _relation

__all__ = ["Found", "find_objects", "isolate", "relation_of"]

_PALETTE = np.array(list(COLORS.values()), dtype=np.float64)
_NAMES = list(COLORS)
_BG = np.array(list(BACKGROUNDS.values()), dtype=np.float64)


@dataclass
class Found:
    """A detected object: fill/outline color names, area, centroid and its pixel mask."""

    color: str
    outline: str | None
    area: int
    cx: float
    cy: float
    mask: np.ndarray


def _background(img: np.ndarray) -> np.ndarray:
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]]).astype(np.float64)
    med = np.median(border, axis=0)
    return (
        _BG[np.argmin(((_BG - med) ** 2).sum(1))] if ((_BG - med) ** 2).sum(1).min() < 900 else med
    )


def _label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected component labels."""
    labels = np.zeros(mask.shape, dtype=np.int32)
    n = 0
    h, w = mask.shape
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if labels[y0, x0]:
            continue
        n += 1
        stack = [(y0, x0)]
        labels[y0, x0] = n
        while stack:
            y, x = stack.pop()
            for yy, xx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= yy < h and 0 <= xx < w and mask[yy, xx] and not labels[yy, xx]:
                    labels[yy, xx] = n
                    stack.append((yy, xx))
    return labels, n


def _erode(mask: np.ndarray) -> np.ndarray:
    m = np.pad(mask, 1)
    return m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]


def _nearest_color(pixels: np.ndarray) -> list[str]:
    d = ((pixels[:, None, :].astype(np.float64) - _PALETTE[None]) ** 2).sum(-1)
    return [_NAMES[i] for i in d.argmin(1)]


def find_objects(img: np.ndarray, min_area: int = 25) -> list[Found]:
    """Objects in a ``(64, 64, 3)`` uint8 image, largest first."""
    bg = _background(img)
    fg = np.sqrt(((img.astype(np.float64) - bg) ** 2).sum(-1)) > 60
    labels, n = _label(fg)
    found = []
    for k in range(1, n + 1):
        mask = labels == k
        area = int(mask.sum())
        if area < min_area:
            continue
        interior = mask
        for _ in range(2):
            interior = _erode(interior)
        core = interior if interior.sum() >= 4 else mask
        fill = Counter(_nearest_color(img[core])).most_common(1)[0][0]
        band = mask & ~_erode(_erode(mask))
        band_colors = Counter(_nearest_color(img[band]))
        top, count = band_colors.most_common(1)[0]
        outline = top if top != fill and count > 0.5 * band.sum() else None
        ys, xs = np.nonzero(mask)
        found.append(
            Found(fill, outline, area, float(xs.mean()) + 0.5, float(ys.mean()) + 0.5, mask)
        )
    return sorted(found, key=lambda f: -f.area)


def isolate(img: np.ndarray, keep: Found, others: list[Found]) -> np.ndarray:
    """A copy of ``img`` with every object except ``keep`` painted over with the background."""
    out = img.copy()
    bg = _background(img).round().astype(np.uint8)
    for o in others:
        if o is not keep:
            grown = o.mask | ~_erode(~o.mask)  # include the anti-aliased rim
            out[grown] = bg
    return out


def relation_of(a: Found, b: Found) -> str:
    """The spec's relation of A to B, from the detected centroids."""
    return _relation(
        Obj("circle", a.color, None, 1, a.cx, a.cy), Obj("circle", b.color, None, 1, b.cx, b.cy)
    )
