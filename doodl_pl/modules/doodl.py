"""DOODL: optimise each item's initial latent pair through the whole sampling chain."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from ..callbacks import PerturbLatents, RenormalizeLatents, TieLatents
from ..data.datamodule import Batch, DoodlDataModule
from ..engines.base import GradientEngine
from ..engines.reversible import ReversibleEngine
from ..engines.staged import staged
from ..losses.noise_prior import chi_norm_nll
from ..optim.doodl_sgd import DoodlSGD
from .base import GenerationModule
from .iterates import IterateLog
from .latents import LatentBank
from .ledger import ItemLedger

__all__ = ["DoodlModule", "LatentBank"]


class DoodlModule(GenerationModule):
    """Direct Optimization Of Diffusion Latents (Wallace et al. 2023).

    One ``training_step`` is one optimisation step for the current batch of items: sampling
    with the configured chain (EDICT or BDIA) and engine, VAE decode of the chain's final
    images (EDICT's x_0 and y_0, BDIA's z_0), the loss summed over them (the *objective*, with
    cuts redrawn each step), and the optimizer's update of (x_T, y_T). Perturbation, tying and
    renormalisation run as callbacks right after the update.

    Every iterate's main image is also *scored* the way the final image is: the same loss with
    one fixed draw of cuts per item. ``history`` holds these scores (iterate 0 is the vanilla
    image), so they compare like with like, and the best one is what ``keep_best`` outputs.

    Args:
        engine: gradient engine (default ``ReversibleEngine``).
        optimizer: optimizer factory over the latent pair (default ``DoodlSGD()``, λ = 0.5).
        opt_steps: m, optimisation steps per item.
        tie: average x and y gradients and latents (generation only; never for edits).
        perturb_std: std of the Gaussian perturbation after each update (0 disables).
        renormalize: renormalise each latent to its initial norm (generation only).
        prior: weight of the noise prior (:func:`~doodl_pl.losses.chi_norm_nll`, ReNO's χ-norm
            term) added to each generated item's objective, the mean over x_T and y_T; the soft
            alternative to ``renormalize`` (set that to false with it). 0: off.
        init_candidates: k, the best-of-k start: each generated item first samples k candidates
            (the item's seed and k − 1 derived ones, as best-of-N does), scores them and
            optimises from the best one; 1 starts from the item's own noise. Costs k
            generations per item; edits always start from their inversion.
        candidate_batch: candidates of the best-of-k start generated together (as best-of-N's).
        keep_best: output the iterate with the lowest score, the starting image included, so
            the output is never worse than vanilla under the loss; ``false`` outputs the last
            iterate, as the paper does.
        step_schedule: ``constant`` (the paper), or ``cosine``: the optimizer's step size and
            element-wise bound (``lr``, ``clip``) fall from their set values at step 0 to
            ``final_step`` times them at step m − 1, on a half cosine.
        final_step: the last step's fraction of the first, in (0, 1] (``cosine`` only).
        sequential_decode: decode and score the chain's final latents one at a time, each
            one's backward run at once (:func:`~doodl_pl.engines.staged.staged`): the step's
            peak holds one image's decoder and guide graphs, not all of them (EDICT: half);
            the gradient is unchanged. A memory lever for large images.
        **kwargs: see :class:`GenerationModule`.

    Attributes:
        history: per item of the current batch, the score of every iterate so far.
        objective: per item, the optimised objective at every step so far.
        iterates: the current batch's bookkeeping behind both, with each item's best iterate,
            failure and drift (:class:`~doodl_pl.modules.iterates.IterateLog`).
        ledger: the current batch's per-item stopping: items still in the chain, those that
            left early, each item's UNet calls (:class:`~doodl_pl.modules.ledger.ItemLedger`).
        last_images, final_images: see :class:`GenerationModule`; ``final_images`` are the
            outputs (the best iterates under ``keep_best``).
    """

    method = "doodl"

    def __init__(
        self,
        *args: Any,
        engine: GradientEngine | None = None,
        optimizer: Callable[[Iterable], Optimizer] | None = None,
        opt_steps: int = 50,
        tie: bool = True,
        perturb_std: float = 1e-4,
        renormalize: bool = True,
        prior: float = 0.0,
        init_candidates: int = 1,
        candidate_batch: int = 8,
        keep_best: bool = True,
        step_schedule: Literal["constant", "cosine"] = "constant",
        final_step: float = 0.1,
        sequential_decode: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if opt_steps < 1:
            raise ValueError(f"`opt_steps` must be >= 1, got {opt_steps}")
        if init_candidates < 1:
            raise ValueError(f"`init_candidates` must be >= 1, got {init_candidates}")
        if candidate_batch < 1:
            raise ValueError(f"`candidate_batch` must be >= 1, got {candidate_batch}")
        if perturb_std < 0:
            raise ValueError(f"`perturb_std` must be >= 0, got {perturb_std}")
        if not prior >= 0:
            raise ValueError(f"`prior` must be >= 0, got {prior}")
        if not self.losses:
            raise ValueError("DOODL needs a `loss`")
        if step_schedule not in ("constant", "cosine"):
            raise ValueError(
                f"`step_schedule` must be 'constant' or 'cosine', got {step_schedule!r}"
            )
        if not 0 < final_step <= 1:
            raise ValueError(f"`final_step` must be in (0, 1], got {final_step}")
        self.step_schedule, self.final_step = step_schedule, final_step
        self.engine = engine or ReversibleEngine()
        self.optimizer_factory = optimizer
        self.opt_steps = opt_steps
        self.tie, self.perturb_std, self.renormalize = tie, perturb_std, renormalize
        self.prior = prior
        self.sequential_decode = sequential_decode
        self.keep_best = keep_best
        self.init_candidates, self.candidate_batch = init_candidates, candidate_batch
        self.start_candidates: list[int] = []
        self.latents: LatentBank | None = None
        self.objective: list[list[float]] = []
        self.iterates: IterateLog | None = None
        self.ledger: ItemLedger | None = None
        # Per-rank latents are private: DDP must neither broadcast nor average them.
        self._ddp_params_and_buffers_to_ignore = ["latents.x", "latents.y"]
        # DDP refuses a module without trainable parameters; this one only keeps ranks in step.
        self.ddp_anchor = nn.Parameter(torch.zeros(()))

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self.latents is None:
            data = self.trainer.datamodule
            capacity = data.batch_size if isinstance(data, DoodlDataModule) else 1
            self.latents = LatentBank(capacity, self.backbone.latent_shape(), self.state_dtype)

    @property
    def latent_bank(self) -> LatentBank | None:
        return self.latents

    @property
    def batch_repeats(self) -> int:
        """m: every batch is one optimisation step m times."""
        return self.opt_steps

    def configure_optimizers(self) -> Optimizer:
        groups = [{"params": [self.latents.x, self.latents.y], "pair": True}]
        if self.optimizer_factory is None:
            return DoodlSGD(groups)
        return self.optimizer_factory(groups)

    def step_factor(self, step: int) -> float:
        """The step-size multiplier of optimisation step ``step`` (0-based) under the schedule."""
        if self.step_schedule == "constant" or self.opt_steps == 1:
            return 1.0
        frac = step / (self.opt_steps - 1)
        return self.final_step + (1 - self.final_step) * 0.5 * (1 + math.cos(math.pi * frac))

    def _schedule_step(self, step: int) -> None:
        factor = self.step_factor(step)
        for group in self.trainer.optimizers[0].param_groups:
            base = group.setdefault("base", {k: group.get(k) for k in ("lr", "clip")})
            for key, value in base.items():
                if value is not None:
                    group[key] = value * factor

    def configure_callbacks(self) -> list:
        own = [PerturbLatents(self.perturb_std), TieLatents(), RenormalizeLatents()]
        return super().configure_callbacks() + own

    # -- one batch ----------------------------------------------------------------------------
    @torch.no_grad()
    def best_of_k_start(
        self, items: list[dict[str, Any]], x: Tensor, y: Tensor, skip: Tensor
    ) -> tuple[Tensor, Tensor, list[int]]:
        """Replace each generated item's (x_T, y_T) by its best of ``init_candidates`` noises,
        sampled ``candidate_batch`` at a time; items where ``skip`` is set (edits, pads) keep
        their own start. Under ``accept`` a draw that meets it finishes the item (the hybrid:
        draw until accepted or k draws, then optimise the best)."""
        chosen = [0] * len(items)
        if self.init_candidates == 1:
            return x, y, chosen
        for i, item in enumerate(items):
            if bool(skip[i]):
                continue
            best = self.best_candidate(item, self.init_candidates, self.candidate_batch)
            chosen[i] = best.index
            x[i], y[i] = best.noise, best.noise
            self.ledger.charge([i])
            if best.accepted:
                self.ledger.finish_early(i, best.score, 0, best.image)
        return x, y, chosen

    def _begin(self, items: list[dict[str, Any]], pad: list[bool]) -> None:
        n = len(items)
        self.iterates = IterateLog(n, self.keep_best)
        self.history, self.objective = self.iterates.scores, self.iterates.objective
        # Under `accept`, rows leave the chain once accepted (pads never enter it).
        self.ledger = ItemLedger(self.eps, pad, bool(self.accept))
        pads = torch.tensor(pad, dtype=torch.bool)
        self._rows: list[int] = []
        x, y, edit = self.initial_latents(items)
        self.ledger.charge([i for i in range(n) if bool(edit[i])])
        skip = edit | pads.to(edit.device)
        x, y, self.start_candidates = self.best_of_k_start(items, x, y, skip)
        self._generated = ~edit
        tie = (~edit) & self.tie
        renorm = (~edit) & self.renormalize
        self.latents.load(x, y, tie, renorm, [it["seed"] for it in items])
        opt = self.trainer.optimizers[0]
        opt.state.clear()
        for group in opt.param_groups:
            if group.get("pair"):
                group["tie_mask"] = torch.cat(
                    [tie, tie.new_zeros(self.latents.x.shape[0] - len(items))]
                )
        self._cond = self.condition(items)
        self.last_images = None

    def optimised_loss(
        self, items: list[dict[str, Any]], cond, x: Tensor, y: Tensor, step: int
    ) -> tuple[Tensor, Tensor]:
        """The optimised loss per item and the decoded chain outputs (main image first), through
        the configured chain and engine, differentiable in (x, y): every final image's loss with
        the cuts of optimisation step ``step``, summed per item."""
        n = len(items)
        chain = self.chain(cond)
        outs = chain.outputs(self.engine(chain, (x, y)))
        if self.sequential_decode:

            def scored(k: int) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
                def fn(z: Tensor) -> tuple[Tensor, Tensor]:
                    images = self.backbone.decode(z)
                    return self.item_losses(images, self.loss_context(items, step, k)), images

                return fn

            parts = [staged(out, scored(k)) for k, out in enumerate(outs)]
            per_image, images = [v for v, _ in parts], torch.cat([im for _, im in parts])
        else:
            images = self.backbone.decode(torch.cat(outs))
            per_image = [
                self.item_losses(images[k * n : (k + 1) * n], self.loss_context(items, step, k))
                for k in range(len(outs))
            ]
        return sum(per_image[1:], per_image[0]), images

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        items, step = batch.items, batch.step
        t0 = time.perf_counter()
        if step == 0:
            self._begin(items, batch.pad)
        self.latents.step = step
        self._schedule_step(step)
        n = len(items)
        rows = self.ledger.rows()
        self._rows, self._ok = rows, torch.ones(n, dtype=torch.bool, device=self.device)
        if not rows:  # every item is done: no UNet call; the ranks still step together
            return 0.0 * self.ddp_anchor
        x, y = self.latents.live()
        sub, cond = items, self._cond
        if len(rows) < n:
            index = torch.tensor(rows)
            x, y = x[index], y[index]
            sub, cond = [items[i] for i in rows], self._cond.select(index)
        per_item, images = self.optimised_loss(sub, cond, x, y, step)
        if self.prior > 0:
            gen = self._generated[torch.tensor(rows, device=self._generated.device)]
            term = 0.5 * (chi_norm_nll(x) + chi_norm_nll(y))
            per_item = per_item + self.prior * gen.to(term) * term
        main = images[: len(rows)].detach()
        with torch.no_grad():
            scores = self.item_scores(main, self.score_context(sub))
            hits = self.accepted(main, sub, scores)
        ok = torch.isfinite(per_item)
        values = per_item.detach()
        for k, i in enumerate(rows):
            score = float(scores[k])
            self.iterates.observe(i, float(values[k]), score, step, main[k])
            if bool(hits[k]) and self.iterates.failed[i] is None:
                self.ledger.finish_early(i, score, step, main[k])
        if len(rows) == n:
            self.last_images = main
        else:  # one image per item: a finished item shows its accepted image
            last = torch.zeros(n, *main.shape[1:], dtype=main.dtype, device=main.device)
            for i, (_, _, image) in self.ledger.done.items():
                last[i] = image
            last[torch.tensor(rows)] = main
            self.last_images = last
        self._ok[rows] = ok
        # An item accepted at this iterate takes no step from it.
        keep = ok & ~hits.to(ok.device)
        loss = torch.where(keep, per_item, torch.zeros_like(per_item)).sum()
        if ok.any():
            self.log("train/loss", per_item[ok].mean(), prog_bar=True, batch_size=len(rows))
        self.iterates.step_seconds.append(time.perf_counter() - t0)
        return loss + 0.0 * self.ddp_anchor

    def on_after_backward(self) -> None:
        """Zero the gradient rows of items whose loss or gradient is not finite and mark them
        failed, so the other items of the batch go on exactly as if alone."""
        n = self.latents.n
        grads = [p.grad[:n] for p in (self.latents.x, self.latents.y) if p.grad is not None]
        finite = self._ok.clone()
        for g in grads:
            finite &= torch.isfinite(g.flatten(1)).all(dim=1)
        for i in torch.nonzero(~finite).flatten().tolist():
            self.iterates.fail(i, f"non-finite gradient at optimisation step {self.latents.step}")
        engine = self.engine
        if self._rows and isinstance(engine, ReversibleEngine) and engine.item_drift is not None:
            for k, d in enumerate(engine.item_drift.tolist()):  # row k of this step's chain
                self.iterates.note_drift(self._rows[k], d)
            for k in engine.drifted():
                i = self._rows[k]
                finite[i] = False
                self.iterates.fail(i, self.drift_reason(float(engine.item_drift[k])))
        if bool(finite.all()):
            return
        for g in grads:
            g[~finite] = 0

    def drift_reason(self, drift: float) -> str:
        """Why an item whose reversible backward drifted past the tolerance fails, naming the
        settings that cause drift and the way out."""
        chain = self.sampling.describe()
        compiled = ", `compile_unet` true" if self.backbone.compile_unet else ""
        return (
            f"the reversible backward rebuilt x_T with relative drift {drift:.2e} at optimisation "
            f"step {self.latents.step}, above the engine's `drift_tolerance` "
            f"{self.engine.drift_tolerance:g}: its gradient follows another trajectory than the "
            f"image ({chain}, `state_dtype` {str(self.state_dtype).removeprefix('torch.')!r}, "
            f"`num_inference_steps` {self.num_inference_steps}{compiled}). Use `gamma: 1.0`, "
            f"`state_dtype: float64` or fewer steps, or `engine: "
            f"{{class_path: doodl_pl.engines.CheckpointEngine}}`, which stores states instead of "
            f"rebuilding them."
        )

    def on_train_batch_end(self, outputs, batch: Batch, batch_idx: int) -> None:
        self.ledger.charge(self._rows)
        if batch.last:
            self._finish(batch)

    @torch.no_grad()
    def _finish(self, batch: Batch) -> None:
        items = batch.items
        x, y = self.latents.live()
        rows = self.ledger.rows()
        images = final = None
        if len(rows) == len(items):
            images, final = self.evaluate(self.generate(x, y, self._cond), items)
        elif rows:  # only items still in the chain are generated again
            index = torch.tensor(rows)
            sub = [items[i] for i in rows]
            images, final = self.evaluate(
                self.generate(x[index], y[index], self._cond.select(index)), sub
            )
        self.ledger.charge(rows)
        spent = [list(c) for c in self.ledger.spent]
        cost = self.batch_cost(len(items))
        where = {i: k for k, i in enumerate(rows)}
        if images is None and not self.ledger.done:  # a rank holding only padding
            self.final_images = None
            return
        like = images[0] if images is not None else next(iter(self.ledger.done.values()))[2]
        outputs = torch.zeros(len(items), *like.shape, dtype=like.dtype, device=like.device)
        for i, item in enumerate(items):
            if batch.pad[i]:
                continue
            extra: dict[str, Any] = {}
            if i in self.ledger.done:
                end, at, outputs[i] = self.ledger.done[i]
                chosen = "accepted"
            else:
                k = where[i]
                end, at, chosen, outputs[i] = self.iterates.final(
                    i, float(final[k]), self.opt_steps, images[k]
                )
            if self.accept:  # items leave at different steps: each pays for its own
                forwards, vjps = spent[i]
                extra = {
                    "unet_calls": forwards + vjps, "unet_forwards": forwards, "unet_vjps": vjps,
                    "steps_taken": len(self.objective[i]),
                }  # fmt: skip
            self.record(
                item,
                outputs[i],
                self.history[i],
                end,
                cost,
                self.iterates.failed[i],
                objective=self.objective[i],
                output=chosen,
                output_step=at,
                init_candidates=self.init_candidates,
                step_schedule=self.step_schedule,
                init_seed=self.candidate_seed(item["seed"], self.start_candidates[i]),
                opt_steps=self.opt_steps,
                sec_per_step=self.iterates.sec_per_step,
                max_drift=self.iterates.drift[i],
                **extra,
            )
        self.final_images = outputs
