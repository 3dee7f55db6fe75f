"""A staged backward: a loss's gradient taken at once, so its graph is freed before the next.

DOODL scores every final latent of the chain (EDICT has two, x_0 and y_0). Decoded and scored
together, the VAE decoder's and the guides' graphs of all of them are alive at once, and at
1024² the decoder's backward is the largest part of a step (``docs/benchmarks.md``). Scoring one
latent at a time and running its backward right away holds one image's graphs at a time; the
autograd graph keeps only the latent's gradient, which the chain's backward then receives.

Rows must be independent: row ``r`` of the loss depends on row ``r`` of the latent only (true
of every per-item loss here: each item's image is decoded and scored on its own). Then
∂(Σ_j v_j)/∂z_r = ∂v_r/∂z_r, and any upstream weights w give the exact vector-Jacobian
product w_r · ∂v_r/∂z_r.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["staged"]

LossFn = Callable[[Tensor], tuple[Tensor, Tensor]]


class _Staged(torch.autograd.Function):
    @staticmethod
    def forward(ctx, latent: Tensor, fn: LossFn) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        z = latent.detach().requires_grad_(True)
        with torch.enable_grad():
            values, images = fn(z)
            (grad,) = torch.autograd.grad(values.sum(), z, allow_unused=True)
        ctx.save_for_backward(torch.zeros_like(z) if grad is None else grad)
        images = images.detach()
        ctx.mark_non_differentiable(images)
        return values.detach(), images

    @staticmethod
    def backward(ctx, grad_values: Tensor, _: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        weights = grad_values.reshape(-1, *[1] * (grad.dim() - 1)).to(grad.dtype)
        return weights * grad, None


def staged(latent: Tensor, fn: LossFn) -> tuple[Tensor, Tensor]:
    """``fn(latent)`` → (per-row loss values (n,), images (n, …)), its backward run now.

    Returns the values, differentiable in ``latent`` through the stored gradient, and the
    images, detached. Without grad (or when ``latent`` needs none) it is plain ``fn``."""
    if not (torch.is_grad_enabled() and latent.requires_grad):
        values, images = fn(latent)
        return values, images.detach()
    return _Staged.apply(latent, fn)
