"""Per-step checkpointing: store each step's input, recompute its graph in the backward."""

from __future__ import annotations

import torch

from ..sampling.chain import Chain, State
from .base import GradientEngine, zeros_for_none

__all__ = ["CheckpointEngine"]


class _CheckpointFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, chain: Chain, *state):
        inputs = []
        with torch.no_grad():
            for k in range(len(chain)):
                inputs.append(tuple(s.detach() for s in state))
                state = chain.step(k, state)
        ctx.chain, ctx.width = chain, len(state)
        ctx.save_for_backward(*(s for inp in inputs for s in inp))
        return state

    @staticmethod
    def backward(ctx, *grads):
        chain, w = ctx.chain, ctx.width
        flat = ctx.saved_tensors
        inputs = [flat[i : i + w] for i in range(0, len(flat), w)]
        grads = zeros_for_none(grads, inputs[0])
        for k in reversed(range(len(chain))):
            with torch.enable_grad():
                inp = tuple(s.detach().requires_grad_(True) for s in inputs[k])
                out = chain.step(k, inp)
                grads = torch.autograd.grad(out, inp, grad_outputs=grads)
        return (None, *grads)


class CheckpointEngine(GradientEngine):
    """What the DOODL reference code does: O(T) stored states, one step's graph at a time.

    Works for any :class:`Chain`, including plain DDIM.
    """

    name = "checkpoint"

    def run(self, chain: Chain, state: State) -> State:
        if len(chain) == 0:
            return state
        return _CheckpointFunction.apply(chain, *state)
