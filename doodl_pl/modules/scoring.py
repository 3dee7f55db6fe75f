"""Scoring images: the optimised loss's context, the fixed scoring context, guide scores and the
acceptance rule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..losses.base import ImageLoss, LossContext
from ..utils.seeding import STREAM_CROPS, STREAM_SCORE, item_generator

__all__ = ["Scoring"]


class Scoring:
    """How every method scores images (a mixin of :class:`GenerationModule`: it reads
    ``backbone``, ``losses``, ``accept`` and ``device``)."""

    def loss_context(self, items: list[dict[str, Any]], step: int, image: int = 0) -> LossContext:
        """The context of the optimised loss: cuts drawn anew per (item, step, image)."""
        gens = [item_generator(it["seed"], STREAM_CROPS, step, image) for it in items]
        return LossContext(_fields(items), gens)

    def score_context(self, items: list[dict[str, Any]]) -> LossContext:
        """The context every method *scores* images with: one fixed draw of cuts per item."""
        gens = [item_generator(it["seed"], STREAM_SCORE) for it in items]
        return LossContext(_fields(items), gens)

    def item_losses(self, images: Tensor, ctx: LossContext) -> Tensor:
        """Weighted sum of all losses, per item."""
        return self._weighted(images, lambda loss: loss(images, ctx))

    @torch.no_grad()
    def item_scores(self, images: Tensor, ctx: LossContext) -> Tensor:
        """Weighted sum of every loss's :meth:`~doodl_pl.losses.ImageLoss.selection_loss`, per
        item: what the methods compare images by (best iterate, best draw); lower is better."""
        return self._weighted(images, lambda loss: loss.selection_loss(images, ctx))

    def _weighted(self, images: Tensor, per_loss: Callable[[ImageLoss], Tensor]) -> Tensor:
        total = images.new_zeros(images.shape[0], dtype=torch.float32)
        for loss in self.losses:
            total = total + loss.weight * per_loss(loss).float()
        return total

    @torch.no_grad()
    def evaluate(self, latents: Tensor, items) -> tuple[Tensor, Tensor]:
        """Decode final latents and score them with :meth:`score_context` (no graph)."""
        images = self.backbone.decode(latents)
        if not self.losses:
            return images, torch.full((len(items),), float("nan"))
        return images, self.item_scores(images, self.score_context(items))

    @property
    def guide_score_names(self) -> list[str]:
        """Names of the guide scores every record carries (``guide_<name>``), one per loss."""
        return [loss.score_name for loss in self.losses if loss.score_name]

    @torch.no_grad()
    def guide_scores(self, image: Tensor, item: dict[str, Any]) -> dict[str, float]:
        """Each loss's own readable score of one output image (e.g. CLIP score)."""
        ctx = self.score_context([item])
        out = {}
        for loss in self.losses:
            if loss.score_name:
                value = loss.guide_score(image[None].to(self.device), ctx)
                out[f"guide_{loss.score_name}"] = float(value[0])
        return out

    def accepted(self, images: Tensor, items: list[dict[str, Any]], losses: Tensor) -> Tensor:
        """Per image, whether :attr:`accept` holds (guide scores with the items' own
        :meth:`score_context`; ``losses`` their scores from :meth:`evaluate`)."""
        return self.accept(images.to(self.device), self.score_context(items), losses)


def _fields(items: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The batch's per-item fields, one list per key (what a loss reads from its context)."""
    return {k: [it.get(k) for it in items] for k in items[0]} if items else {}
