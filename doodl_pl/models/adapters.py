"""Small adapters that give diffusers UNets the ``eps(x, t, cond)`` protocol."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .condition import TextCondition
from .protocol import freeze

__all__ = ["LatentUNetEps", "PixelUNetEps"]


def _timestep(t: Tensor | int, device: torch.device) -> Tensor:
    return torch.as_tensor(t, device=device).reshape(())


class LatentUNetEps(nn.Module):
    """``UNet2DConditionModel`` → ε, with classifier-free guidance batched in one UNet call.

    Args:
        unet: a diffusers ``UNet2DConditionModel`` predicting ε.
        compile: run the UNet through ``torch.compile`` (the first calls pay for compilation).
    """

    def __init__(self, unet: nn.Module, compile: bool = False) -> None:
        super().__init__()
        self.unet = freeze(unet)
        # Kept out of the module tree so state dicts hold the UNet's weights once.
        forward = torch.compile(self.unet, dynamic=False) if compile else self.unet
        object.__setattr__(self, "_forward", forward)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def eps(self, x: Tensor, t: Tensor | int, cond: TextCondition) -> Tensor:
        dtype = self.dtype
        h = x.to(dtype)
        t = _timestep(t, x.device)
        embeds = cond.embeds.to(device=x.device, dtype=dtype)
        if cond.guidance_scale == 1.0:
            out = self._forward(h, t, encoder_hidden_states=embeds).sample
            return out.to(x.dtype)
        null = cond.null_embeds.to(device=x.device, dtype=dtype).expand_as(embeds)
        out = self._forward(
            torch.cat([h, h]), t, encoder_hidden_states=torch.cat([null, embeds])
        ).sample
        e_null, e_cond = out.chunk(2)
        return (e_null + cond.guidance_scale * (e_cond - e_null)).to(x.dtype)


class PixelUNetEps(nn.Module):
    """Unconditional (or class-conditional) pixel-space ``UNet2DModel`` → ε.

    ``cond`` is ignored unless the UNet has class embeddings, in which case it holds class labels.
    """

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = freeze(unet)

    def eps(self, x: Tensor, t: Tensor | int, cond: Any = None) -> Tensor:
        dtype = next(self.unet.parameters()).dtype
        labels = cond if isinstance(cond, Tensor) else None
        out = self.unet(x.to(dtype), _timestep(t, x.device), class_labels=labels).sample
        return out.to(x.dtype)
