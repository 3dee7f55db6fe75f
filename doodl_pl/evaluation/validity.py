"""Validity: does a held-out classifier (not the guide) see the item's target class?"""

from __future__ import annotations

import torch

from ..losses.classifier import ClassifierLoss
from .run import RunOutputs

__all__ = ["Validity"]


class Validity:
    """Top-1 accuracy of a timm classifier on each item's ``class_index``.

    Args:
        model_name: timm architecture.
        checkpoint_path: its weights (local file, safetensors or a plain state dict).
        num_classes: classifier outputs.
        input_size: side the images are resized to (default: the model's pretrained config).
    """

    def __init__(
        self,
        model_name: str,
        checkpoint_path: str | None,
        num_classes: int,
        input_size: int | None = None,
        batch: int = 64,
    ) -> None:
        self.classifier = ClassifierLoss(
            model_name=model_name,
            checkpoint_path=checkpoint_path,
            num_classes=num_classes,
            input_size=input_size,
        ).eval()
        self.batch = batch

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Predicted class per image, ``images`` float ``(N, 3, H, W)`` in [0, 1]."""
        return (
            torch.cat(
                [
                    self.classifier.logits(images[i : i + self.batch]).argmax(1)
                    for i in range(0, len(images), self.batch)
                ]
            )
            if len(images)
            else torch.zeros(0, dtype=torch.long)
        )

    def __call__(self, run: RunOutputs) -> dict[str, list[float]]:
        targets = [r["item"].get("class_index") for r in run.rows]
        if all(t is None for t in targets):
            return {}
        pred = self.predict(run.tensor()).tolist()
        return {
            "validity": [
                float("nan") if t is None else float(p == t)
                for p, t in zip(pred, targets, strict=True)
            ]
        }
