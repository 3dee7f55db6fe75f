"""A term that keeps an edit's content: a classifier reads the edit as it reads the photo."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.images import load_image
from .base import LossContext
from .classifier import ClassifierLoss

__all__ = ["ClassifierKeepLoss"]


class ClassifierKeepLoss(ClassifierLoss):
    """KL(p(photo) ‖ p(edit)) of a timm classifier's class distribution, per item.

    An edit guided by another loss (e.g. :class:`~doodl_pl.losses.AestheticLoss`) drifts toward
    what its guide likes; this term holds what the classifier reads in the item's photo (for a
    shape classifier: its shape). It is 0 when the edit is read as the photo is.

    Args:
        model_name, checkpoint_path, num_classes, pretrained, input_size, weight, dtype,
        checkpointing: as in :class:`~doodl_pl.losses.ClassifierLoss`.
        item_field: the item field that holds the image(s) to keep: ``image`` (the photo an edit
            starts from) or ``reference_images`` (a personalization item's references; their
            mean class distribution).
        temperature: softens both distributions (> 1 keeps the runner-up classes' shares too).
    """

    score_name = "class_kept"

    def __init__(
        self,
        model_name: str = "resnet50",
        checkpoint_path: str | None = None,
        num_classes: int = 1000,
        item_field: str = "image",
        temperature: float = 1.0,
        pretrained: bool = False,
        input_size: int | None = None,
        weight: float = 1.0,
        dtype: str = "float32",
        checkpointing: bool = False,
    ) -> None:
        if not temperature > 0:
            raise ValueError(f"`temperature` must be > 0, got {temperature}")
        super().__init__(
            model_name,
            checkpoint_path,
            num_classes,
            target=None,
            pretrained=pretrained,
            input_size=input_size,
            weight=weight,
            dtype=dtype,
            checkpointing=checkpointing,
        )
        self.item_field, self.temperature = item_field, float(temperature)
        self._cache: dict[str, Tensor] = {}

    @torch.no_grad()
    def _photo_log_probs(self, path: str) -> Tensor:
        if path not in self._cache:
            photo = load_image(path, where=self.item_field)[None].to(self.mean.device)
            self._cache[path] = F.log_softmax(self.logits(photo)[0] / self.temperature, -1)
        return self._cache[path]

    def _photos(self, n: int, ctx: LossContext) -> Tensor:
        fields = [ctx.field(self.item_field, i) for i in range(n)]
        paths = [[f] if isinstance(f, str) else list(f or []) for f in fields]
        missing = [i for i, p in enumerate(paths) if not p or not all(p)]
        if missing:
            raise ValueError(
                f"ClassifierKeepLoss needs each item's `{self.item_field}` (an image path or a "
                f"list of them); items {missing} have none"
            )
        # Several images (e.g. a personalization item's references): their mean distribution.
        return torch.stack(
            [
                torch.logsumexp(torch.stack([self._photo_log_probs(q) for q in p]), 0)
                - math.log(len(p))
                for p in paths
            ]
        )

    def forward(self, images: Tensor, ctx: LossContext) -> Tensor:
        photo = self._photos(images.shape[0], ctx)
        edit = F.log_softmax(self.logits(images) / self.temperature, -1)
        return (photo.exp() * (photo - edit)).sum(-1)

    def guide_score(self, images: Tensor, ctx: LossContext) -> Tensor:
        """The edit's probability of the class the classifier reads in the photo."""
        top = self._photos(images.shape[0], ctx).argmax(-1, keepdim=True)
        return self.logits(images).softmax(-1).gather(1, top)[:, 0]
