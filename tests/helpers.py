"""Building blocks for module-level tests on the tiny components."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl

from doodl_pl.backbones import StableDiffusion
from doodl_pl.data import DoodlDataModule


def trainer(**kw) -> pl.Trainer:
    defaults = dict(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        use_distributed_sampler=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    defaults.update(kw)
    return pl.Trainer(**defaults)


def fit(module, items, batch_size=1, **kw):
    dm = DoodlDataModule(inline=items, batch_size=batch_size)
    trainer(**kw).fit(module, datamodule=dm)
    return manifest(module.writer.root)


def manifest(root) -> dict[str, dict]:
    path = Path(root) / "manifest.jsonl"
    if not path.exists():
        return {}
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


def backbone(assets, dtype="float32"):
    return StableDiffusion(assets["sd"], dtype=dtype)


def items(n, prompt="a red circle", seed0=0):
    return [{"id": f"it{i}", "prompt": prompt, "seed": seed0 + i} for i in range(n)]


def nan_loss(images):
    """A loss that is NaN for every image (for failure-path tests)."""
    return images.mean(dim=(1, 2, 3)) * float("nan")
