"""The DOODL latent update as a torch optimizer (the reference code's hand-written SGD)."""

from __future__ import annotations

import torch
from torch.optim import Optimizer

__all__ = ["DoodlSGD"]


class DoodlSGD(Optimizer):
    """Clipped heavy-ball descent on (x_T, y_T) pairs.

    For a param group flagged ``pair`` holding ``[x, y]`` (rows = items):

    1. g = −λ · ∇L; rows in ``tie_mask`` take the mean of their x and y gradients;
    2. g is clipped element-wise to ±``clip`` *before* momentum;
    3. b = μ·b + g (b = g on the first step), latent += b.

    Perturbation, tying and renormalisation follow in callbacks (``doodl_pl.callbacks``).

    Args:
        params: parameters or groups; DOODL's module passes one ``pair`` group.
        lr: λ, the guidance scale on the loss gradient. 0.5 reproduces the reference code at its
            default ``grad_scale = 1`` (it steps by −0.5·grad_scale·∇).
        clip: element-wise bound on λ·∇L; ``None`` disables clipping.
        momentum: μ; 0 disables momentum.
    """

    def __init__(self, params, lr: float = 0.5, clip: float | None = 1e-3, momentum: float = 0.9):
        if lr <= 0:
            raise ValueError(f"`lr` must be > 0, got {lr}")
        if clip is not None and clip <= 0:
            raise ValueError(f"`clip` must be > 0, got {clip}")
        if not 0 <= momentum < 1:
            raise ValueError(f"`momentum` must be in [0, 1), got {momentum}")
        super().__init__(
            params, dict(lr=lr, clip=clip, momentum=momentum, pair=False, tie_mask=None)
        )

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            updates = [-group["lr"] * p.grad for p in params]
            if group["pair"] and group["tie_mask"] is not None and len(params) == 2:
                mask = group["tie_mask"].view(-1, *([1] * (params[0].dim() - 1)))
                mean = (updates[0] + updates[1]) / 2
                updates = [torch.where(mask, mean, u) for u in updates]
            for p, g in zip(params, updates, strict=True):
                if group["clip"] is not None:
                    g = g.clamp(-group["clip"], group["clip"])
                if group["momentum"]:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    g = g.clone() if buf is None else buf.mul_(group["momentum"]).add_(g)
                    state["momentum_buffer"] = g
                p.add_(g)
        return loss
