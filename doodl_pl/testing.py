"""Tiny random components for tests and CPU benchmarks (no downloads)."""

from __future__ import annotations

import torch

__all__ = ["tiny_text_condition", "tiny_unet", "sd15_unet"]


def tiny_unet(seed: int = 0, cross_attention_dim: int = 16, dtype=torch.float32):
    """A randomly initialised ``UNet2DConditionModel`` with cross-attention, 4 latent channels."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    return unet.to(dtype).eval()


def sd15_unet(dtype=torch.float16):
    """A Stable-Diffusion-1.5-architecture UNet (860M parameters) with random weights."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768,
        attention_head_dim=8,
    )
    return unet.to(dtype).eval()


def tiny_text_condition(
    batch: int,
    dim: int = 16,
    length: int = 5,
    scale: float = 7.5,
    seed: int = 0,
    dtype=torch.float32,
):
    """Random prompt and null embeddings wrapped in a :class:`TextCondition`."""
    from .models.condition import TextCondition

    g = torch.Generator().manual_seed(seed)
    embeds = torch.randn(batch, length, dim, generator=g).to(dtype)
    null = torch.randn(1, length, dim, generator=g).to(dtype)
    return TextCondition(embeds, null, scale)
