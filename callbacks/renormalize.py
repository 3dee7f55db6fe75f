"""Renormalisation: keep each latent on the sphere of its initial norm."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lightning.pytorch as pl
import torch

if TYPE_CHECKING:
    from doodl_pl.modules.base import GenerationModule

__all__ = ["RenormalizeLatents"]


class RenormalizeLatents(pl.Callback):
    """After each update, x ← x · ‖x_T⁰‖ / ‖x‖ (and y likewise) for items with ``renorm`` set.

    Gaussian noise in high dimension concentrates on a sphere; staying on it keeps the latent
    in-distribution for the diffusion model.
    """

    @torch.no_grad()
    def on_train_batch_end(
        self, trainer, pl_module: GenerationModule, outputs, batch, batch_idx
    ) -> None:
        bank = pl_module.latent_bank
        if bank is None or bank.n == 0 or not bool(bank.renorm.any()):
            return
        for z in bank.live():
            norms = z.flatten(1).norm(dim=1)
            scale = torch.where(bank.renorm, bank.norm / norms, torch.ones_like(norms))
            z.mul_(scale.view(-1, *([1] * (z.dim() - 1))))
