"""The text-to-image recipe's optional loss terms, as small typed settings with their own checks.

Why each exists and what it did to the shipped model: ``docs/shapes64.md`` (guidance
consistency, unconditional distillation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["CfgConsistency", "UncondDistill"]


@dataclass(frozen=True)
class _Term:
    """What both terms share: a weight, a timestep bound, and picking the batch rows they use."""

    weight: float = 1.0
    t_max: int = 700

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.weight <= 0:
            raise ValueError(f"{name} `weight` must be > 0, got {self.weight}")
        if not 0 < self.t_max <= 1000:
            raise ValueError(f"{name} `t_max` must be in (0, 1000], got {self.t_max}")

    def _eligible(self, texts: list[str], t: Tensor, captioned: bool) -> list[int]:
        """Rows whose caption is kept (``captioned``) or dropped, with t below ``t_max``."""
        return [
            i
            for i, (text, ti) in enumerate(zip(texts, t.tolist(), strict=True))
            if bool(text) == captioned and ti < self.t_max
        ]


@dataclass(frozen=True)
class CfgConsistency(_Term):
    """Guidance consistency: caption-dropped items with t < ``t_max`` also run with their
    caption, and the classifier-free-guided ε̃ = ε_∅ + s·(ε_c − ε_∅) at ``scale`` s must match
    the noise too (CFG multiplies any ε gap by s − 1).

    Args:
        weight: the term's weight, > 0.
        t_max: only timesteps below this take part, in (0, 1000].
        scale: s, the sampler's guidance scale, > 1.
    """

    weight: float = 0.25
    scale: float = 7.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.scale <= 1:
            raise ValueError(f"CfgConsistency `scale` must be > 1, got {self.scale}")

    def rows(self, texts: list[str], t: Tensor) -> list[int]:
        """Batch rows that take part: caption dropped and t below ``t_max``."""
        return self._eligible(texts, t, captioned=False)


@dataclass(frozen=True)
class UncondDistill(_Term):
    """Unconditional distillation: ``slots`` captioned items with t < ``t_max`` also run with
    the empty prompt, and that ε_∅ must match their stop-gradient ε_c (where the noisy latent
    already shows its object the caption adds nothing, so the ideal ε_∅ equals ε_c there).
    The slots are a fixed number, so the UNet call has a fixed shape (``compile_unet``).

    Args:
        weight: the term's weight, > 0.
        t_max: only timesteps below this take part, in (0, 1000].
        slots: extra rows per batch, >= 1 (padded and masked out when too few items qualify).
    """

    slots: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.slots < 1:
            raise ValueError(f"UncondDistill `slots` must be >= 1, got {self.slots}")

    def rows(self, texts: list[str], t: Tensor) -> tuple[list[int], Tensor]:
        """``slots`` batch rows (the first captioned items below ``t_max``, padded with row 0)
        and a 0/1 mask of the real ones."""
        ok = self._eligible(texts, t, captioned=True)[: self.slots]
        keep = torch.zeros(self.slots, device=t.device)
        keep[: len(ok)] = 1
        return ok + [0] * (self.slots - len(ok)), keep
