"""Deterministic DDIM (η = 0) as a single-latent :class:`Chain`.

Symbols: x_t → x_{t_prev} = a_t · x_t + b_t · ε(x_t, t), with a_t, b_t as in EDICT (the same
closed form of DDIM's update, Song et al. 2021 Eq. 12 with σ = 0).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .chain import ChainBase, State

__all__ = ["DdimChain"]


class DdimChain(ChainBase):
    """Plain DDIM sampling; differentiable with the ``autograd`` or ``checkpoint`` engines."""

    def step(self, k: int, state: State) -> State:
        (x,) = state
        a, b = self._coef[k]
        return (a * x + b * self._eps(x, k),)

    @torch.no_grad()
    def sample(self, x: Tensor) -> Tensor:
        return self.run_all((x,))[0]
