"""The loss interface: images in [0, 1] and the batch's per-item fields → one loss per item."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["ImageLoss", "LossContext", "check_image_loss"]


@dataclass
class LossContext:
    """What a loss may read besides the images.

    Attributes:
        batch: per-item fields from the data (``prompt``, ``class_index``, ``reference_images``,
            ``aesthetic_target``, ...), each a list of length B.
        generators: one ``torch.Generator`` per item, seeded from the item's seed and the
            optimisation step, so random crops do not depend on batch composition or rank.
    """

    batch: dict[str, list[Any]] = field(default_factory=dict)
    generators: list[torch.Generator] | None = None

    def generator(self, i: int) -> torch.Generator | None:
        return None if self.generators is None else self.generators[i]

    def field(self, name: str, i: int, default: Any = None) -> Any:
        values = self.batch.get(name)
        if values is None:
            return default
        value = values[i]
        return default if value is None else value


class ImageLoss(nn.Module):
    """Base class: ``forward(images (B, 3, H, W) in [0, 1], ctx) → (B,)`` per-item losses.

    Args:
        weight: multiplies this loss when several are summed.
    """

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = float(weight)

    #: name of :meth:`guide_score` in manifests and run metrics; ``None``: the loss has none.
    score_name: str | None = None

    def forward(self, images: Tensor, ctx: LossContext) -> Tensor:
        raise NotImplementedError

    def selection_loss(self, images: Tensor, ctx: LossContext) -> Tensor:
        """What the methods compare images by (best iterate, best draw), per item, lower is
        better; the loss itself unless a loss says otherwise (``Verified(select="both")``)."""
        return self(images, ctx)

    def guide_score(self, images: Tensor, ctx: LossContext) -> Tensor | None:
        """The guide's own readable score per item (higher is better), or ``None``."""
        return None


def check_image_loss(name: str, value: object) -> None:
    """Raise ``TypeError`` naming the argument ``name`` unless ``value`` is an :class:`ImageLoss`
    (the losses that wrap others: ``EOT``, ``GuideEnsemble``, ``Verified``)."""
    if not isinstance(value, ImageLoss):
        raise TypeError(f"`{name}` must be an ImageLoss, got {type(value).__name__}")
