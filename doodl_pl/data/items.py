"""Work items: what to generate, read from JSONL, CSV or a prompts × seeds grid."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["Item", "ItemsError", "grid_items", "item_from_dict", "read_items", "write_items"]


class ItemsError(ValueError):
    """A malformed items file; the message names the file and line."""


@dataclass
class Item:
    """One image to produce.

    Attributes:
        id: unique name; outputs are ``images/<id>.png``.
        prompt: text prompt.
        seed: seed of the initial noise (and of the item's random crops and perturbations).
        negative_prompt: replaces the null prompt in classifier-free guidance.
        image: path of a real image to edit (EDICT-inverted to initialise the latents).
        class_index: classifier target.
        reference_images: paths for CLIP image guidance.
        aesthetic_target: aesthetic score to reach.
    """

    id: str
    prompt: str = ""
    seed: int = 0
    negative_prompt: str | None = None
    image: str | None = None
    class_index: int | None = None
    reference_images: list[str] | None = None
    aesthetic_target: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_FIELDS = {f.name for f in fields(Item)} - {"extra"}


def item_from_dict(raw: Any, where: str, base: Path) -> Item:
    """An :class:`Item` from one parsed record; ``where`` (e.g. ``items.jsonl:3``) starts every
    error message, and relative image paths are taken relative to ``base``."""
    if not isinstance(raw, dict):
        raise ItemsError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    if "id" not in raw or str(raw["id"]).strip() == "":
        raise ItemsError(f"{where}: missing `id`; every item needs a unique id")
    kw: dict[str, Any] = {k: v for k, v in raw.items() if k in _FIELDS and v not in (None, "")}
    extra = {k: v for k, v in raw.items() if k not in _FIELDS}
    kw["id"] = str(kw["id"])
    if any(c in kw["id"] for c in "/\\\0") or kw["id"] in (".", ".."):
        raise ItemsError(f"{where}: `id` {kw['id']!r} must not contain path separators")
    try:
        if "seed" in kw:
            kw["seed"] = int(kw["seed"])
        if "class_index" in kw:
            kw["class_index"] = int(kw["class_index"])
        if "aesthetic_target" in kw:
            kw["aesthetic_target"] = float(kw["aesthetic_target"])
    except (TypeError, ValueError) as err:
        raise ItemsError(
            f"{where}: {err}; `seed` and `class_index` are integers, `aesthetic_target` a number"
        ) from err
    refs = kw.get("reference_images")
    if isinstance(refs, str):
        refs = [r for r in refs.split(";") if r]
    if refs is not None:
        kw["reference_images"] = [str(base / r) for r in refs]
    if "image" in kw:
        kw["image"] = str(base / kw["image"])
    return Item(**kw, extra=extra)


def write_items(rows: Iterable[dict[str, Any]], path: str | Path) -> Path:
    """Write items as ``.jsonl`` (one object per line), creating the folder; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_items(path: str | Path) -> list[Item]:
    """Read ``.jsonl`` (one object per line) or ``.csv`` (header row). Relative image paths are
    taken relative to the file's folder. Duplicate ids are an error."""
    path = Path(path)
    if not path.is_file():
        raise ItemsError(f"`items` file {str(path)!r} does not exist")
    base = path.parent
    items: list[Item] = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            for n, row in enumerate(csv.DictReader(f), start=2):
                items.append(item_from_dict(row, f"{path}:{n}", base))
    else:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as err:
                raise ItemsError(
                    f"{path}:{n}: malformed JSON ({err.msg} at column {err.colno}); each line "
                    f'must be one object like {{"id": "a", "prompt": "a cat", "seed": 0}}'
                ) from err
            items.append(item_from_dict(raw, f"{path}:{n}", base))
    seen: dict[str, int] = {}
    for i, it in enumerate(items):
        if it.id in seen:
            raise ItemsError(
                f"{path}: duplicate id {it.id!r} (items {seen[it.id] + 1} and {i + 1})"
            )
        seen[it.id] = i
    return items


def grid_items(prompts_file: str | Path, seeds: list[int], **common: Any) -> list[Item]:
    """Every prompt (one per non-empty line) × every seed, ids ``p{line:04d}_s{seed}``."""
    path = Path(prompts_file)
    if not path.is_file():
        raise ItemsError(f"`prompts` file {str(path)!r} does not exist")
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        prompt = line.strip()
        if prompt and not prompt.startswith("#"):
            items += [
                Item(id=f"p{n:04d}_s{s}", prompt=prompt, seed=int(s), **common) for s in seeds
            ]
    return items
