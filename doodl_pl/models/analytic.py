"""A closed-form ε model: smooth, cheap and exactly differentiable, for tests and toys."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["AnalyticEps"]


class AnalyticEps(nn.Module):
    """ε(x, t) = tanh(W x + c·t/1000) applied per pixel over channels, with fixed random W.

    Nonlinear and Lipschitz, so reversibility and gradient tests are meaningful.

    Args:
        channels: number of channels of ``x``.
        seed: seed of the random weights.
        scale: spectral scale of ``W``.
    """

    def __init__(self, channels: int = 4, seed: int = 0, scale: float = 0.5) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(channels, channels, generator=g, dtype=torch.float64)
        self.register_buffer("weight", scale * w / torch.linalg.matrix_norm(w, ord=2))
        self.register_buffer("bias", torch.randn(channels, generator=g, dtype=torch.float64))

    def eps(self, x: Tensor, t: Tensor | int, cond: Any = None) -> Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        w = self.weight.to(x.dtype)
        h = torch.einsum("oc,bc...->bo...", w, x)
        b = self.bias.to(x.dtype).view(1, -1, *([1] * (x.dim() - 2)))
        shift = 0.0 if cond is None else cond
        return torch.tanh(h + b * t / 1000 + shift)
