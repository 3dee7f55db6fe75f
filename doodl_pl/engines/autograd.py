"""Plain autograd through every step: the reference, memory O(T)."""

from __future__ import annotations

from ..sampling.chain import Chain, State
from .base import GradientEngine

__all__ = ["AutogradEngine"]


class AutogradEngine(GradientEngine):
    """Keeps every UNet graph alive until the backward pass. For tests and small T."""

    name = "autograd"

    def run(self, chain: Chain, state: State) -> State:
        for k in range(len(chain)):
            state = chain.step(k, state)
        return state
