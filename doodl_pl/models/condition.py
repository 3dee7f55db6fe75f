"""Conditioning passed through ``eps(x, t, cond)`` for text-conditioned models."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

__all__ = ["TextCondition"]


@dataclass
class TextCondition:
    """Prompt embeddings for classifier-free guidance.

    Attributes:
        embeds: ``(B, L, D)`` prompt embeddings.
        null_embeds: ``(B, L, D)`` or ``(1, L, D)`` embeddings of the null (or negative) prompt.
        guidance_scale: CFG scale s in ε = ε_∅ + s·(ε_c − ε_∅); 1 disables the null branch.
    """

    embeds: Tensor
    null_embeds: Tensor | None = None
    guidance_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.guidance_scale < 0:
            raise ValueError(f"`guidance_scale` must be >= 0, got {self.guidance_scale}")
        if self.guidance_scale != 1.0 and self.null_embeds is None:
            raise ValueError("`null_embeds` is required when `guidance_scale` != 1")

    def select(self, index: Tensor | slice) -> TextCondition:
        """The condition restricted to some batch items."""
        null = self.null_embeds
        if null is not None and null.shape[0] != 1:
            null = null[index]
        return TextCondition(self.embeds[index], null, self.guidance_scale)
