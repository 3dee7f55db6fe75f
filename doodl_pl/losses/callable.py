"""Any differentiable ``images → loss`` function, named by import path."""

from __future__ import annotations

import importlib

from torch import Tensor

from .base import ImageLoss, LossContext

__all__ = ["CallableLoss", "import_object"]


def import_object(path: str, key: str):
    """Import ``package.module.name`` (or ``package.module:name``)."""
    module, _, name = path.replace(":", ".").rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"`{key}` = {path!r} cannot be imported: {err}") from err


class CallableLoss(ImageLoss):
    """Wrap ``fn(images) → (B,)`` or a scalar (then shared by the batch).

    Args:
        function: import path, e.g. ``mypkg.losses.redness``.
        weight: weight when several losses are summed.
    """

    def __init__(self, function: str, weight: float = 1.0) -> None:
        super().__init__(weight)
        self.fn = import_object(function, "function")
        self.function = function

    def forward(self, images: Tensor, ctx: LossContext) -> Tensor:
        out = self.fn(images)
        if out.dim() == 0:
            out = out.expand(images.shape[0]) / images.shape[0]
        return out.reshape(images.shape[0])
