"""Candidates: each item's seeded noises (its own, then derived ones) and the best-of-n search
over them that best-of-N and DOODL's best-of-k start share."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..utils.seeding import STREAM_CANDIDATE, item_generator, mix_seed

__all__ = ["CandidateSearch", "Candidates"]


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


class CandidateSearch:
    """Seeded noise and the candidate search of :class:`GenerationModule` (a mixin: it reads
    ``backbone``, ``device``, ``state_dtype``, ``accept`` and calls ``generate``, ``condition``,
    ``evaluate`` and ``accepted``)."""

    def noise(self, seed: int, *stream: int) -> Tensor:
        """x_T ~ N(0, I) from the item's seed alone (CPU generator: identical on every device)."""
        g = (
            torch.Generator().manual_seed(int(seed))
            if not stream
            else item_generator(seed, *stream)
        )
        return torch.randn(self.backbone.latent_shape(), generator=g)

    def candidate_seed(self, seed: int, j: int) -> int:
        """Seed of an item's candidate ``j``: the item's own for j = 0, then derived ones."""
        return int(seed) if j == 0 else mix_seed(seed, STREAM_CANDIDATE, j)

    @torch.no_grad()
    def sample_candidates(
        self, item: dict[str, Any], js: list[int] | range
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(noise, images, scores) of an item's candidates ``js``: noise from
        :meth:`candidate_seed`, scored with the item's own :meth:`score_context`."""
        seeds = [self.candidate_seed(item["seed"], j) for j in js]
        noise = torch.stack([self.noise(s) for s in seeds]).to(self.device, self.state_dtype)
        group = [item] * len(seeds)
        images, scores = self.evaluate(
            self.generate(noise, noise.clone(), self.condition(group)), group
        )
        return noise, images, scores

    @torch.no_grad()
    def best_candidate(self, item: dict[str, Any], n: int, batch: int) -> Candidates:
        """Sample an item's candidates 0 … n − 1, ``batch`` at a time (so memory does not grow
        with n), and keep the lowest-scoring one. When every score is non-finite, candidate 0
        is kept and :attr:`Candidates.finite` is False. Under an ``accept`` rule the search
        stops after the first batch holding an accepted candidate and keeps the first such
        (rejection sampling; ``batch`` 1 draws exactly until the first accepted)."""
        best = Candidates(0, None, None, [], math.inf)
        for j0 in range(0, n, batch):
            js = list(range(j0, min(n, j0 + batch)))
            noise, images, scores = self.sample_candidates(item, js)
            best.scores.extend(float(v) for v in scores)
            hits = []
            if self.accept:  # without a rule there is nothing to score here
                hits = torch.nonzero(self.accepted(images, [item] * len(js), scores)).flatten()
            if len(hits):
                k = int(hits[0])
                best.index, best.noise, best.image = js[k], noise[k], images[k]
                best.score, best.accepted = float(scores[k]), True
                return best
            for k, j in enumerate(js):
                value = float(scores[k])
                if best.noise is None or (math.isfinite(value) and value < best.score):
                    best.index, best.noise, best.image = j, noise[k], images[k]
                    best.score = value if math.isfinite(value) else math.inf
        return best
