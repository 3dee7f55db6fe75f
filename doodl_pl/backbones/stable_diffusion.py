"""A Stable-Diffusion-style latent text-to-image model: VAE, text encoder, UNet, scheduler."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..hub import load_or_explain, resolve
from ..models.adapters import LatentUNetEps
from ..models.condition import TextCondition
from ..models.protocol import freeze
from ..quiet import quiet_loading
from .levers import Attention, check_attention, set_attention, set_checkpointing

__all__ = ["Dtype", "StableDiffusion"]

Dtype = Literal["float32", "float16", "bfloat16"]

EDICT_SCHEDULER = {
    "set_alpha_to_one": False,
    "steps_offset": 0,
    "timestep_spacing": "leading",
    "clip_sample": False,
}


class StableDiffusion(nn.Module):
    """Loads a diffusers Stable Diffusion directory or hub id, weights from safetensors only.

    Args:
        pretrained: local directory, hub id (e.g. ``runwayml/stable-diffusion-v1-5``) or the
            package alias ``shapes64/sd``.
        dtype: dtype of the UNet and text encoder (``float32``, ``float16``, ``bfloat16``).
        vae_dtype: dtype of the VAE; ``None`` follows ``dtype``.
        scheduler_overrides: DDIM config entries; defaults reproduce the EDICT reference
            (timesteps 980…0 at T = 50, final ᾱ = ᾱ_0). The UNet's ``prediction_type``
            (``epsilon``, ``v_prediction`` as in SD 2.x, or ``sample``) is read from the
            scheduler config and converted to ε.
        revision: hub revision.
        local_files_only: never try the network.
        compile_unet: run the UNet through ``torch.compile`` (faster steps after a first,
            slow call; measured in ``docs/benchmarks.md``).
        attention: ``sdpa`` (fused attention, diffusers' default) or ``math`` (stores each
            softmax for backward; the reference to measure the lever against).
        unet_checkpointing: recompute the UNet's block activations in each ε VJP instead of
            storing them (same gradient, about one more UNet forward per VJP).
        vae_checkpointing: likewise for the VAE decoder's blocks (the full-resolution
            activations dominate a DOODL step at 768² and 1024²).
        offload_text_encoders: keep the text encoders on the CPU in float32 (they run once per
            batch, for the conditioning); their weights then take no GPU memory.
    """

    def __init__(
        self,
        pretrained: str = "shapes64/sd",
        dtype: Dtype = "float32",
        vae_dtype: Dtype | None = None,
        scheduler_overrides: dict[str, Any] | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        compile_unet: bool = False,
        attention: Attention = "sdpa",
        unet_checkpointing: bool = False,
        vae_checkpointing: bool = False,
        offload_text_encoders: bool = False,
    ) -> None:
        super().__init__()
        check_attention(attention)  # before any loading
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

        path = resolve(pretrained)
        key = "pretrained"
        kw = dict(revision=revision, local_files_only=local_files_only)
        torch_dtype = getattr(torch, dtype)

        def load():
            sub = dict(kw, use_safetensors=True)
            vae = AutoencoderKL.from_pretrained(
                path,
                subfolder="vae",
                torch_dtype=self._vae_dtype(path, vae_dtype, dtype, kw),
                **sub,
            )
            texts = self._load_text(path, torch_dtype, kw)
            unet = UNet2DConditionModel.from_pretrained(
                path, subfolder="unet", torch_dtype=torch_dtype, **sub
            )
            sched_cfg = DDIMScheduler.load_config(path, subfolder="scheduler", **kw)
            return vae, texts, unet, sched_cfg

        with quiet_loading():
            vae, texts, unet, sched_cfg = load_or_explain(key, pretrained, load)
        for name, module in texts.items():
            if not isinstance(module, nn.Module):
                setattr(self, name, module)
            elif offload_text_encoders:  # outside the module tree: `.to(device)` leaves it
                object.__setattr__(self, name, freeze(module).float())
            else:
                setattr(self, name, freeze(module))
        overrides = dict(EDICT_SCHEDULER, **(scheduler_overrides or {}))
        self.scheduler = DDIMScheduler.from_config(sched_cfg, **overrides)
        self.vae = freeze(vae)
        self.unet = freeze(unet)
        for model in (self.unet, self.vae):
            set_attention(model, attention)
        set_checkpointing(self.unet, unet_checkpointing)
        set_checkpointing(self.vae, vae_checkpointing)
        try:
            self.eps_model = LatentUNetEps(
                self.unet,
                compile=compile_unet,
                prediction_type=self.scheduler.config.get("prediction_type", "epsilon"),
                alphas_cumprod=self.scheduler.alphas_cumprod,
            )
        except ValueError as err:  # the adapter names its argument; say where it came from
            raise ValueError(
                f"{pretrained}: scheduler/scheduler_config.json {err}; set "
                f"`scheduler_overrides: {{prediction_type: ...}}` to what the UNet was trained for"
            ) from None
        self.pretrained = pretrained
        self.compile_unet = compile_unet
        self.offload_text_encoders = offload_text_encoders

    def _vae_dtype(self, path, vae_dtype: str | None, dtype: str, kw: dict) -> torch.dtype:
        return getattr(torch, vae_dtype or dtype)

    def _load_text(self, path, torch_dtype: torch.dtype, kw: dict) -> dict[str, Any]:
        """The text encoder(s) and tokenizer(s), by attribute name."""
        from transformers import CLIPTextModel, CLIPTokenizer

        text = CLIPTextModel.from_pretrained(
            path, subfolder="text_encoder", torch_dtype=torch_dtype, use_safetensors=True, **kw
        )
        tok = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", **kw)
        return {"text_encoder": text, "tokenizer": tok}

    # -- shapes -------------------------------------------------------------------------------
    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def latent_shape(self) -> tuple[int, int, int]:
        size = self.unet.config.sample_size
        return (self.unet.config.in_channels, size, size)

    @property
    def image_size(self) -> int:
        return self.unet.config.sample_size * self.vae_scale

    # -- text ---------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> Tensor:
        """``(B, L, D)`` last hidden states of the text encoder, padded to the model length."""
        ids = self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.text_encoder.device)
        return self.text_encoder(ids)[0].to(self.unet.device, self.unet.dtype)

    def condition(
        self, prompts: list[str], negative: list[str] | None, guidance_scale: float
    ) -> TextCondition:
        """Prompt and null (or negative-prompt) embeddings for CFG."""
        embeds = self.encode_prompts(prompts)
        null = None
        if guidance_scale != 1.0:
            negative = negative or [""] * len(prompts)
            null = self.encode_prompts([n or "" for n in negative])
        return TextCondition(embeds, null, guidance_scale)

    # -- pixels <-> latents ---------------------------------------------------------------------
    def decode(self, latents: Tensor, clamp: bool = True) -> Tensor:
        """Latents → images in [0, 1], differentiable (clamped as in the reference code;
        ``clamp=False``: the decoder's own range, for fitting a latent to an image)."""
        z = latents.to(self.vae.dtype) / self.vae.config.scaling_factor
        image = self.vae.decode(z).sample.float() / 2 + 0.5
        return image.clamp(0, 1) if clamp else image

    @torch.no_grad()
    def encode(self, images: Tensor, sample: bool = False, generator=None) -> Tensor:
        """Images in [0, 1] → scaled latents (posterior mean, or a sample)."""
        x = (images * 2 - 1).to(device=self.vae.device, dtype=self.vae.dtype)
        dist = self.vae.encode(x).latent_dist
        z = dist.sample(generator=generator) if sample else dist.mean
        return z * self.vae.config.scaling_factor
