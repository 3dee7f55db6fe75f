"""Counts ε-model evaluations and VJPs, for compute-matched comparisons."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

__all__ = ["CountingEps"]


class CountingEps(nn.Module):
    """Wraps an ε model; ``calls`` counts forward evaluations, ``vjps`` backward passes.

    One evaluation of a batch (cond and uncond together under CFG) counts once, as every item in
    the batch pays it once.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        self.calls = 0
        self.vjps = 0

    def _count_vjp(self, grad: Tensor) -> None:
        self.vjps += 1

    def eps(self, x: Tensor, t: Tensor | int, cond: Any) -> Tensor:
        self.calls += 1
        out = self.model.eps(x, t, cond)
        if out.requires_grad:
            out.register_hook(self._count_vjp)
        return out

    def reset(self) -> tuple[int, int]:
        counts = (self.calls, self.vjps)
        self.calls = self.vjps = 0
        return counts
