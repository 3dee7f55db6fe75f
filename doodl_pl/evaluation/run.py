"""One output folder of ``doodl-pl fit``: its manifest, images, items and run config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image
from torch import Tensor

from ..data.items import read_items
from ..outputs import OutputWriter

__all__ = ["RunOutputs", "items_of", "load_run"]


@dataclass
class RunOutputs:
    """The finished items of a run, joined with their input items.

    Attributes:
        root: the output folder.
        name: a label for tables (the folder name unless given).
        rows: manifest lines of items with status ``ok``, in item order, each with its input item
            under ``"item"`` (``{}`` when the items file is unknown).
        images: ``(N, H, W, 3)`` uint8, one per row.
        failed: ids of failed items (reported, not scored).
        config: the run config (``config.yaml``) when the run wrote one.
        items_path: the items file the rows were joined with.
        outside: ids of manifest lines the items file does not hold (left out, not scored).
    """

    root: Path
    name: str
    rows: list[dict[str, Any]]
    images: np.ndarray
    failed: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    items_path: Path | None = None
    outside: list[str] = field(default_factory=list)

    def tensor(self, idx: slice | list[int] | None = None) -> Tensor:
        """Images (all, or ``idx``) as float ``(N, 3, H, W)`` in [0, 1]."""
        imgs = self.images if idx is None else self.images[idx]
        return torch.from_numpy(np.ascontiguousarray(imgs)).permute(0, 3, 1, 2).float() / 255.0

    def per_item(self, key: str, default: Any = None) -> list[Any]:
        return [r.get(key, default) for r in self.rows]

    def cost(self) -> dict[str, float]:
        """Mean UNet calls and wall seconds per item, from the manifest."""
        calls = [r["unet_calls"] for r in self.rows if r.get("unet_calls") is not None]
        wall = [r["wall_s"] for r in self.rows if r.get("wall_s") is not None]
        return {
            "unet_calls_per_item": float(np.mean(calls)) if calls else float("nan"),
            "wall_s_per_item": float(np.mean(wall)) if wall else float("nan"),
        }


def _items_from_config(config: dict[str, Any], root: Path) -> Path | None:
    if "data" not in config and isinstance(config.get("fit"), dict):
        config = config["fit"]  # `doodl-pl fit` saves its config under the subcommand
    data = config.get("data") or {}
    args = data.get("init_args", data) if isinstance(data, dict) else {}
    items = args.get("items") if isinstance(args, dict) else None
    if not items:
        return None
    for base in (Path.cwd(), root):
        if (base / items).is_file():
            return base / items
    return None


def items_of(root: str | Path) -> Path | None:
    """The items file a run folder's ``config.yaml`` names, if it names one that exists."""
    config = Path(root) / "config.yaml"
    if not config.is_file():
        return None
    return _items_from_config(yaml.safe_load(config.read_text()) or {}, Path(root))


def load_run(
    root: str | Path, items: str | Path | None = None, name: str | None = None
) -> RunOutputs:
    """Read an output folder. ``items`` (JSONL/CSV) defaults to the one its ``config.yaml`` names.

    Raises:
        FileNotFoundError: no ``manifest.jsonl`` in ``root``, or a listed image is missing.
    """
    root = Path(root)
    writer = OutputWriter(root)
    if not writer.manifest.is_file():
        raise FileNotFoundError(
            f"{writer.manifest}: no manifest; pass the `output_dir` of a finished `doodl-pl fit` run"
        )
    config: dict[str, Any] = {}
    if (root / "config.yaml").is_file():
        config = yaml.safe_load((root / "config.yaml").read_text()) or {}
    items_path = Path(items) if items else _items_from_config(config, root)
    by_id = (
        {it.id: {**it.to_dict(), **it.extra} for it in read_items(items_path)} if items_path else {}
    )
    order = {k: i for i, k in enumerate(by_id)}
    latest: dict[str, dict[str, Any]] = {}
    for rec in writer.records():
        latest[rec["id"]] = rec  # a retried item's last line wins
    rows, failed, outside = [], [], []
    for rec in sorted(latest.values(), key=lambda r: (order.get(r["id"], len(order)), r["id"])):
        if by_id and rec["id"] not in by_id:
            # e.g. a benchmark rerun with fewer items: a line the items file no longer holds
            # has no ground truth to judge it by, and would count in one column only
            outside.append(rec["id"])
            continue
        if rec.get("status", "ok") != "ok":
            failed.append(rec["id"])
            continue
        rows.append({**rec, "item": by_id.get(rec["id"], {})})
    images = []
    for rec in rows:
        path = writer.images / f"{rec['id']}.png"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: listed in {writer.manifest} but missing")
        images.append(np.asarray(Image.open(path).convert("RGB")))
    arr = np.stack(images) if images else np.zeros((0, 1, 1, 3), np.uint8)
    return RunOutputs(root, name or root.name, rows, arr, failed, config, items_path, outside)
