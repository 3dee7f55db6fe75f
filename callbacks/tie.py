"""Latent averaging: tied items keep x_T = y_T."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lightning.pytorch as pl
import torch

if TYPE_CHECKING:
    from doodl_pl.modules.base import GenerationModule

__all__ = ["TieLatents"]


class TieLatents(pl.Callback):
    """After each update, x = y = (x + y) / 2 for items whose ``tie`` mask is set."""

    @torch.no_grad()
    def on_train_batch_end(
        self, trainer, pl_module: GenerationModule, outputs, batch, batch_idx
    ) -> None:
        bank = pl_module.latent_bank
        if bank is None or bank.n == 0 or not bool(bank.tie.any()):
            return
        x, y = bank.live()
        mask = bank.tie.view(-1, *([1] * (x.dim() - 1)))
        mean = (x + y) / 2
        x.copy_(torch.where(mask, mean, x))
        y.copy_(torch.where(mask, mean, y))
