"""Smooth toy objectives: cheap, exact, model-free losses for tests and demos."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import ImageLoss, LossContext

__all__ = ["ColorLoss"]


class ColorLoss(ImageLoss):
    """Mean squared distance of every pixel to a target RGB color (in [0, 1])."""

    def __init__(self, color: tuple[float, float, float] = (1.0, 0.0, 0.0), weight: float = 1.0):
        super().__init__(weight)
        self.register_buffer("color", torch.tensor(color).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor, ctx: LossContext) -> Tensor:
        return ((images - self.color) ** 2).mean(dim=(1, 2, 3))
