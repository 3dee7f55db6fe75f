"""The Shapes-64 benchmark's items: held-out prompts, seeds and images for each application.

Items carry their ground truth under ``truth`` (see :mod:`doodl_pl.shapes64.checks`). Scene
seeds come from the ``eval_*`` splits for results and from the disjoint ``tune_*`` splits for
tuning, at an offset so they never coincide with ``scripts/eval_shapes64.py``'s sets; no split
here overlaps the training splits.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from ..data.items import write_items
from .dataset import SPLITS
from .render import render
from .world import COLORS, SHAPES, Obj, Scene, article, position_phrase, sample_scene

__all__ = ["APPS", "HIDDEN", "ITEM_BUILDERS", "OFFSET", "build_items", "fid_references"]

# Appended, never reordered: an application's item seeds follow its place here.
APPS = ("text", "vocabulary", "personalization", "aesthetic", "personalization_alone")
HIDDEN = ("pentagon", "hexagon", "octagon")
OFFSET = 600_000
REFERENCES_PER_CLASS = 64


def _seeds(split: str, kind: str, app: str) -> int:
    base = SPLITS[f"{split}_{kind}"][0] + OFFSET
    return base + 50_000 * APPS.index(app)


def _save(img, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return str(path)


def _phrase(color: str | None, word: str) -> str:
    text = f"{color} {word}" if color else word
    return f"{article(text)} {text}"


def _text(n: int, split: str, out: Path) -> list[dict]:
    start = _seeds(split, "two", "text")
    items = []
    for i in range(n):
        scene = sample_scene(start + i, n_objects=2)
        (a, b), rel = scene.objects, scene.relation
        items.append(
            {
                "id": f"text_{i:03d}",
                "prompt": f"{_phrase(a.color, a.word)} {rel} {_phrase(b.color, b.word)}",
                "seed": start + i,
                "truth": {
                    "objects": [
                        {"color": a.color, "word": a.word},
                        {"color": b.color, "word": b.word},
                    ],
                    "relation": rel,
                },
            }
        )
    return items


def _vocabulary(n: int, split: str, out: Path) -> list[dict]:
    start = _seeds(split, "one", "vocabulary")
    items = []
    for i in range(n):
        shape = HIDDEN[i % 3]
        obj = sample_scene(start + i, n_objects=1, shape=shape).objects[0]
        items.append(
            {
                "id": f"vocab_{i:03d}",
                "prompt": f"{_phrase(obj.color, 'polygon')}",
                "seed": start + i,
                "class_index": SHAPES.index(shape),
                "truth": {"objects": [{"color": obj.color, "shape": shape}]},
            }
        )
    fid_references(HIDDEN, start + 10_000, out / "fid_reference")
    return items


def fid_references(shapes: Sequence[str], start: int, out: Path) -> Path:
    """:data:`REFERENCES_PER_CLASS` one-object renders of each shape (the k-th shape's from
    seeds ``start + 100 k + j``) in ``out/<class index>/``: per-class FID's reference set."""
    for k, shape in enumerate(shapes):
        for j in range(REFERENCES_PER_CLASS):
            scene = sample_scene(start + 100 * k + j, n_objects=1, shape=shape)
            _save(render(scene), out / str(SHAPES.index(shape)) / f"{j:03d}.png")
    return out


def _references(start: int, n: int) -> list[Scene]:
    """``n`` one-object scenes from seed ``start`` on whose object has an outline (the entity
    only an image can describe)."""
    refs, seed = [], start
    while len(refs) < n:
        ref = sample_scene(seed, n_objects=1)
        seed += 1
        if ref.objects[0].outline is not None:
            refs.append(ref)
    return refs


def _personalization(n: int, split: str, out: Path) -> list[dict]:
    start = _seeds(split, "one", "personalization")
    items = []
    for i, ref in enumerate(_references(start, n)):
        o = ref.objects[0]
        pair = sample_scene(start + 20_000 + i, n_objects=2)
        second = pair.objects[1]
        if second.color == o.color:
            colors = [c for c in COLORS if c != o.color]
            second = Obj(
                second.shape, colors[i % len(colors)], None, second.r, second.cx, second.cy
            )
        path = _save(render(ref), out / "references" / f"pers_{i:03d}.png")
        items.append(
            {
                "id": f"pers_{i:03d}",
                # Text says what it can (both colours, as the world's two-object captions always
                # do); the outline, never captioned, only the reference image can ask for.
                "prompt": f"{_phrase(o.color, o.word)} {pair.relation} {_phrase(second.color, second.word)}",
                "seed": start + i,
                "reference_images": [path],
                "truth": {
                    "objects": [
                        {"color": o.color, "shape": o.shape, "outline": o.outline},
                        {"color": second.color, "word": second.word},
                    ],
                    "relation": pair.relation,
                    "entity": 0,
                },
            }
        )
    return items


def _personalization_alone(n: int, split: str, out: Path) -> list[dict]:
    """The reference entity alone in a new scene: the prompt names its colour, its shape word and
    a grid cell other than the reference's (the world's one-object caption); the judge asks for
    the entity whole (fill, exact shape, outline) in that cell."""
    start = _seeds(split, "one", "personalization_alone")
    items = []
    for i, ref in enumerate(_references(start, n)):
        o = ref.objects[0]
        seed = start + 20_000 + i * 100
        while True:  # a new position: the centre of another scene, in another cell
            place = sample_scene(seed, n_objects=1).objects[0]
            seed += 1
            where = position_phrase(place.cx, place.cy)
            if where != position_phrase(o.cx, o.cy):
                break
        path = _save(render(ref), out / "references" / f"alone_{i:03d}.png")
        items.append(
            {
                "id": f"alone_{i:03d}",
                "prompt": f"{_phrase(o.color, o.word)} {where}",
                "seed": start + i,
                "reference_images": [path],
                "truth": {
                    "objects": [{"color": o.color, "shape": o.shape, "outline": o.outline}],
                    "position": where,
                    "entity": 0,
                },
            }
        )
    return items


def _aesthetic(n: int, split: str, out: Path, below: float = 4.0) -> list[dict]:
    start = _seeds(split, "one", "aesthetic")
    items, seed = [], start
    for i in range(n):
        while True:  # a low-score "photo"
            scene: Scene = sample_scene(seed, n_objects=1)
            seed += 1
            if scene.aesthetic < below:
                break
        o = scene.objects[0]
        path = _save(render(scene), out / "photos" / f"aes_{i:03d}.png")
        items.append(
            {
                "id": f"aes_{i:03d}",
                "prompt": "",
                "seed": start + i,
                "image": path,
                "aesthetic_target": 10.0,
                "truth": {
                    "objects": [{"color": o.color, "shape": o.shape, "outline": o.outline}],
                    "aesthetic": scene.aesthetic,
                    "edit": True,
                },
            }
        )
    return items


# Each application's item builder: (n, split, out folder) → item dicts.
ITEM_BUILDERS = {
    "text": _text,
    "vocabulary": _vocabulary,
    "personalization": _personalization,
    "aesthetic": _aesthetic,
    "personalization_alone": _personalization_alone,
}


def build_items(app: str, n: int, split: str, out: str | Path) -> Path:
    """Write ``out/items.jsonl`` (and the reference images the app needs); returns its path."""
    if app not in APPS:
        raise ValueError(f"unknown application {app!r}; choose from {APPS}")
    if split not in ("eval", "tune"):
        raise ValueError(f"split must be 'eval' or 'tune', got {split!r}")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    items = ITEM_BUILDERS[app](n, split, out)
    return write_items(items, out / "items.jsonl")
