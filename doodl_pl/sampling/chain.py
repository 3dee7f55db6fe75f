"""The chain protocol engines differentiate through, without knowing the sampler or the model."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["Chain", "ChainBase", "ReversibleChain", "State"]

State = tuple[Tensor, ...]


@runtime_checkable
class Chain(Protocol):
    """A fixed sequence of differentiable steps ``state_{k+1} = step(k, state_k)``."""

    def __len__(self) -> int: ...

    def prepare(self, state: State) -> State:
        """Cast the initial state to the chain's state dtype (differentiably)."""
        ...

    def step(self, k: int, state: State) -> State: ...

    def outputs(self, state: State) -> State:
        """The entries of a final state that are clean latents (images), the main one first."""
        ...


@runtime_checkable
class ReversibleChain(Chain, Protocol):
    """A chain whose steps can be inverted exactly and whose VJP can be fused with inversion."""

    def invert_step(self, k: int, state: State) -> State: ...

    def step_vjp(self, k: int, out_state: State, out_grad: State) -> tuple[State, State]:
        """Rebuild the input of step ``k`` from its output and pull ``out_grad`` back through it.

        Returns ``(in_state, in_grad)``.
        """
        ...


class ChainBase:
    """What every sampler chain holds: a model, a schedule, conditioning and a state dtype.

    Args:
        model: an ε model (``eps(x, t, cond)``).
        schedule: the executed steps.
        cond: conditioning passed to the model unchanged.
        state_dtype: dtype of the latent-state arithmetic; ``None`` keeps the input dtype.
    """

    def __init__(
        self,
        model: Any,
        schedule: Any,
        cond: Any = None,
        state_dtype: torch.dtype | None = torch.float64,
    ) -> None:
        self.model = model
        self.schedule = schedule
        self.cond = cond
        self.state_dtype = state_dtype
        self._coef = [schedule.coefficients(k) for k in range(len(schedule))]

    def __len__(self) -> int:
        return len(self.schedule)

    def prepare(self, state: State) -> State:
        if self.state_dtype is None:
            return tuple(state)
        return tuple(s.to(self.state_dtype) for s in state)

    def outputs(self, state: State) -> State:
        """The entries of a final state that are clean latents (images): all of them here."""
        return tuple(state)

    def run_all(self, state: State) -> State:
        """Cast ``state`` and apply every step in order (gradients as the caller's mode allows)."""
        state = self.prepare(state)
        for k in range(len(self)):
            state = self.step(k, state)
        return state

    def _eps(self, z: Tensor, k: int) -> Tensor:
        return self.model.eps(z, self.schedule.timesteps[k], self.cond)

    def _eps_vjp(self, z: Tensor, k: int, grad: Tensor) -> tuple[Tensor, Tensor]:
        """ε(z) and its VJP with ``grad``, from one graph that is freed on return."""
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            e = self._eps(z, k)
            (g,) = torch.autograd.grad(e, z, grad_outputs=grad)
        return e.detach(), g
