"""Baselines through the same CLI: vanilla, one-step classifier guidance, best-of-N."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..data.datamodule import Batch
from ..sampling.samplers import SAMPLERS
from .base import GenerationModule

__all__ = ["BestOfNModule", "GuidedEps", "OneStepGuidanceModule", "VanillaModule"]


class VanillaModule(GenerationModule):
    """Plain generation (EDICT, BDIA or DDIM), no guidance; the loss, if given, is only reported.

    Args:
        **kwargs: see :class:`GenerationModule`; ``sampler`` may also be ``ddim`` here.
    """

    method = "vanilla"
    samplers = tuple(SAMPLERS)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.automatic_optimization = False

    def configure_optimizers(self):
        return None

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        items = batch.items
        x, y, _ = self.initial_latents(items)
        cond = self.condition(items)
        x0 = self.generate(x, y, cond, self.guided_eps(items))
        images, losses = self.evaluate(x0, items)
        self.write_batch(batch, images, losses, [[float(v)] for v in losses])

    def guided_eps(self, items: list[dict[str, Any]]) -> GuidedEps | None:
        """The ε model generation runs on; ``None`` is the plain (counted) one."""
        return None

    def write_batch(
        self,
        batch: Batch,
        images: Tensor,
        losses: Tensor,
        history: list[list[float]],
        extra: list[dict[str, Any]] | None = None,
        failed: list[str | None] | None = None,
    ) -> None:
        """:meth:`record` every real item of the batch (``extra``: per-item method fields;
        ``failed``: per item, why it failed, if it did)."""
        cost = self.batch_cost(len(batch.items))
        self.history, self.final_images = history, images
        for i, item in enumerate(batch.items):
            if not batch.pad[i]:
                fields = extra[i] if extra else {}
                why = failed[i] if failed else None
                self.record(item, images[i], history[i], float(losses[i]), cost, why, **fields)


class GuidedEps:
    """ε̂ = ε − sqrt(1 − ᾱ_t) · s · (−∇_{x_t} L(D(x̂_0))), x̂_0 = (x_t − sqrt(1 − ᾱ_t) ε) / sqrt(ᾱ_t).

    The one-step classifier-guidance baseline: the loss sees a one-step estimate of the clean
    image at every denoising step.
    """

    def __init__(self, module: GenerationModule, items: list[dict[str, Any]], scale: float):
        self.module, self.items, self.scale = module, items, scale
        self.acp = module.backbone.scheduler.alphas_cumprod
        self.calls = 0

    def eps(self, x: Tensor, t, cond) -> Tensor:
        m = self.module
        ab = float(self.acp[int(t)])
        with torch.enable_grad():
            z = x.detach().requires_grad_(True)
            e = m.eps.eps(z, t, cond)
            x0_hat = (z - (1 - ab) ** 0.5 * e) / ab**0.5
            images = m.backbone.decode(x0_hat)
            loss = m.item_losses(images, m.loss_context(self.items, self.calls)).sum()
            (g,) = torch.autograd.grad(loss, z)
        self.calls += 1
        return (e.detach() + (1 - ab) ** 0.5 * self.scale * g.nan_to_num(0.0)).to(x.dtype)


class OneStepGuidanceModule(VanillaModule):
    """One-step classifier guidance on x̂_0 at every denoising step (the paper's baseline).

    Args:
        loss_scale: s, the guidance scale on the loss gradient.
        **kwargs: see :class:`VanillaModule`.
    """

    method = "one_step"

    def __init__(self, *args: Any, loss_scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.losses:
            raise ValueError("one-step guidance needs a `loss`")
        if loss_scale < 0:
            raise ValueError(f"`loss_scale` must be >= 0, got {loss_scale}")
        self.loss_scale = loss_scale

    def guided_eps(self, items):
        return GuidedEps(self, items, self.loss_scale)


class BestOfNModule(VanillaModule):
    """Generate N candidates per item from derived seeds and keep the lowest-loss one.

    Candidate 0 uses the item's own seed (so it equals the vanilla image); candidate j > 0 uses
    a seed derived from (seed, j). By default N matches the UNet calls per item of DOODL on the
    same sampler: with EDICT, m steps cost 2T forwards + 2T forwards + 2T VJPs each (reversible
    engine) plus a final 2T generation, i.e. (6m + 2)·T calls, and a candidate costs 2T; with
    BDIA every term halves. Either way N = 3m + 1.

    Args:
        n_candidates: N; ``None`` derives it from ``match_opt_steps``.
        match_opt_steps: the DOODL m to match.
        candidate_batch: candidates generated together.
        **kwargs: see :class:`VanillaModule`.
    """

    method = "best_of_n"

    def __init__(
        self,
        *args: Any,
        n_candidates: int | None = None,
        match_opt_steps: int = 50,
        candidate_batch: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if not self.losses:
            raise ValueError("best-of-N needs a `loss` to rank candidates")
        n = n_candidates if n_candidates is not None else 3 * match_opt_steps + 1
        if n < 1:
            raise ValueError(f"`n_candidates` must be >= 1, got {n}")
        if candidate_batch < 1:
            raise ValueError(f"`candidate_batch` must be >= 1, got {candidate_batch}")
        self.n_candidates, self.candidate_batch = n, candidate_batch

    @torch.no_grad()
    def training_step(self, batch: Batch, batch_idx: int) -> None:
        items = batch.items
        found, spent = [], []
        for item, pad in zip(items, batch.pad, strict=True):
            before = self.eps.calls
            found.append(
                None if pad else self.best_candidate(item, self.n_candidates, self.candidate_batch)
            )
            spent.append(self.eps.calls - before)  # what this item's draws cost
        shape = next((c.image.shape for c in found if c is not None), None)
        if shape is None:  # a rank holding only padding: nothing to write
            self.batch_cost(len(items))
            return
        images = torch.stack(
            [c.image if c is not None else torch.zeros(shape, device=self.device) for c in found]
        )
        losses = torch.tensor([c.score if c is not None else math.nan for c in found])
        extra = [
            {
                "n_candidates": self.n_candidates,
                "candidates_drawn": len(c.scores),
                "chosen_candidate": c.index,
                "chosen_seed": self.candidate_seed(it["seed"], c.index),
            }
            if c is not None
            else {}
            for it, c in zip(items, found, strict=True)
        ]
        if self.accept:  # items stop at different draws: each pays for its own
            for fields, calls in zip(extra, spent, strict=True):
                fields.update(unet_calls=float(calls), unet_forwards=float(calls))
        failed = [
            None
            if c is None or c.finite
            else f"all {self.n_candidates} candidates have a non-finite loss"
            for c in found
        ]
        history = [c.scores if c is not None else [] for c in found]
        self.write_batch(batch, images, losses, history, extra, failed)
