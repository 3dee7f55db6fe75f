"""Guide ensembles: several guides of one kind (two classifiers, two CLIPs) as one loss, so the
gradient follows what they agree on rather than one network's own blind spots."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from .base import ImageLoss, LossContext, check_image_loss

__all__ = ["GuideEnsemble"]


class GuideEnsemble(ImageLoss):
    """The members' losses (each with its own ``weight``) reduced to one per item.

    ``mean`` averages them; ``max`` takes the worst member per item, so a step only pays off
    once every guide is moved. The ensemble's readable score is the *least* of the members'
    scores: an image is accepted only when every guide accepts it. That needs members that
    score the same kind of thing (one ``score_name``); members of mixed kinds (a classifier
    and CLIP) give an ensemble without a score, whose acceptance rule can then only be on
    ``loss``.

    Args:
        losses: the member losses (at least two).
        reduction: ``mean`` or ``max``.
        weight: weight of the whole term when several losses are summed.
    """

    def __init__(
        self,
        losses: list[ImageLoss],
        reduction: Literal["mean", "max"] = "mean",
        weight: float = 1.0,
    ) -> None:
        super().__init__(weight)
        if len(losses) < 2:
            raise ValueError(f"`losses` must hold at least two guides, got {len(losses)}")
        for i, loss in enumerate(losses):
            check_image_loss(f"losses[{i}]", loss)
        if reduction not in ("mean", "max"):
            raise ValueError(f"`reduction` must be 'mean' or 'max', got {reduction!r}")
        self.members = nn.ModuleList(losses)
        self.reduction = reduction
        names = {loss.score_name for loss in losses}
        self._score_name = names.pop() if len(names) == 1 else None

    @property
    def score_name(self) -> str | None:  # type: ignore[override]
        return self._score_name

    def guide_score(self, images: Tensor, ctx: LossContext) -> Tensor | None:
        """The least member score per item, or ``None`` when the members' kinds differ."""
        if self._score_name is None:
            return None
        scores = [loss.guide_score(images, ctx).float() for loss in self.members]
        return torch.stack(scores).min(0).values

    def forward(self, images: Tensor, ctx: LossContext) -> Tensor:
        per = torch.stack([loss.weight * loss(images, ctx).float() for loss in self.members])
        return per.mean(0) if self.reduction == "mean" else per.max(0).values
