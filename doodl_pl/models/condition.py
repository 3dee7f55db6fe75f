"""Conditioning passed through ``eps(x, t, cond)`` for text-conditioned models."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["TextCondition"]


@dataclass
class TextCondition:
    """Prompt embeddings for classifier-free guidance.

    Attributes:
        embeds: ``(B, L, D)`` prompt embeddings.
        null_embeds: ``(B, L, D)`` or ``(1, L, D)`` embeddings of the null (or negative) prompt.
        guidance_scale: CFG scale s in ε = ε_∅ + s·(ε_c − ε_∅); 1 disables the null branch.
        pooled, null_pooled: ``(B, P)`` / ``(B or 1, P)`` pooled text embeddings (SDXL).
        time_ids: ``(B or 1, 6)`` SDXL micro-conditioning (original size, crop, target size).
    """

    embeds: Tensor
    null_embeds: Tensor | None = None
    guidance_scale: float = 1.0
    pooled: Tensor | None = None
    null_pooled: Tensor | None = None
    time_ids: Tensor | None = None

    def __post_init__(self) -> None:
        if self.guidance_scale < 0:
            raise ValueError(f"`guidance_scale` must be >= 0, got {self.guidance_scale}")
        if self.guidance_scale != 1.0 and self.null_embeds is None:
            raise ValueError("`null_embeds` is required when `guidance_scale` != 1")

    def select(self, index: Tensor | slice) -> TextCondition:
        """The condition restricted to some batch items."""

        def part(t: Tensor | None) -> Tensor | None:
            return t if t is None or t.shape[0] == 1 else t[index]

        return TextCondition(
            self.embeds[index], part(self.null_embeds), self.guidance_scale,
            part(self.pooled), part(self.null_pooled), part(self.time_ids),
        )  # fmt: skip

    def unet_kwargs(self, batch: int, device, dtype, cfg: bool) -> dict:
        """Extra UNet keyword arguments (SDXL's ``added_cond_kwargs``) for ``batch`` latents, or
        with ``cfg`` for the null-then-prompt batch of 2·``batch`` that guidance runs."""
        if self.pooled is None:
            return {}
        pooled = self.pooled.to(device, dtype).expand(batch, -1)
        time_ids = self.time_ids.to(device, dtype).expand(batch, -1)
        if cfg:
            pooled = torch.cat([self.null_pooled.to(device, dtype).expand(batch, -1), pooled])
            time_ids = torch.cat([time_ids, time_ids])
        return {"added_cond_kwargs": {"text_embeds": pooled, "time_ids": time_ids}}
