"""What every generation method shares: its settings, checked; the sampler's chain and the
conditioning. Candidate noise, inversion, scoring and records are the mixins it is built from
(``candidates.py``, ``inversion.py``, ``scoring.py``, ``records.py``)."""

from __future__ import annotations

from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from torch import Tensor

from ..backbones.decoder_inversion import DecoderInversion
from ..backbones.stable_diffusion import StableDiffusion
from ..callbacks import ItemProgressBar, RunMetrics
from ..data.datamodule import DoodlDataModule
from ..losses.base import ImageLoss
from ..models.condition import TextCondition
from ..models.counting import CountingEps
from ..outputs import OutputWriter
from ..sampling.bdia import check_gamma
from ..sampling.chain import ChainBase
from ..sampling.edict import check_mix
from ..sampling.samplers import SAMPLERS, Sampler, SamplerName, make_sampler
from ..sampling.schedule import Schedule
from .acceptance import Acceptance
from .candidates import CandidateSearch
from .inversion import Inversion
from .latents import LatentBank
from .records import Records
from .scoring import Scoring

__all__ = ["GenerationModule"]


class GenerationModule(CandidateSearch, Inversion, Scoring, Records, pl.LightningModule):
    """Base class for DOODL and its baselines.

    Args:
        backbone: the diffusion model (VAE, text encoder, UNet, scheduler).
        loss: one loss or a list, summed with their ``weight``; optional for vanilla generation.
        num_inference_steps: T, the sampling steps.
        guidance_scale: classifier-free guidance scale.
        sampler: the sampling chain, a :class:`~doodl_pl.sampling.Sampler`
            (``{class_path: doodl_pl.sampling.Bdia, init_args: {gamma: 1.0}}``) or its name:
            ``edict`` (two ε evaluations per step) or ``bdia`` (BDIA-DDIM, one);
            :class:`VanillaModule` also takes ``ddim`` (generation only: it cannot invert the
            photo of an edit item).
        mix: EDICT mixing weight p, in (0, 1], for ``sampler`` given by name.
        gamma: BDIA's γ (weight of the older latent), in (0, 1], for ``sampler`` given by name.
        strength: fraction of the schedule executed (editing strength), in (0, 1].
        state_dtype: dtype of the latent-state arithmetic.
        inversion_prompt: prompt for inverting real images; ``None`` uses the item prompt.
        inversion_guidance_scale: CFG scale during inversion.
        encode_sample: encode real images with a posterior sample (seeded) instead of the mean.
        encode_refine: refine each photo's latent so that the decoder gives the photo back
            (:class:`~doodl_pl.backbones.DecoderInversion`, e.g. ``{steps: 30, lr: 0.05}``);
            ``None`` starts an edit from the encoder's latent as it is.
        output_dir: where ``images/`` and ``manifest.jsonl`` go.
        retry_failed: rerun items whose manifest status is ``failed``.
        accept: when an image is good enough, per item: ``{score name: least value}`` over the
            losses' readable scores (e.g. ``{class_prob: 0.9}``) and ``loss``: most value of the
            summed loss; every entry must hold. Methods that search stop there (best-of-N
            becomes rejection sampling, DOODL stops optimising that item) and every manifest
            line says whether its image is ``accepted``.

    Attributes (what callbacks and the CLI read):
        writer: the output folder (``writer.root``).
        batch_repeats: training steps per batch, what the DataModule repeats each batch for
            (DOODL's ``opt_steps``; 1 here).
        history: per item of the current batch, its scores so far (DOODL: one per iterate).
        last_images: the current batch's main images at the latest step ``(n, 3, H, W)``.
        final_images: the current batch's output images, once it is finished.
        run_records: every manifest line this run wrote.
        failed_ids: ids of the items this run marked failed.
        run_config: the run's config as YAML (stamped into each PNG), when run by the CLI.
    """

    method = "generate"
    # the samplers a method accepts: those that invert (an item may be an edit of a photo)
    samplers: tuple[str, ...] = tuple(n for n, c in SAMPLERS.items() if c.inverts)

    def __init__(
        self,
        backbone: StableDiffusion,
        loss: ImageLoss | list[ImageLoss] | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        sampler: SamplerName | Sampler = "edict",
        mix: float = 0.93,
        gamma: float = 1.0,
        strength: float = 1.0,
        state_dtype: Literal["float64", "float32"] = "float64",
        inversion_prompt: str | None = "",
        inversion_guidance_scale: float = 1.0,
        encode_sample: bool = False,
        encode_refine: DecoderInversion | None = None,
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
        name = sampler if isinstance(sampler, str) else sampler.name
        if name not in self.samplers:
            raise ValueError(
                f"`sampler` must be one of {', '.join(map(repr, self.samplers))}, got {sampler!r}"
            )
        sampling = make_sampler(sampler, mix=check_mix(mix), gamma=check_gamma(gamma))
        if state_dtype not in ("float64", "float32"):
            raise ValueError(f"`state_dtype` must be 'float64' or 'float32', got {state_dtype!r}")
        self.backbone = backbone
        losses = [] if loss is None else (list(loss) if isinstance(loss, (list, tuple)) else [loss])
        self.losses = torch.nn.ModuleList(losses)
        self.eps = CountingEps(backbone.eps_model)
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = float(guidance_scale)
        self.sampling = sampling
        self.sampler = sampling.name
        self.strength = strength
        self.state_dtype = getattr(torch, state_dtype)
        self.inversion_prompt = inversion_prompt
        self.inversion_guidance_scale = inversion_guidance_scale
        self.encode_sample = encode_sample
        self.encode_refine = encode_refine
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
    def finished_items(self) -> dict[str, dict[str, Any]]:
        return self.writer.finished_items(include_failed=not self.retry_failed)

    @property
    def batch_repeats(self) -> int:
        return 1

    @property
    def latent_bank(self) -> LatentBank | None:
        """The latents this method optimises (what the latent callbacks act on); ``None``:
        it optimises none."""
        return None

    @property
    def inverts(self) -> bool:
        """Whether the configured sampler can invert real images (edits need it)."""
        return self.sampling.inverts

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
        return self.sampling.chain(model, self.schedule, cond, self.state_dtype)

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

    @torch.no_grad()
    def generate(self, x: Tensor, y: Tensor, cond: TextCondition, eps=None) -> Tensor:
        """The main final latent of the configured chain from (x_T, y_T), over ``eps`` (default:
        the counted ε model); the sampler decides what it starts from (DDIM: ``x`` alone)."""
        return self.sampling.generate(self.chain(cond, eps), x, y)
