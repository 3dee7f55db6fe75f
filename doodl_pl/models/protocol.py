"""The one model protocol every sampler and engine speaks: ``eps(x, t, cond)``."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["EpsModel", "freeze"]


@runtime_checkable
class EpsModel(Protocol):
    """A noise predictor ε_θ(x_t, t, c).

    ``x`` may be in any floating dtype (the engines keep the latent state in float64); the model
    casts to its own dtype internally and returns ε in ``x``'s dtype, so casts stay differentiable.
    """

    def eps(self, x: Tensor, t: Tensor | int, cond: Any) -> Tensor: ...


def freeze(module: torch.nn.Module) -> torch.nn.Module:
    """Put ``module`` in eval mode with no weight gradients: engines only differentiate inputs."""
    module.eval()
    module.requires_grad_(False)
    return module
