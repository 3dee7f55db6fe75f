"""Stable Diffusion XL: two text encoders, pooled text embeddings and size/crop time ids."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..models.condition import TextCondition
from .stable_diffusion import StableDiffusion

__all__ = ["StableDiffusionXL"]


class StableDiffusionXL(StableDiffusion):
    """Loads a diffusers SDXL directory or hub id (e.g. ``stabilityai/stable-diffusion-xl-base-1.0``).

    The conditioning follows ``StableDiffusionXLPipeline``: each prompt goes through both text
    encoders, their penultimate hidden states are concatenated, the second encoder's projected
    pooled embedding and the time ids (original size, crop corner (0, 0), target size = the image
    size) go to the UNet as ``added_cond_kwargs``; an item's empty negative prompt is all zeros
    when the pipeline's ``force_zeros_for_empty_prompt`` is set (the SDXL default), whatever the
    other items of its batch have. The VAE stays in
    float32 when its config asks for ``force_upcast`` (SDXL's VAE overflows in float16), unless
    ``vae_dtype`` says otherwise.

    Args:
        pretrained, dtype, vae_dtype, scheduler_overrides, revision, local_files_only,
            compile_unet, attention, unet_checkpointing, vae_checkpointing,
            offload_text_encoders: see :class:`StableDiffusion`.
    """

    def _vae_dtype(self, path, vae_dtype: str | None, dtype: str, kw: dict) -> torch.dtype:
        if vae_dtype is None:
            from diffusers import AutoencoderKL

            config = AutoencoderKL.load_config(path, subfolder="vae", **kw)
            if config.get("force_upcast", False):
                return torch.float32
        return super()._vae_dtype(path, vae_dtype, dtype, kw)

    def _load_text(self, path, torch_dtype: torch.dtype, kw: dict) -> dict[str, Any]:
        from diffusers import DiffusionPipeline
        from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

        sub = dict(kw, torch_dtype=torch_dtype, use_safetensors=True)
        index = DiffusionPipeline.load_config(path, **kw)  # model_index.json
        self.force_zeros_for_empty_prompt = bool(index.get("force_zeros_for_empty_prompt", True))
        return {
            "text_encoder": CLIPTextModel.from_pretrained(path, subfolder="text_encoder", **sub),
            "text_encoder_2": CLIPTextModelWithProjection.from_pretrained(
                path, subfolder="text_encoder_2", **sub
            ),
            "tokenizer": CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", **kw),
            "tokenizer_2": CLIPTokenizer.from_pretrained(path, subfolder="tokenizer_2", **kw),
        }

    @torch.no_grad()
    def encode_prompts_xl(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        """``(B, L, D1 + D2)`` penultimate hidden states of both encoders, and ``(B, P)`` pooled."""
        states, pooled = [], None
        for tok, enc in (
            (self.tokenizer, self.text_encoder),
            (self.tokenizer_2, self.text_encoder_2),
        ):
            ids = tok(
                list(prompts),
                padding="max_length",
                max_length=tok.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids.to(enc.device)
            out = enc(ids, output_hidden_states=True)
            states.append(out.hidden_states[-2])
            pooled = out[0]  # the second encoder's projected text embedding
        at = dict(device=self.unet.device, dtype=self.unet.dtype)
        return torch.cat(states, dim=-1).to(**at), pooled.to(**at)

    def encode_prompts(self, prompts: list[str]) -> Tensor:
        return self.encode_prompts_xl(prompts)[0]

    def time_ids(self) -> Tensor:
        """(original h, w, crop top, left, target h, w) for an un-cropped image of our size."""
        size = self.image_size
        return torch.tensor([[size, size, 0, 0, size, size]], dtype=self.unet.dtype)

    def condition(
        self, prompts: list[str], negative: list[str] | None, guidance_scale: float
    ) -> TextCondition:
        embeds, pooled = self.encode_prompts_xl(prompts)
        null = null_pooled = None
        if guidance_scale != 1.0:
            negative = [n or "" for n in (negative or [""] * len(prompts))]
            null, null_pooled = self.encode_prompts_xl(negative)
            if self.force_zeros_for_empty_prompt:
                # Decided per item: an item's conditioning must not depend on its batch-mates.
                empty = torch.tensor([not n for n in negative], device=null.device)
                null = torch.where(empty[:, None, None], torch.zeros_like(null), null)
                null_pooled = torch.where(
                    empty[:, None], torch.zeros_like(null_pooled), null_pooled
                )
        return TextCondition(
            embeds, null, guidance_scale, pooled, null_pooled, self.time_ids().to(embeds.device)
        )
