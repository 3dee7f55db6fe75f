"""BDIA-DDIM: Bi-Directional Integration Approximation (Zhang, Lewis, Kleijn, ECCV 2024).

An exactly invertible sampler with **one** ε evaluation per step: its state is two consecutive
latents, and each step combines DDIM's forward step from z_i with a backward DDIM step from the
same ε(z_i), so the older latent can be solved for again.

Symbols (paper → code):

    z_{i+1}, z_i, z_{i-1}   prev, cur, new    three consecutive latents (noisy → clean)
    ε̂(z_i, i)               model.eps         any model behind the ``eps(x, t, cond)`` protocol
    Δ(t_i → t_{i-1} | z_i)  a·cur + b·ε − cur the DDIM step to the next, cleaner time
    Δ(t_i → t_{i+1} | z_i)  a⁺·cur + b⁺·ε − cur the DDIM step back to the previous, noisier time
    γ                       gamma             weight of the older latent z_{i+1}
    a, b                    Schedule.coefficients(k)   (ᾱ_k → ᾱ_{k+1})
    a⁺, b⁺                  the same formula for ᾱ_k → ᾱ_{k-1}

Denoising step k ≥ 1 (the paper's BDIA update, γ as the older latent's weight):

    1. ε = ε̂(cur, t_k)
    2. new = γ·prev + (1 − γ)·cur − γ·Δ(t_k → t_{k-1} | cur) + Δ(t_k → t_{k+1} | cur)
           = γ·prev + (a − γ a⁺)·cur + (b − γ b⁺)·ε
    3. state ← (cur, new)

Step 0 has no older latent: it is a plain DDIM step, new = a·cur + b·ε, written as
``new = prev + (a − 1)·cur + b·ε`` so that it stays invertible for an untied pair (prev ≠ cur,
e.g. after inverting a real image) and equals DDIM exactly for the tied pair (prev = cur) every
generation starts from.

Inversion solves 2. for the older latent, with ε at the same (cur, t_k):

    prev = (new − (a − γ a⁺)·cur − (b − γ b⁺)·ε̂(cur, t_k)) / γ

so each inverted step multiplies round-off by 1/γ; γ = 1 (the default) keeps the round trip at
float64 round-off for T = 50 (measured in ``docs/benchmarks.md``).

The final state is (z at the last executed timestep, z_0): only ``state[1]`` is an image.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..models.protocol import EpsModel
from .chain import ChainBase, State
from .schedule import Schedule

__all__ = ["BdiaChain", "check_gamma"]


def check_gamma(gamma: float, key: str = "gamma") -> float:
    """Validate BDIA's γ (0 would be DDIM, which cannot be inverted exactly)."""
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"`{key}` must be in (0, 1], got {gamma}")
    return float(gamma)


def _ddim_coefficients(ab: float, ab_to: float) -> tuple[float, float]:
    """(a, b) of the DDIM move ᾱ → ᾱ_to: a = sqrt(ᾱ_to/ᾱ), b = sqrt(1−ᾱ_to) − sqrt(ᾱ_to(1−ᾱ)/ᾱ)."""
    return (ab_to / ab) ** 0.5, (1.0 - ab_to) ** 0.5 - (ab_to * (1.0 - ab) / ab) ** 0.5


class BdiaChain(ChainBase):
    """The BDIA-DDIM sampling chain as a :class:`ReversibleChain` (one ε per step).

    Args:
        model: an ε model (``eps(x, t, cond)``).
        schedule: the executed steps.
        cond: conditioning passed to the model unchanged.
        gamma: γ, the older latent's weight, in (0, 1].
        state_dtype: dtype of the latent-state arithmetic; ``None`` keeps the input dtype.
    """

    def __init__(
        self,
        model: EpsModel,
        schedule: Schedule,
        cond: Any = None,
        gamma: float = 1.0,
        state_dtype: torch.dtype | None = torch.float64,
    ) -> None:
        super().__init__(model, schedule, cond, state_dtype)
        self.gamma = check_gamma(gamma)
        # Per step (w_prev, w_cur, w_eps): new = w_prev·prev + w_cur·cur + w_eps·ε.
        self.weights: list[tuple[float, float, float]] = []
        for k, (a, b) in enumerate(self._coef):
            if k == 0:
                self.weights.append((1.0, a - 1.0, b))
                continue
            ab, ab_back = float(schedule.alpha_bar[k]), float(schedule.alpha_bar[k - 1])
            a_back, b_back = _ddim_coefficients(ab, ab_back)
            g = self.gamma
            self.weights.append((g, a - g * a_back, b - g * b_back))

    def outputs(self, state: State) -> State:
        return (state[1],)

    # -- forward ------------------------------------------------------------------------------
    def step(self, k: int, state: State) -> State:
        prev, cur = state
        w_prev, w_cur, w_eps = self.weights[k]
        new = w_prev * prev + w_cur * cur + w_eps * self._eps(cur, k)  # 1.-2.
        return cur, new  # 3.

    # -- inverse ------------------------------------------------------------------------------
    def invert_step(self, k: int, state: State) -> State:
        cur, new = state
        w_prev, w_cur, w_eps = self.weights[k]
        prev = (new - w_cur * cur - w_eps * self._eps(cur, k)) / w_prev
        return prev, cur

    # -- fused inversion + VJP ------------------------------------------------------------------
    def step_vjp(self, k: int, out_state: State, out_grad: State) -> tuple[State, State]:
        cur, new = out_state
        g_cur_out, g_new = out_grad
        w_prev, w_cur, w_eps = self.weights[k]
        # One ε(cur) evaluation rebuilds prev and carries the VJP of 2.
        e, vjp = self._eps_vjp(cur, k, w_eps * g_new)
        prev = (new - w_cur * cur - w_eps * e) / w_prev
        return (prev, cur), (w_prev * g_new, g_cur_out + w_cur * g_new + vjp)

    # -- whole chain ----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, x: Tensor, y: Tensor | None = None) -> State:
        """Run all steps from (prev, cur) = (x, y) (y = x when omitted: plain DDIM's first step)."""
        return self.run_all((x, x if y is None else y))

    @torch.no_grad()
    def invert(self, x: Tensor, y: Tensor | None = None) -> State:
        """Map a final state back to the initial one.

        With ``y`` the final state is (x, y) = (z at the last timestep, z_0) and the round trip is
        exact. With ``y`` omitted ``x`` is a clean latent z_0 (a real image): the missing older
        latent comes from one DDIM inversion step, then every step is inverted exactly, so
        sampling from the result reproduces ``x`` to round-off.
        """
        if y is None:
            (z0,) = self.prepare((x,))
            k = len(self) - 1
            a, b = self._coef[k]
            # DDIM inversion of the last step: ε at z_0 stands in for ε at the unknown latent.
            state = ((z0 - b * self._eps(z0, k)) / a, z0)
        else:
            state = self.prepare((x, y))
        for k in reversed(range(len(self))):
            state = self.invert_step(k, state)
        return state
