"""The gradient-engine interface: run a chain forward, return a differentiable final state."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from ..sampling.chain import Chain, State

__all__ = ["GradientEngine", "zeros_for_none"]


def zeros_for_none(grads: tuple[Tensor | None, ...], like: State) -> State:
    """Autograd passes ``None`` for outputs the loss does not use."""
    return tuple(torch.zeros_like(s) if g is None else g for g, s in zip(grads, like, strict=True))


class GradientEngine(ABC):
    """Differentiates a loss on a chain's final state back to its initial state.

    Subclasses differ only in how the backward pass gets each step's input: stored, recomputed
    or rebuilt by inversion. Model weights never receive gradients.
    """

    name: str = "engine"

    def __call__(self, chain: Chain, state: State) -> State:
        """Run ``chain`` from ``state``; the result is differentiable w.r.t. ``state``."""
        return self.run(chain, chain.prepare(tuple(state)))

    @abstractmethod
    def run(self, chain: Chain, state: State) -> State: ...
