"""What every generation method shares: backbone, losses, sampling, seeds and outputs."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from torch import Tensor

from ..backbones.stable_diffusion import StableDiffusion
from ..callbacks import ItemProgressBar, RunMetrics
from ..data.datamodule import Batch, DoodlDataModule
from ..data.images import load_image
from ..losses.base import ImageLoss, LossContext
from ..models.condition import TextCondition
from ..models.counting import CountingEps
from ..outputs import OutputWriter, jsonable, metadata_fields
from ..sampling.bdia import BdiaChain, check_gamma
from ..sampling.chain import ChainBase
from ..sampling.ddim import DdimChain
from ..sampling.edict import EdictChain, check_mix
from ..sampling.schedule import Schedule
from ..utils.seeding import (
    STREAM_CANDIDATE,
    STREAM_CROPS,
    STREAM_ENCODE,
    STREAM_SCORE,
    item_generator,
    mix_seed,
)
from .acceptance import Acceptance
from .candidates import Candidates
from .latents import LatentBank

__all__ = ["GenerationModule"]


class GenerationModule(pl.LightningModule):
    """Base class for DOODL and its baselines.

    Args:
        backbone: the diffusion model (VAE, text encoder, UNet, scheduler).
        loss: one loss or a list, summed with their ``weight``; optional for vanilla generation.
        num_inference_steps: T, the sampling steps.
        guidance_scale: classifier-free guidance scale.
        sampler: the reversible chain: ``edict`` (two ε evaluations per step) or ``bdia``
            (BDIA-DDIM, one ε evaluation per step); :class:`VanillaModule` also takes ``ddim``
            (generation only: it cannot invert the photo of an edit item).
        mix: EDICT mixing weight p, in (0, 1].
        gamma: BDIA's γ (weight of the older latent), in (0, 1].
        strength: fraction of the schedule executed (editing strength), in (0, 1].
        state_dtype: dtype of the latent-state arithmetic.
        inversion_prompt: prompt for inverting real images; ``None`` uses the item prompt.
        inversion_guidance_scale: CFG scale during inversion.
        encode_sample: encode real images with a posterior sample (seeded) instead of the mean.
        output_dir: where ``images/`` and ``manifest.jsonl`` go.
        retry_failed: rerun items whose manifest status is ``failed``.
        accept: when an image is good enough, per item: ``{score name: least value}`` over the
            losses' readable scores (e.g. ``{class_prob: 0.9}``) and ``loss``: most value of the
            summed loss; every entry must hold. Methods that search stop there (best-of-N
            becomes rejection sampling, DOODL stops optimising that item) and every manifest
            line says whether its image is ``accepted``.

    Attributes (what callbacks and the CLI read):
        writer: the output folder (``writer.root``).
        batch_repeats: training steps per batch (DOODL's m; 1 here).
        history: per item of the current batch, its scores so far (DOODL: one per iterate).
        last_images: the current batch's main images at the latest step ``(n, 3, H, W)``.
        final_images: the current batch's output images, once it is finished.
        run_records: every manifest line this run wrote.
        failed_ids: ids of the items this run marked failed.
        run_config: the run's config as YAML (stamped into each PNG), when run by the CLI.
    """

    batch_repeats: int = 1
    method = "generate"
    samplers: tuple[str, ...] = ("edict", "bdia")

    def __init__(
        self,
        backbone: StableDiffusion,
        loss: ImageLoss | list[ImageLoss] | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        sampler: str = "edict",
        mix: float = 0.93,
        gamma: float = 1.0,
        strength: float = 1.0,
        state_dtype: str = "float64",
        inversion_prompt: str | None = "",
        inversion_guidance_scale: float = 1.0,
        encode_sample: bool = False,
        output_dir: str = "outputs/run",
        retry_failed: bool = False,
        accept: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        if num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be >= 1, got {num_inference_steps}")
        for name, value in (
            ("guidance_scale", guidance_scale),
            ("inversion_guidance_scale", inversion_guidance_scale),
        ):
            if value < 0:
                raise ValueError(f"`{name}` must be >= 0, got {value}")
        if not 0 < strength <= 1:
            raise ValueError(f"`strength` must be in (0, 1], got {strength}")
        if sampler not in self.samplers:
            raise ValueError(
                f"`sampler` must be one of {', '.join(map(repr, self.samplers))}, got {sampler!r}"
            )
        if state_dtype not in ("float64", "float32"):
            raise ValueError(f"`state_dtype` must be 'float64' or 'float32', got {state_dtype!r}")
        self.backbone = backbone
        losses = [] if loss is None else (list(loss) if isinstance(loss, (list, tuple)) else [loss])
        self.losses = torch.nn.ModuleList(losses)
        self.eps = CountingEps(backbone.eps_model)
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = float(guidance_scale)
        self.sampler = sampler
        self.mix = check_mix(mix)
        self.gamma = check_gamma(gamma)
        self.strength = strength
        self.state_dtype = getattr(torch, state_dtype)
        self.inversion_prompt = inversion_prompt
        self.inversion_guidance_scale = inversion_guidance_scale
        self.encode_sample = encode_sample
        self.writer = OutputWriter(output_dir)
        self.retry_failed = retry_failed
        self.accept = Acceptance(accept, self.losses)
        self.run_config: str | None = None
        self.failed_ids: set[str] = set()
        self.run_records: list[dict[str, Any]] = []
        self.history: list[list[float]] = []
        self.last_images: Tensor | None = None
        self.final_images: Tensor | None = None
        self._schedule: Schedule | None = None
        self._t0 = 0.0

    def configure_callbacks(self) -> list[pl.Callback]:
        own: list[pl.Callback] = [RunMetrics()]
        bar = self.trainer.progress_bar_callback
        if type(bar) in (TQDMProgressBar, RichProgressBar):  # Lightning's default counts steps
            self.trainer.callbacks.remove(bar)
            own.append(ItemProgressBar())
        return own

    def train(self, mode: bool = True):
        """Lightning switches everything to train mode at fit start; frozen models must stay in
        eval mode (no dropout), or generation would not be deterministic."""
        super().train(mode)
        self.backbone.eval()
        self.losses.eval()
        return self

    # -- bookkeeping --------------------------------------------------------------------------
    def finished_ids(self) -> set[str]:
        return self.writer.finished_ids(include_failed=not self.retry_failed)

    @property
    def latent_bank(self) -> LatentBank | None:
        """The latents this method optimises (what the latent callbacks act on); ``None``:
        it optimises none."""
        return None

    @property
    def inverts(self) -> bool:
        """Whether the configured sampler can invert real images (edits need it)."""
        return self.sampler in ("edict", "bdia")

    def setup(self, stage: str) -> None:
        self.writer.prepare()
        trainer = self.trainer
        data = trainer.datamodule
        if not self.inverts and isinstance(data, DoodlDataModule):
            edits = [it.id for it in data.all_items if it.image]
            if edits:
                raise ValueError(self._no_inversion(edits[0]))
        if trainer.world_size > 1 and trainer._accelerator_connector.use_distributed_sampler:
            raise ValueError(
                "the Trainer's `use_distributed_sampler` must be false: doodl_pl shards items itself "
                "(a distributed sampler would shuffle and duplicate them)"
            )

    @property
    def schedule(self) -> Schedule:
        if self._schedule is None:
            self._schedule = Schedule.from_scheduler(
                self.backbone.scheduler, self.num_inference_steps, self.strength
            )
        return self._schedule

    def chain(self, cond: TextCondition, model: Any = None) -> ChainBase:
        """The configured sampling chain over ``model`` (default: the counted ε model)."""
        model = self.eps if model is None else model
        if self.sampler == "bdia":
            return BdiaChain(model, self.schedule, cond, self.gamma, self.state_dtype)
        if self.sampler == "ddim":
            return DdimChain(model, self.schedule, cond, self.state_dtype)
        return EdictChain(model, self.schedule, cond, self.mix, self.state_dtype)

    # -- items → conditioning and initial latents -----------------------------------------------
    def condition(
        self,
        items: list[dict[str, Any]],
        scale: float | None = None,
        prompts: list[str] | None = None,
    ) -> TextCondition:
        prompts = prompts if prompts is not None else [it["prompt"] for it in items]
        negative = [it.get("negative_prompt") or "" for it in items]
        return self.backbone.condition(
            prompts, negative, self.guidance_scale if scale is None else scale
        )

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
    def generate(self, x: Tensor, y: Tensor, cond: TextCondition, eps=None) -> Tensor:
        """The main final latent of the configured chain from (x_T, y_T), over ``eps`` (default:
        the counted ε model); DDIM starts from ``x`` alone."""
        chain = self.chain(cond, eps)
        if self.sampler == "ddim":
            return chain.sample(x)
        return chain.outputs(chain.sample(x, y))[0]

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

    @torch.no_grad()
    def invert_images(self, items: list[dict[str, Any]]) -> tuple[Tensor, Tensor]:
        """Load, VAE-encode and invert the items' images through the configured chain (EDICT or
        BDIA, exactly) → untied (x_T, y_T)."""
        size = self.backbone.image_size
        images = torch.stack(
            [load_image(it["image"], size, where=f"item {it['id']!r} `image`") for it in items]
        ).to(self.device)
        latents = []
        for i, it in enumerate(items):
            g = item_generator(it["seed"], STREAM_ENCODE) if self.encode_sample else None
            latents.append(self.backbone.encode(images[i : i + 1], self.encode_sample, g))
        z0 = torch.cat(latents)
        prompts = [
            self.inversion_prompt if self.inversion_prompt is not None else it["prompt"]
            for it in items
        ]
        if not self.inverts:
            raise ValueError(self._no_inversion(items[0]["id"]))
        cond = self.condition(items, self.inversion_guidance_scale, prompts)
        return self.chain(cond).invert(z0)

    def _no_inversion(self, item_id: str) -> str:
        return (
            f"`sampler` {self.sampler!r} cannot invert a real image, and item {item_id!r} is an "
            f"edit (it has an `image`): sampling from a DDIM inversion does not give the photo "
            f"back. Use `sampler: edict` or `bdia`, which invert exactly."
        )

    def initial_latents(self, items: list[dict[str, Any]]) -> tuple[Tensor, Tensor, Tensor]:
        """(x_T, y_T, is_edit) for a batch: seeded noise, or inverted images for edit items."""
        xs = [self.noise(it["seed"]).to(self.device, self.state_dtype) for it in items]
        ys = [x.clone() for x in xs]
        edit = torch.tensor([bool(it.get("image")) for it in items], device=self.device)
        if edit.any():
            idx = [i for i, it in enumerate(items) if it.get("image")]
            xe, ye = self.invert_images([items[i] for i in idx])
            for j, i in enumerate(idx):
                xs[i], ys[i] = xe[j], ye[j]
        return torch.stack(xs), torch.stack(ys), edit

    # -- losses -------------------------------------------------------------------------------
    def loss_context(self, items: list[dict[str, Any]], step: int, image: int = 0) -> LossContext:
        """The context of the optimised loss: cuts drawn anew per (item, step, image)."""
        gens = [item_generator(it["seed"], STREAM_CROPS, step, image) for it in items]
        return LossContext(_fields(items), gens)

    def score_context(self, items: list[dict[str, Any]]) -> LossContext:
        """The context every method *scores* images with: one fixed draw of cuts per item."""
        gens = [item_generator(it["seed"], STREAM_SCORE) for it in items]
        return LossContext(_fields(items), gens)

    def item_losses(self, images: Tensor, ctx: LossContext) -> Tensor:
        """Weighted sum of all losses, per item."""
        total = images.new_zeros(images.shape[0], dtype=torch.float32)
        for loss in self.losses:
            total = total + loss.weight * loss(images, ctx).float()
        return total

    @torch.no_grad()
    def evaluate(self, latents: Tensor, items) -> tuple[Tensor, Tensor]:
        """Decode final latents and score them with :meth:`score_context` (no graph)."""
        images = self.backbone.decode(latents)
        if not self.losses:
            return images, torch.full((len(items),), float("nan"))
        return images, self.item_losses(images, self.score_context(items))

    @property
    def guide_score_names(self) -> list[str]:
        """Names of the guide scores every record carries (``guide_<name>``), one per loss."""
        return [loss.score_name for loss in self.losses if loss.score_name]

    @torch.no_grad()
    def guide_scores(self, image: Tensor, item: dict[str, Any]) -> dict[str, float]:
        """Each loss's own readable score of one output image (e.g. CLIP score)."""
        ctx = self.score_context([item])
        out = {}
        for loss in self.losses:
            if loss.score_name:
                value = loss.guide_score(image[None].to(self.device), ctx)
                out[f"guide_{loss.score_name}"] = float(value[0])
        return out

    def accepted(self, images: Tensor, items: list[dict[str, Any]], losses: Tensor) -> Tensor:
        """Per image, whether :attr:`accept` holds (guide scores with the items' own
        :meth:`score_context`; ``losses`` their scores from :meth:`evaluate`)."""
        return self.accept(images.to(self.device), self.score_context(items), losses)

    # -- outputs ------------------------------------------------------------------------------
    def batch_cost(self, n: int) -> dict[str, float]:
        """The batch's UNet calls and seconds since its first step, per item (``n`` items);
        resets the call counter for the next batch."""
        calls, vjps = self.eps.reset()
        wall = time.perf_counter() - self._t0
        return {
            "wall_s": wall / max(1, n),
            "batch_wall_s": wall,
            "unet_calls": (calls + vjps) / max(1, n),
            "unet_forwards": calls / max(1, n),
            "unet_vjps": vjps / max(1, n),
        }

    def record(
        self,
        item: dict[str, Any],
        image: Tensor | None,
        losses: list[float],
        end: float,
        cost: dict[str, float],
        failed: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Write one finished item: its PNG and ``metadata.jsonl`` line (unless it failed), then
        its ``manifest.jsonl`` line, the one record every method writes.

        Args:
            item: the item's fields.
            image: its output image ``(3, H, W)``.
            losses: its scores, the starting image's first.
            end: the output image's score.
            cost: :meth:`batch_cost` of its batch.
            failed: why it failed, if it did; a non-finite ``end`` under a loss fails it too.
            **fields: the method's own fields (e.g. ``opt_steps``, ``chosen_candidate``).

        Returns:
            The manifest line as written.
        """
        if failed is None and self.losses and not math.isfinite(end):
            failed = f"non-finite final loss ({end})"
        row = {
            "id": item["id"],
            "prompt": item.get("prompt", ""),
            "seed": item["seed"],
            "method": self.method,
            "rank": self.global_rank,
            "status": "failed" if failed else "ok",
            "loss_start": losses[0] if losses else end,
            "loss_end": end,
            "losses": losses,
            "sampler": self.sampler,
            **cost,
            **fields,
        }
        if failed:
            row["reason"] = failed
            self.failed_ids.add(item["id"])
        else:
            text = {"prompt": row["prompt"], "seed": str(item["seed"]), "id": item["id"]}
            text["method"] = self.method
            if self.run_config:
                text["config"] = self.run_config
            self.writer.write_image(item["id"], image, text)
            row.update(self.guide_scores(image, item))
            if self.accept:
                row["accepted"] = self.accept.meets(row)
        line = json.loads(json.dumps(row, default=jsonable))
        if not failed:
            self.writer.append_metadata(item["id"], metadata_fields(item, line))
        self.writer.append(line)
        self.run_records.append(line)
        return line

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        if batch.step == 0:
            self._t0 = time.perf_counter()
            self.eps.reset()


def _fields(items: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The batch's per-item fields, one list per key (what a loss reads from its context)."""
    return {k: [it.get(k) for it in items] for k in items[0]} if items else {}
