"""Recipe: the Shapes-64 text-to-image model, a ``CLIPTextModel`` + ε-prediction
``UNet2DConditionModel`` on VAE latents, exported as a ``StableDiffusionPipeline`` directory.

The runs behind the shipped settings, and what each option did: ``docs/shapes64.md``.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ...hub import resolve
from ..dataset import scene_from_record
from ..world import caption
from .base import MAX_TOKENS, Recipe
from .latent_cache import encode_latents
from .t2i_terms import CfgConsistency, UncondDistill

__all__ = ["TextToImageRecipe"]


class TextToImageRecipe(Recipe):
    """SD-1 noise schedule (1000 steps, scaled_linear 0.00085 → 0.012); caption dropout;
    captions re-drawn from the world's grammar each time a scene is seen; EMA weights exported.

    Args:
        vae_dir: the trained VAE (``pkg:shapes64/sd/vae``).
        text_encoder: an open_clip model config (JSON) and weights file whose text tower becomes
            the pipeline's ``CLIPTextModel`` (frozen, as SD-1's, unless ``text_lr`` is set);
            ``None`` trains a ``text_width`` × ``text_layers`` text encoder jointly instead.
        text_lr: fine-tune that text tower at this learning rate (> 0); ``None`` keeps it frozen.
        pooled_text_heads: heads of diffusers' ``TextTimeEmbedding`` (an attention-pooled prompt
            added to the time embedding); must divide the text width; ``None`` leaves it out.
        block_out_channels, layers_per_block, text_width, text_layers: model sizes.
        attention_heads: heads per UNet level (diffusers' ``attention_head_dim``).
        attention_levels: per UNet level, whether it has (self + cross) attention; default every
            level but the lowest. The mid block always attends.
        caption_dropout: probability of the empty prompt.
        ema_decay: decay of the exported exponential moving average.
        snr_gamma: Min-SNR-γ weighting (Hang et al. 2023, eq. 5 for ε: ``min(SNR_t, γ) /
            SNR_t``); ``None`` for the plain ε MSE.
        snr_floor: with ``snr_gamma``, also clamp SNR_t from below (``clamp(SNR_t, floor, γ) /
            SNR_t``), in (0, snr_gamma); ``None`` leaves Min-SNR-γ.
        latent_cache: safetensors file reused for the VAE latents while the VAE and the scenes
            are the same; ``None`` encodes every time.
        cfg_consistency: the guidance-consistency term (:class:`CfgConsistency` or its fields
            as a mapping), or ``None``.
        uncond_distill: the unconditional-distillation term (:class:`UncondDistill` or its
            fields as a mapping), or ``None``.
        compile_unet: run the UNet's training forward through ``torch.compile``.
        lr, export_dir: optimiser and output.
    """

    def __init__(
        self,
        vae_dir: str = "pkg:shapes64/sd/vae",
        text_encoder: tuple[str, str] | None = None,
        text_lr: float | None = None,
        pooled_text_heads: int | None = None,
        block_out_channels: tuple[int, ...] = (32, 64, 128),
        layers_per_block: int = 1,
        attention_heads: int | tuple[int, ...] = 8,
        attention_levels: tuple[bool, ...] | None = None,
        text_width: int = 64,
        text_layers: int = 2,
        caption_dropout: float = 0.1,
        ema_decay: float = 0.999,
        snr_gamma: float | None = None,
        snr_floor: float | None = None,
        latent_cache: str | None = None,
        cfg_consistency: CfgConsistency | dict | None = None,
        uncond_distill: UncondDistill | dict | None = None,
        compile_unet: bool = False,
        lr: float = 5e-4,
        export_dir: str = "pkg:shapes64/sd",
    ) -> None:
        super().__init__(lr, export_dir)
        from diffusers import AutoencoderKL, DDPMScheduler

        # A mapping (a YAML block read by hand) becomes the settings object it describes.
        if isinstance(cfg_consistency, dict):
            cfg_consistency = CfgConsistency(**cfg_consistency)
        if isinstance(uncond_distill, dict):
            uncond_distill = UncondDistill(**uncond_distill)

        if text_lr is not None and (text_encoder is None or text_lr <= 0):
            raise ValueError(
                f"`text_lr` needs `text_encoder` and must be > 0, got {text_lr} with "
                f"text_encoder={text_encoder}"
            )
        if snr_gamma is not None and snr_gamma <= 0:
            raise ValueError(f"`snr_gamma` must be > 0 or null, got {snr_gamma}")
        if snr_floor is not None and (snr_gamma is None or not 0 < snr_floor < snr_gamma):
            raise ValueError(
                f"`snr_floor` needs `snr_gamma` and must be in (0, snr_gamma), got {snr_floor} "
                f"with snr_gamma={snr_gamma}"
            )
        if cfg_consistency is not None and not caption_dropout > 0:
            raise ValueError(
                f"`cfg_consistency` needs `caption_dropout` > 0, got {caption_dropout}"
            )
        self.vae = AutoencoderKL.from_pretrained(resolve(vae_dir), torch_dtype=torch.float32)
        self.vae.requires_grad_(False).eval()
        self.text_lr = text_lr
        self.frozen_text = text_encoder is not None and text_lr is None
        self.text = _text_encoder(text_encoder, text_lr, text_width, text_layers)
        self.tokenizer = _tokenizer()
        self.unet = _unet(
            block_out_channels,
            layers_per_block,
            attention_heads,
            attention_levels,
            self.text.config.hidden_size,
            pooled_text_heads,
        )
        self.noise_scheduler = DDPMScheduler(
            num_train_timesteps=1000,
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
        )
        self.ema: list[Tensor] | None = None
        self.ema_decay, self.caption_dropout = ema_decay, caption_dropout
        self.snr_gamma, self.snr_floor = snr_gamma, snr_floor
        self.latent_cache = None if latent_cache is None else Path(latent_cache)
        self.compile_unet = compile_unet
        self.cfg_consistency = cfg_consistency
        self.uncond_distill = uncond_distill
        self._unet_forward = None  # a compiled function, so the UNet is not registered twice
        self._latents: Tensor | None = None

    def trainable(self):
        return list(self.unet.parameters()) + (
            [] if self.frozen_text else list(self.text.parameters())
        )

    def param_groups(self) -> list[dict]:
        if self.text_lr is None:
            return super().param_groups()
        return [
            {"params": list(self.unet.parameters())},
            {"params": list(self.text.parameters()), "lr": self.text_lr},
        ]

    def train(self, mode: bool = True):
        super().train(mode)
        self.vae.eval()
        if self.frozen_text:
            self.text.eval()
        return self

    @torch.no_grad()
    def on_fit_start(self) -> None:
        images = self.trainer.datamodule.images
        self._latents = encode_latents(self.vae, images, self.latent_cache, self.device)
        # channels_last convolutions are ~10 % faster on CPU (oneDNN; scripts/profile_t2i.py).
        self.unet.to(memory_format=torch.channels_last)
        if self.compile_unet:
            self._unet_forward = torch.compile(self.unet.forward)
        if self.ema is None:
            self.ema = [p.detach().clone() for p in self.trainable()]
        else:  # restored from a checkpoint: match the parameters' memory format
            self.ema = [
                torch.empty_like(p).copy_(e)
                for p, e in zip(self.trainable(), self.ema, strict=True)
            ]

    def captions(self, indices: list[int], step: int) -> list[str]:
        rng = np.random.default_rng([step, 7])
        out = []
        for j in indices:
            out.append("" if rng.random() < self.caption_dropout else self.caption_of(j, step))
        return out

    def caption_of(self, j: int, step: int) -> str:
        """Scene ``j``'s caption as drawn at ``step`` (the same draw whether dropped or not)."""
        return caption(scene_from_record(self.records[j]), np.random.default_rng([j, step]))

    def encode_text(self, texts: list[str]) -> Tensor:
        ids = self.tokenizer(
            texts, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt"
        ).input_ids.to(self.device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen_text):
            return self.text(ids)[0]

    def training_step(self, batch, _):
        idx = batch[1].tolist()
        z0 = self._latents[batch[1].cpu()].to(self.device).float()
        noise = torch.randn_like(z0)
        t = torch.randint(0, 1000, (len(idx),), device=self.device)
        zt = self.noise_scheduler.add_noise(z0, noise, t)
        texts = self.captions(idx, self.global_step)
        cond = self.encode_text(texts)
        train = torch.is_grad_enabled()
        # Extra rows appended to the same UNet call: the guidance-consistency items with their
        # caption, then the distillation slots with the empty prompt.
        pick = self.cfg_consistency.rows(texts, t) if self.cfg_consistency and train else []
        if pick:
            true = [self.caption_of(idx[i], self.global_step) for i in pick]
            zt, t = torch.cat([zt, zt[pick]]), torch.cat([t, t[pick]])
            cond = torch.cat([cond, self.encode_text(true)])
        slots, keep = [], None
        if self.uncond_distill is not None and train:
            slots, keep = self.uncond_distill.rows(texts, t[: len(idx)])
            zt, t = torch.cat([zt, zt[slots]]), torch.cat([t, t[slots]])
            cond = torch.cat([cond, self.encode_text([""] * len(slots))])
        zt = zt.contiguous(memory_format=torch.channels_last)
        pred = (self._unet_forward or self.unet)(zt, t, encoder_hidden_states=cond).sample
        n, m = len(idx), len(idx) + len(pick)
        w = self.loss_weights(t)
        loss = (((pred[:n] - noise) ** 2).mean(dim=(1, 2, 3)) * w[:n]).mean()
        self.log("train/loss", loss, prog_bar=True)
        if pick:
            # 1.-2. ε̃ = ε_∅ + s·(ε_c − ε_∅), CFG at the sampler's scale s; 3. its ε MSE.
            guided = pred[pick] + self.cfg_consistency.scale * (pred[n:m] - pred[pick])
            reg = (((guided - noise[pick]) ** 2).mean(dim=(1, 2, 3)) * w[n:m]).sum() / n
            self.log("train/cfg_consistency", reg)
            loss = loss + self.cfg_consistency.weight * reg
        if slots:
            # ε_∅ → sg(ε_c), unweighted: the sampler multiplies an ε gap alike at every t.
            gap = ((pred[m:] - pred[slots].detach()) ** 2).mean(dim=(1, 2, 3))
            reg = (gap * keep).sum() / len(slots)
            self.log("train/uncond_distill", reg)
            loss = loss + self.uncond_distill.weight * reg
        return loss

    def loss_weights(self, t: Tensor) -> Tensor:
        """Per-item weight of the ε MSE at timesteps ``t`` (``snr_gamma``, ``snr_floor``)."""
        if self.snr_gamma is None:
            return torch.ones(len(t), device=t.device)
        abar = self.noise_scheduler.alphas_cumprod.to(t.device)[t]
        snr = abar / (1 - abar)
        return snr.clamp(min=self.snr_floor, max=self.snr_gamma) / snr

    def validation_step(self, batch, _):
        with torch.no_grad():
            loss = self.training_step(batch, 0)
        self.log("val/loss", loss)

    @torch.no_grad()
    def on_train_batch_end(self, *args) -> None:
        decay = min(self.ema_decay, (1 + self.global_step) / (10 + self.global_step))
        torch._foreach_mul_(self.ema, decay)
        torch._foreach_add_(self.ema, [p.detach() for p in self.trainable()], alpha=1 - decay)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ema"] = self.ema

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.ema = checkpoint.get("ema")

    @torch.no_grad()
    def export(self) -> None:
        from diffusers import StableDiffusionPipeline

        from ...sampling.schedule import sd1_scheduler

        unet, text = copy.deepcopy(self.unet), copy.deepcopy(self.text)
        trained = list(unet.parameters()) + ([] if self.frozen_text else list(text.parameters()))
        for e, p in zip(self.ema, trained, strict=True):
            p.copy_(e)
        pipe = StableDiffusionPipeline(
            vae=copy.deepcopy(self.vae).half(),
            # float32: transformers loads a text encoder in its saved dtype, and a plain
            # `StableDiffusionPipeline.from_pretrained(dir)` must match the float32 UNet.
            text_encoder=text.float(),
            tokenizer=self.tokenizer,
            unet=unet.to(torch.float16, memory_format=torch.contiguous_format),
            scheduler=sd1_scheduler(),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.save_pretrained(self.export_dir, safe_serialization=True)


def _text_encoder(
    spec: tuple[str, str] | None, text_lr: float | None, width: int, layers: int
) -> torch.nn.Module:
    """CLIP's text tower as a ``CLIPTextModel`` (trainable only with ``text_lr``), or a fresh
    ``width`` × ``layers`` one."""
    from transformers import CLIPTextConfig, CLIPTextModel

    if spec is None:
        config = CLIPTextConfig(
            hidden_size=width,
            intermediate_size=2 * width,
            num_attention_heads=4,
            num_hidden_layers=layers,
            vocab_size=49408,
            max_position_embeddings=MAX_TOKENS,
            projection_dim=width,
        )
        return CLIPTextModel(config)
    from ...losses.clip_models import ClipModel, ClipSpec
    from ...models.clip_text import clip_text_model

    clip = ClipModel(ClipSpec(*spec), key="text_encoder")
    text = clip_text_model(clip.model.float()).requires_grad_(text_lr is not None)
    if text.config.max_position_embeddings < MAX_TOKENS:
        raise ValueError(
            f"`text_encoder`: context {text.config.max_position_embeddings} is shorter than the "
            f"{MAX_TOKENS} tokens captions use"
        )
    return text


def _tokenizer():
    from ...models.tokenizer import build_clip_tokenizer

    return build_clip_tokenizer(tempfile.mkdtemp(), model_max_length=MAX_TOKENS)


def _unet(
    block_out_channels: tuple[int, ...],
    layers_per_block: int,
    attention_heads: int | tuple[int, ...],
    attention_levels: tuple[bool, ...] | None,
    width: int,
    pooled_text_heads: int | None,
):
    """The 16×16×4 ε-prediction UNet; cross-attention only at ``attention_levels``."""
    from diffusers import UNet2DConditionModel

    n = len(block_out_channels)
    levels = [True] * (n - 1) + [False] if attention_levels is None else list(attention_levels)
    if len(levels) != n:
        raise ValueError(
            f"`attention_levels` needs one entry per level of `block_out_channels` ({n}), got "
            f"{len(levels)}"
        )
    pooled = {}
    if pooled_text_heads is not None:
        if pooled_text_heads <= 0 or width % pooled_text_heads:
            raise ValueError(
                f"`pooled_text_heads` must divide the text width {width}, got {pooled_text_heads}"
            )
        pooled = {"addition_embed_type": "text", "addition_embed_type_num_heads": pooled_text_heads}
    heads = attention_heads if isinstance(attention_heads, int) else tuple(attention_heads)
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block,
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in levels),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(levels)),
        cross_attention_dim=width,
        attention_head_dim=heads,
        norm_num_groups=32,
        **pooled,
    )
