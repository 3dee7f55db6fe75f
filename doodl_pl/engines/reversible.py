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

    The rebuilt initial state is compared with the true one: its relative distance, the drift,
    is round-off (about 1e-15 in float64) when inversion is exact, and grows when it is not
    (BDIA with γ < 1 divides by γ every step; float32 state; a UNet whose ε differs between the
    forward and the rebuild, e.g. compiled). Past ``drift_tolerance`` the gradient was taken
    along another trajectory than the forward pass: the module fails those items.

    Args:
        drift_tolerance: the largest relative drift per item accepted; ``None`` accepts any.

    Attributes:
        last_drift: the largest item drift of the latest backward pass.
        item_drift: ``(n,)`` ‖rebuilt − initial‖ / ‖initial‖ per item (over the whole state).
    """

    name = "reversible"

    def __init__(self, drift_tolerance: float | None = 1e-3) -> None:
        if drift_tolerance is not None and not drift_tolerance > 0:
            raise ValueError(f"`drift_tolerance` must be > 0 or null, got {drift_tolerance}")
        self.drift_tolerance = drift_tolerance
        self.last_drift: float | None = None
        self.item_drift: torch.Tensor | None = None

    def record_drift(self, initial: State, rebuilt: State) -> None:
        num = sum(
            (r - i).flatten(1).double().pow(2).sum(1) for r, i in zip(rebuilt, initial, strict=True)
        )
        den = sum(i.flatten(1).double().pow(2).sum(1) for i in initial)
        self.item_drift = (num / den.clamp_min(1e-300)).sqrt().cpu()
        self.last_drift = float(self.item_drift.max())

    def drifted(self) -> list[int]:
        """Rows of the latest backward pass whose drift exceeds ``drift_tolerance``."""
        if self.drift_tolerance is None or self.item_drift is None:
            return []
        bad = ~(self.item_drift <= self.drift_tolerance)  # NaN drift counts as drifted
        return torch.nonzero(bad).flatten().tolist()

    def run(self, chain: ReversibleChain, state: State) -> State:
        if not isinstance(chain, ReversibleChain):
            raise TypeError(
                f"the reversible engine needs an invertible chain (EDICT or BDIA), got "
                f"{type(chain).__name__}; use `engine: checkpoint` or `autograd` instead"
            )
        if len(chain) == 0:
            return state
        return _ReversibleFunction.apply(self, chain, *state)
