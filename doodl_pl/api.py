"""The notebook API: run any method on a list of items in one call, no YAML."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from PIL import Image

from .data.datamodule import DoodlDataModule
from .modules.base import GenerationModule
from .quiet import quiet_libraries

__all__ = ["run"]

_TRAINER = dict(
    max_epochs=1,
    logger=False,
    enable_checkpointing=False,
    enable_model_summary=False,
    use_distributed_sampler=False,
    num_sanity_val_steps=0,
)


def run(
    module: GenerationModule,
    items: list[dict[str, Any]],
    batch_size: int = 1,
    **trainer: Any,
) -> list[dict[str, Any]]:
    """Generate ``items`` with ``module`` (DOODL or a baseline) and return what it made.

    The same run as ``doodl-pl fit``: outputs go to the module's ``output_dir`` (a rerun skips
    finished items), with Lightning's ``Trainer`` built from ``trainer`` keyword arguments
    (default: one device, no logger, a progress bar over items).

    Args:
        module: e.g. ``DoodlModule(StableDiffusion("shapes64/sd"), loss=..., opt_steps=8)``.
        items: dicts with ``id``, ``prompt``, ``seed`` and what the losses read.
        batch_size: items optimised together.
        **trainer: ``lightning.pytorch.Trainer`` arguments, e.g. ``accelerator="gpu"``.

    Returns:
        One dict per item in ``items`` order: its manifest line (``status``, ``loss_start``,
        ``loss_end``, ``losses``, guide scores, UNet calls, …) and ``image``, the output as a
        PIL image (``None`` when the item failed).
    """
    quiet_libraries()
    data = DoodlDataModule(inline=items, batch_size=batch_size)
    pl.Trainer(**{**_TRAINER, **trainer}).fit(module, datamodule=data)
    latest = {r["id"]: r for r in module.writer.records()}
    out = []
    for it in data.all_items:
        row = dict(latest.get(it.id, {"id": it.id, "status": "missing"}))
        path = module.writer.images / f"{it.id}.png"
        ok = row.get("status") == "ok" and path.is_file()
        row["image"] = Image.open(path).convert("RGB") if ok else None
        out.append(row)
    return out
