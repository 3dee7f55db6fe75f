"""The acceptance rule of per-item stopping: when is an image good enough?"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from ..losses.base import ImageLoss, LossContext

__all__ = ["Acceptance"]


class Acceptance:
    """``{score name: least value}`` over the losses' readable scores (``class_prob``,
    ``clip_score``, …; a ``guide_`` prefix is allowed) and ``loss``: the most the summed loss
    may be. An image is accepted when every entry holds; an empty rule accepts nothing.

    Args:
        rule: the entries, e.g. ``{"class_prob": 0.9}`` or ``{"loss": 0.2}``.
        losses: the module's losses (a named score must be one of theirs).

    Raises:
        ValueError: naming ``accept`` and the scores there are.
    """

    def __init__(self, rule: Mapping[str, float] | None, losses: Iterable[ImageLoss]) -> None:
        self.losses = [loss for loss in losses if loss.score_name]
        self.rule = {k.removeprefix("guide_"): float(v) for k, v in (rule or {}).items()}
        names = sorted(loss.score_name for loss in self.losses)
        for k in self.rule:
            if k != "loss" and k not in names:
                raise ValueError(
                    f"`accept` names {k!r}, which no loss scores; use `loss` or one of {names}"
                )

    def __bool__(self) -> bool:
        return bool(self.rule)

    @torch.no_grad()
    def __call__(self, images: Tensor, ctx: LossContext, losses: Tensor) -> Tensor:
        """Per image, whether the rule holds: guide scores taken with ``ctx`` (the items' score
        context), ``losses`` the images' summed scores."""
        ok = torch.full((images.shape[0],), bool(self.rule), dtype=torch.bool)
        for loss in self.losses:
            least = self.rule.get(loss.score_name)
            if least is not None:
                ok &= loss.guide_score(images, ctx).float().cpu() >= least
        if "loss" in self.rule:
            ok &= losses.float().cpu() <= self.rule["loss"]
        return ok

    def meets(self, row: Mapping[str, Any]) -> bool:
        """Whether a manifest line's output meets the rule (from its ``guide_<name>`` scores and
        ``loss_end``)."""
        if not self.rule:
            return False
        for k, least in self.rule.items():
            value = row.get("loss_end") if k == "loss" else row.get(f"guide_{k}")
            if value is None or not math.isfinite(value):
                return False
            if (value > least) if k == "loss" else (value < least):
                return False
        return True
