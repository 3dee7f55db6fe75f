"""Counts ε-model evaluations and VJPs, for compute-matched comparisons."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

__all__ = ["CountingEps"]


class CountingEps(nn.Module):
    """Wraps an ε model; ``calls`` counts forward evaluations, ``vjps`` backward passes, both
    per latent: a call on a batch of B latents counts B (cond and uncond together under CFG count
    once). Divided by the items in a batch this is each item's cost, whether a method batches
    items (DOODL, vanilla) or one item's candidates (best-of-N).
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        self.calls = 0
        self.vjps = 0

    def _count_vjp(self, grad: Tensor) -> None:
        self.vjps += int(grad.shape[0])

    def eps(self, x: Tensor, t: Tensor | int, cond: Any) -> Tensor:
        self.calls += int(x.shape[0])
        out = self.model.eps(x, t, cond)
        if out.requires_grad:
            out.register_hook(self._count_vjp)
        return out

    def reset(self) -> tuple[int, int]:
        counts = (self.calls, self.vjps)
        self.calls = self.vjps = 0
        return counts
