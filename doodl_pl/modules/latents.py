"""The learnable latent pairs of the items DOODL is optimising."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["LatentBank"]


class LatentBank(nn.Module):
    """The learnable (x_T, y_T) of the items in the current batch, one row per item.

    Attributes:
        x, y: ``(capacity, C, h, w)`` parameters; rows ``[:n]`` are live.
        norm: per-item ‖x_T‖ at initialisation (renormalisation target).
        tie, renorm: per-item masks (real-image edits are neither tied nor renormalised).
    """

    def __init__(self, capacity: int, shape: tuple[int, ...], dtype: torch.dtype) -> None:
        super().__init__()
        self.x = nn.Parameter(torch.zeros(capacity, *shape, dtype=dtype))
        self.y = nn.Parameter(torch.zeros(capacity, *shape, dtype=dtype))
        self.n = 0
        self.norm = self.tie = self.renorm = None
        self.seeds: list[int] = []
        self.step = 0

    @torch.no_grad()
    def load(self, x: Tensor, y: Tensor, tie: Tensor, renorm: Tensor, seeds: list[int]) -> None:
        n = x.shape[0]
        self.x.zero_()
        self.y.zero_()
        self.x[:n] = x
        self.y[:n] = y
        self.n, self.seeds, self.step = n, list(seeds), 0
        self.norm = x.flatten(1).norm(dim=1)
        self.tie, self.renorm = tie, renorm

    def live(self) -> tuple[Tensor, Tensor]:
        return self.x[: self.n], self.y[: self.n]
