"""The reversible engine: memory independent of T, by rebuilding states through inversion."""

from __future__ import annotations

import torch

from ..sampling.chain import ReversibleChain, State
from .base import GradientEngine, zeros_for_none

__all__ = ["ReversibleEngine"]


class _ReversibleFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, engine: ReversibleEngine, chain: ReversibleChain, *state):
        initial = tuple(s.detach() for s in state)
        with torch.no_grad():
            for k in range(len(chain)):
                state = chain.step(k, state)
        ctx.engine, ctx.chain = engine, chain
        ctx.save_for_backward(*initial, *state)
        return state

    @staticmethod
    def backward(ctx, *grads):
        saved = ctx.saved_tensors
        n = len(saved) // 2
        initial, state = saved[:n], saved[n:]
        grads = zeros_for_none(grads, state)
        chain = ctx.chain
        for k in reversed(range(len(chain))):
            state, grads = chain.step_vjp(k, state, grads)
        ctx.engine.record_drift(initial, state)
        return (None, None, *grads)


class ReversibleEngine(GradientEngine):
    """Checkpoint-free backward for an exactly invertible chain (EDICT, BDIA).

    The forward keeps only the initial and final states. The backward walks the chain in
    reverse; each step's ε evaluations rebuild its input *and* carry its VJP, so a step costs
    2 model forwards + 2 VJPs (EDICT) or 1 + 1 (BDIA) with at most one model graph alive.

    Attributes:
        last_drift: ‖rebuilt x_T − x_T‖ / ‖x_T‖ of the latest backward pass (over the whole state).
    """

    name = "reversible"

    def __init__(self) -> None:
        self.last_drift: float | None = None

    def record_drift(self, initial: State, rebuilt: State) -> None:
        num = sum(float(torch.sum((r - i) ** 2)) for r, i in zip(rebuilt, initial, strict=True))
        den = sum(float(torch.sum(i**2)) for i in initial)
        self.last_drift = (num / max(den, 1e-300)) ** 0.5

    def run(self, chain: ReversibleChain, state: State) -> State:
        if not isinstance(chain, ReversibleChain):
            raise TypeError(
                f"the reversible engine needs an invertible chain (EDICT or BDIA), got "
                f"{type(chain).__name__}; use `engine: checkpoint` or `autograd` instead"
            )
        if len(chain) == 0:
            return state
        return _ReversibleFunction.apply(self, chain, *state)
