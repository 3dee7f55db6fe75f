"""The outcome of a best-of-n search over one item's candidate noises."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

__all__ = ["Candidates"]


@dataclass
class Candidates:
    """The outcome of a best-of-n search over one item's candidate noises.

    Attributes:
        index: the chosen candidate j (its seed is :meth:`GenerationModule.candidate_seed`).
        noise: its x_T; image: its decoded image ``(3, H, W)``.
        scores: every candidate's score, in order (as many as were drawn).
        score: the chosen one's score (inf when no score was finite).
        accepted: whether the chosen one meets the module's ``accept`` rule (the search stops
            at the first that does).
    """

    index: int
    noise: Tensor | None
    image: Tensor | None
    scores: list[float]
    score: float
    accepted: bool = False

    @property
    def finite(self) -> bool:
        return math.isfinite(self.score)
