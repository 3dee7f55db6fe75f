"""EDICT: Exact Diffusion Inversion via Coupled Transformations (Wallace et al. 2022).

Symbols (paper → code):

    x_t, y_t              x, y            the coupled latent pair
    x_t^inter, y_t^inter  x_i, y_i        the pair after the two affine sub-steps
    a_t, b_t              a, b            Schedule.coefficients(k)
    p                     mix             mixing weight (0.93 in the paper)
    ε(·, t, C)            model.eps       any model behind the ``eps(x, t, cond)`` protocol

Denoising step (Eq. 14), with leapfrog ordering as in the reference code: at executed step index
k, even k updates x first, odd k updates y first ("first"/"second" below).

    1. first_i  = a · first  + b · ε(second, t)
    2. second_i = a · second + b · ε(first_i, t)
    3. x' = p · x_i + (1 − p) · y_i
    4. y' = p · y_i + (1 − p) · x'

Inversion (Eq. 15) undoes 4, 3, 2, 1 in that order, using ε at the same t. The parity is keyed on
the forward step index k, so partial schedules and odd step counts invert exactly.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..models.protocol import EpsModel
from .chain import ChainBase, State
from .schedule import Schedule

__all__ = ["EdictChain", "check_mix"]


def check_mix(mix: float, key: str = "mix") -> float:
    """Validate the EDICT mixing weight p."""
    if not 0.0 < mix <= 1.0:
        raise ValueError(f"`{key}` must be in (0, 1], got {mix}")
    return float(mix)


class EdictChain(ChainBase):
    """The EDICT sampling chain as a :class:`ReversibleChain`.

    Args:
        model: an ε model (``eps(x, t, cond)``).
        schedule: the executed steps.
        cond: conditioning passed to the model unchanged.
        mix: the mixing weight p.
        state_dtype: dtype of the latent-state arithmetic. Un-mixing multiplies x − y by 1/p² per
            step (≈1400× over 50 steps at p = 0.93), hence float64 by default; ``None`` keeps the
            input dtype.
    """

    def __init__(
        self,
        model: EpsModel,
        schedule: Schedule,
        cond: Any = None,
        mix: float = 0.93,
        state_dtype: torch.dtype | None = torch.float64,
    ) -> None:
        super().__init__(model, schedule, cond, state_dtype)
        self.mix = check_mix(mix)

    # -- forward ------------------------------------------------------------------------------
    def step(self, k: int, state: State) -> State:
        x, y = state
        a, b = self._coef[k]
        p = self.mix
        first, second = (x, y) if k % 2 == 0 else (y, x)
        first_i = a * first + b * self._eps(second, k)  # 1.
        second_i = a * second + b * self._eps(first_i, k)  # 2.
        x_i, y_i = (first_i, second_i) if k % 2 == 0 else (second_i, first_i)
        x_new = p * x_i + (1 - p) * y_i  # 3.
        y_new = p * y_i + (1 - p) * x_new  # 4.
        return x_new, y_new

    # -- inverse ------------------------------------------------------------------------------
    def _unmix(self, x_new: Tensor, y_new: Tensor) -> tuple[Tensor, Tensor]:
        p = self.mix
        y_i = (y_new - (1 - p) * x_new) / p  # undo 4.
        x_i = (x_new - (1 - p) * y_i) / p  # undo 3.
        return x_i, y_i

    def invert_step(self, k: int, state: State) -> State:
        a, b = self._coef[k]
        x_i, y_i = self._unmix(*state)
        first_i, second_i = (x_i, y_i) if k % 2 == 0 else (y_i, x_i)
        second = (second_i - b * self._eps(first_i, k)) / a  # undo 2.
        first = (first_i - b * self._eps(second, k)) / a  # undo 1.
        return (first, second) if k % 2 == 0 else (second, first)

    # -- fused inversion + VJP ------------------------------------------------------------------
    def step_vjp(self, k: int, out_state: State, out_grad: State) -> tuple[State, State]:
        a, b = self._coef[k]
        p = self.mix
        x_i, y_i = self._unmix(*out_state)
        gx_new, gy_new = out_grad
        # Pull back through 4. then 3.
        gx_tot = gx_new + (1 - p) * gy_new
        gy_i = p * gy_new + (1 - p) * gx_tot
        gx_i = p * gx_tot
        even = k % 2 == 0
        first_i, second_i = (x_i, y_i) if even else (y_i, x_i)
        g_first_i, g_second_i = (gx_i, gy_i) if even else (gy_i, gx_i)
        # Undo 2.: the ε(first_i) evaluation both rebuilds `second` and carries its VJP.
        e2, vjp2 = self._eps_vjp(first_i, k, g_second_i)
        second = (second_i - b * e2) / a
        g_second = a * g_second_i
        g_first_i = g_first_i + b * vjp2
        # Undo 1.: likewise ε(second).
        e1, vjp1 = self._eps_vjp(second, k, g_first_i)
        first = (first_i - b * e1) / a
        g_first = a * g_first_i
        g_second = g_second + b * vjp1
        if even:
            return (first, second), (g_first, g_second)
        return (second, first), (g_second, g_first)

    # -- whole chain ----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, x: Tensor, y: Tensor | None = None) -> State:
        """Run all steps from (x_T, y_T) (y_T = x_T when omitted) without a graph."""
        return self.run_all((x, x if y is None else y))

    @torch.no_grad()
    def invert(self, x: Tensor, y: Tensor | None = None) -> State:
        """Map a final pair (x_0, y_0) back to the initial pair (y_0 = x_0 when omitted)."""
        state = self.prepare((x, x if y is None else y))
        for k in reversed(range(len(self))):
            state = self.invert_step(k, state)
        return state
