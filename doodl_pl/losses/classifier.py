"""Classifier guidance on final pixels with any timm model (e.g. an FGVC checkpoint)."""

from __future__ import annotations

import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..hub import load_or_explain, resolve
from ..models.protocol import freeze
from .base import ImageLoss, LossContext
from .clip_models import guide_dtype
from .crops import resize_to

__all__ = ["ClassifierLoss"]


class ClassifierLoss(ImageLoss):
    """Cross-entropy (reference code) or BCE (paper) of a timm classifier towards a target class.

    Args:
        model_name: timm architecture name.
        checkpoint_path: local weights (safetensors, or a pickle-free ``torch.save`` file).
        num_classes: classifier outputs.
        target: fixed class index; ``None`` uses each item's ``class_index``.
        loss: ``ce`` or ``bce``.
        pretrained: use timm's pretrained weights (hub) instead of / before ``checkpoint_path``.
        input_size: override the input side from timm's data config.
        weight: weight when several losses are summed.
        dtype: the network's dtype (``float16``/``bfloat16`` halve its weights and VJP; logits
            and the loss stay float32).
        checkpointing: recompute the network's stages in the backward pass (timm's
            ``set_grad_checkpointing``; same gradient).
    """

    def __init__(
        self,
        model_name: str = "resnet50",
        checkpoint_path: str | None = None,
        num_classes: int = 1000,
        target: int | None = None,
        loss: Literal["ce", "bce"] = "ce",
        pretrained: bool = False,
        input_size: int | None = None,
        weight: float = 1.0,
        dtype: str = "float32",
        checkpointing: bool = False,
    ) -> None:
        super().__init__(weight)
        import timm
        from timm.data import resolve_data_config

        self.dtype = guide_dtype(dtype, "`dtype`")
        if loss not in ("ce", "bce"):
            raise ValueError(f"`loss` must be 'ce' or 'bce', got {loss!r}")
        path = resolve(checkpoint_path) if checkpoint_path else ""

        def load():
            return timm.create_model(
                model_name, pretrained=pretrained, num_classes=num_classes, checkpoint_path=path
            )

        self.model = freeze(load_or_explain("checkpoint_path", checkpoint_path or model_name, load))
        self.model.to(self.dtype)
        if checkpointing:
            self.model.set_grad_checkpointing(True)
        cfg = resolve_data_config({}, model=self.model)
        self.input_size = int(input_size or cfg["input_size"][-1])
        if input_size is None and checkpoint_path and not pretrained:
            # A checkpoint of one's own was often trained at another side than timm's default
            # for the architecture; read at the wrong side it guides toward nonsense, silently.
            warnings.warn(
                f"{type(self).__name__}: `input_size` is not set, so images are resized to "
                f"{self.input_size} px (timm's default for {model_name}); if "
                f"`checkpoint_path` = {checkpoint_path!r} was trained at another side, set "
                "`input_size` to it",
                stacklevel=2,
            )
        self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg["std"]).view(1, 3, 1, 1), persistent=False)
        self.num_classes, self.target, self.loss = num_classes, target, loss

    def logits(self, images: Tensor) -> Tensor:
        x = resize_to(images, self.input_size)
        return self.model(((x - self.mean) / self.std).to(self.dtype)).float()

    score_name = "class_prob"

    def guide_score(self, images: Tensor, ctx: LossContext) -> Tensor:
        """Softmax probability of each item's target class."""
        target = torch.tensor(self._targets(images.shape[0], ctx), device=images.device)
        return self.logits(images).softmax(-1).gather(1, target[:, None])[:, 0]

    def _targets(self, n: int, ctx: LossContext) -> list[int]:
        targets = []
        for i in range(n):
            t = self.target if self.target is not None else ctx.field("class_index", i)
            if t is None or not 0 <= int(t) < self.num_classes:
                raise ValueError(
                    f"ClassifierLoss needs a target class in [0, {self.num_classes}): set "
                    f"`target` or each item's `class_index` (got {t!r})"
                )
            targets.append(int(t))
        return targets

    def forward(self, images: Tensor, ctx: LossContext) -> Tensor:
        target = torch.tensor(self._targets(images.shape[0], ctx), device=images.device)
        logits = self.logits(images)
        if self.loss == "ce":
            return F.cross_entropy(logits, target, reduction="none")
        one_hot = F.one_hot(target, self.num_classes).float()
        return F.binary_cross_entropy_with_logits(logits, one_hot, reduction="none").mean(1)
