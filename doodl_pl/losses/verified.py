"""A guide with an independent verifier: one network steers, a second one must also accept.

A step that finds a guide's blind spot (a direction that raises its score and not the image's
content) often fools networks like it too, but less often a network of another family that
was never differentiated during the search. The verifier only reads: it adds nothing to the
gradient, and the readable score (what ``accept`` and the records use) is the lesser of the
two, so an image is accepted only when both agree (issue 25: hacking).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from .base import ImageLoss, LossContext, check_image_loss

__all__ = ["Verified"]


class Verified(ImageLoss):
    """``loss`` steers; its readable score is the least of ``loss``'s and ``verifier``'s.

    Args:
        loss: the guide that is optimised (its own ``weight`` still applies).
        verifier: a loss of the same score kind (e.g. two classifiers' ``class_prob``), read
            without gradient and never optimised.
        weight: weight of the whole term when several losses are summed.
        select: what the methods compare images by (a DOODL run's best iterate, best-of-N's
            best draw): ``loss``, the steering loss alone; or ``both``, the steering loss plus
            the verifier's (each with its weight), so the image both networks rate best wins.

    Raises:
        ValueError: when the two have no score or scores of different kinds.
    """

    def __init__(
        self,
        loss: ImageLoss,
        verifier: ImageLoss,
        weight: float = 1.0,
        select: Literal["loss", "both"] = "loss",
    ) -> None:
        super().__init__(weight)
        if select not in ("loss", "both"):
            raise ValueError(f"`select` must be 'loss' or 'both', got {select!r}")
        self.select = select
        check_image_loss("loss", loss)
        check_image_loss("verifier", verifier)
        if loss.score_name is None or loss.score_name != verifier.score_name:
            raise ValueError(
                "`loss` and `verifier` must have one readable score kind, got "
                f"{loss.score_name!r} and {verifier.score_name!r}"
            )
        self.loss = loss
        self.verifier = verifier.requires_grad_(False)

    @property
    def score_name(self) -> str | None:  # type: ignore[override]
        return self.loss.score_name

    def guide_score(self, images: Tensor, ctx: LossContext) -> Tensor:
        """The lesser of the guide's and the verifier's scores, per item."""
        with torch.no_grad():
            checked = self.verifier.guide_score(images.detach(), ctx).float()
        return torch.minimum(self.loss.guide_score(images, ctx).float(), checked)

    def forward(self, images: Tensor, ctx: LossContext) -> Tensor:
        return self.loss.weight * self.loss(images, ctx)

    def selection_loss(self, images: Tensor, ctx: LossContext) -> Tensor:
        """The steering loss, plus the verifier's under ``select="both"``."""
        own = self.forward(images, ctx)
        if self.select == "loss":
            return own
        with torch.no_grad():
            return own + self.verifier.weight * self.verifier(images.detach(), ctx)
