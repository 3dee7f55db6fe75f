"""Per-item bookkeeping of one DOODL batch: every iterate's score, the best one, failures, drift."""

from __future__ import annotations

import math

from torch import Tensor

__all__ = ["IterateLog"]


class IterateLog:
    """What DOODL remembers of each item of the current batch while it optimises.

    Args:
        n: items in the batch (padding included).
        keep_best: remember each item's best-scoring iterate (its image too).

    Attributes:
        scores: per item, the score of every iterate so far (iterate 0 is the vanilla image).
        objective: per item, the optimised objective at every step so far.
        failed: per item, the first reason it failed, or ``None``.
        drift: per item, the largest relative drift of its reversible backward so far (``None``
            before the first; a NaN, once seen, stays).
        step_seconds: wall-clock seconds of each optimisation step.
    """

    def __init__(self, n: int, keep_best: bool) -> None:
        self.keep_best = keep_best
        self.scores: list[list[float]] = [[] for _ in range(n)]
        self.objective: list[list[float]] = [[] for _ in range(n)]
        self.failed: list[str | None] = [None] * n
        self.drift: list[float | None] = [None] * n
        self.step_seconds: list[float] = []
        self._best: list[tuple[float, int, Tensor | None]] = [(math.inf, -1, None)] * n

    def observe(self, i: int, objective: float, score: float, step: int, image: Tensor) -> None:
        """Record item ``i``'s iterate of optimisation step ``step``; a non-finite objective
        fails the item."""
        self.objective[i].append(objective)
        self.scores[i].append(score)
        if not math.isfinite(objective):
            self.fail(i, f"non-finite loss ({objective}) at optimisation step {step}")
        self._remember(i, score, step, image)

    def fail(self, i: int, reason: str) -> None:
        """Mark item ``i`` failed; the first reason is the one kept."""
        if self.failed[i] is None:
            self.failed[i] = reason

    def note_drift(self, i: int, drift: float) -> None:
        prev = self.drift[i]
        if prev is None or (math.isfinite(prev) and not drift <= prev):  # NaN sticks
            self.drift[i] = drift

    def final(
        self, i: int, score: float, step: int, image: Tensor
    ) -> tuple[float, int, str, Tensor]:
        """Record item ``i``'s final image (after the last step) and return its output:
        ``(score, iterate, "last" | "best", image)``, the best iterate under ``keep_best``."""
        self.scores[i].append(score)
        self._remember(i, score, step, image)
        best_score, at, best_image = self._best[i]
        if self.keep_best and best_image is not None:
            return best_score, at, "last" if at == step else "best", best_image
        return score, step, "last", image

    @property
    def sec_per_step(self) -> float:
        return sum(self.step_seconds) / max(1, len(self.step_seconds))

    def _remember(self, i: int, score: float, step: int, image: Tensor) -> None:
        if self.keep_best and math.isfinite(score) and score < self._best[i][0]:
            self._best[i] = (score, step, image.clone())
