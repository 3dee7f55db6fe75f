"""Gaussian perturbation of the latents after each DOODL update."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lightning.pytorch as pl
import torch

from doodl_pl.utils.seeding import STREAM_PERTURB, item_generator

if TYPE_CHECKING:
    from doodl_pl.modules.base import GenerationModule

__all__ = ["PerturbLatents"]


class PerturbLatents(pl.Callback):
    """x += n, y += n with n ~ N(0, std²), one draw per item and step shared by x and y.

    The draw comes from the item's seed and the step, so it does not depend on batch or rank.
    """

    def __init__(self, std: float = 1e-4) -> None:
        self.std = float(std)

    @torch.no_grad()
    def on_train_batch_end(
        self, trainer, pl_module: GenerationModule, outputs, batch, batch_idx
    ) -> None:
        bank = pl_module.latent_bank
        if not self.std or bank is None or bank.n == 0:
            return
        x, y = bank.live()
        for i, seed in enumerate(bank.seeds):
            g = item_generator(seed, STREAM_PERTURB, bank.step)
            n = torch.randn(x.shape[1:], generator=g).to(x) * self.std
            x[i] += n
            y[i] += n
