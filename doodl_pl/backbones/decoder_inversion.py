"""Decoder inversion: the latent whose decoding is the photo, not the encoder's guess of it.

An edit starts from a photo's latent, and the sampling chain gives that latent back exactly
(EDICT, BDIA), so what the edit can keep is bounded by ``decode(encode(x))``. The encoder is an
amortised approximation: a few gradient steps on the decoder's reconstruction error,
``min_z ‖D(z) − x‖²`` from ``z = E(x)``, find a latent the decoder turns into something closer to
the photo (decoder inversion by gradient descent, as in Hong et al. 2024, "On Exact Inversion of
DPM-Solvers"). On Shapes-64 it raises what the judge reads as kept after the round trip
(``docs/shapes64.md``, "Decoder inversion").
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["DecoderInversion"]


class DecoderInversion:
    """Refine encoder latents by Adam on ``Σ_items ‖decode(z) − images‖²``.

    Each item's latent moves on its own error only (summed, and Adam's steps are per element),
    so an item gets the same latent alone or in any batch.

    Args:
        steps: Adam steps; 0 keeps the encoder's latent.
        lr: Adam's step size, in the backbone's scaled latent units.
    """

    def __init__(self, steps: int = 30, lr: float = 0.05) -> None:
        if steps < 0:
            raise ValueError(f"`steps` must be >= 0, got {steps}")
        if not lr > 0:
            raise ValueError(f"`lr` must be > 0, got {lr}")
        self.steps, self.lr = int(steps), float(lr)

    def __repr__(self) -> str:
        return f"DecoderInversion(steps={self.steps}, lr={self.lr})"

    def __call__(
        self, decode: Callable[[Tensor], Tensor], images: Tensor, latents: Tensor
    ) -> Tensor:
        """``latents`` (N, C, h, w) refined so that ``decode`` (latents → images in [0, 1])
        gives ``images`` (N, 3, H, W) back more closely; detached, in ``latents``' dtype."""
        if images.shape[0] != latents.shape[0]:
            raise ValueError(
                f"`images` and `latents` must hold the same items, got {images.shape[0]} and "
                f"{latents.shape[0]}"
            )
        if not self.steps:
            return latents
        target = images.detach().float()
        z = latents.detach().float().clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=self.lr)
        with torch.enable_grad():
            for _ in range(self.steps):
                opt.zero_grad(set_to_none=True)
                err = (decode(z).float() - target).square().sum()
                err.backward()
                opt.step()
        return z.detach().to(latents.dtype)
