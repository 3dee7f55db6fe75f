"""Tiny random components for tests and CPU benchmarks (no downloads)."""

from __future__ import annotations

import torch

__all__ = [
    "build_tiny_aesthetic_head",
    "build_tiny_classifier",
    "build_tiny_clip",
    "build_tiny_sd",
    "build_tiny_sdxl",
    "sd15_unet",
    "tiny_text_condition",
    "tiny_unet",
]


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


def build_tiny_sd(path, seed: int = 0):
    """Save a tiny random Stable Diffusion pipeline (16×16 images, 8×8×4 latents) to ``path``.

    It has every part of a real SD-1.x directory (``model_index.json``, ``vae/``,
    ``text_encoder/``, ``tokenizer/``, ``unet/``, ``scheduler/``) in safetensors, so it loads by
    path through exactly the loaders real checkpoints use.
    """
    from pathlib import Path

    from diffusers import AutoencoderKL, StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    from .models.tokenizer import build_clip_tokenizer
    from .sampling.schedule import sd1_scheduler

    path = Path(path)
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
        sample_size=16,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=16,
            intermediate_size=32,
            num_attention_heads=2,
            num_hidden_layers=2,
            vocab_size=49408,
            max_position_embeddings=77,
            projection_dim=16,
        )
    )
    tokenizer = build_clip_tokenizer(path / "_tokenizer_src")
    scheduler = sd1_scheduler()
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        unet=tiny_unet(seed),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    import shutil

    shutil.rmtree(path / "_tokenizer_src", ignore_errors=True)
    return path


def build_tiny_sdxl(path, seed: int = 0):
    """Save a tiny random SDXL pipeline (16×16 images): two text encoders (the second with a
    projection), a UNet with ``text_time`` added conditioning, the SD noise schedule."""
    from pathlib import Path

    from diffusers import AutoencoderKL, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from .models.tokenizer import build_clip_tokenizer
    from .sampling.schedule import sd1_scheduler

    path = Path(path)
    torch.manual_seed(seed)
    text_cfg = dict(
        hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=2,
        vocab_size=49408, max_position_embeddings=77, projection_dim=16,
    )  # fmt: skip
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=16, norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16), layers_per_block=1, force_upcast=True,
    )  # fmt: skip
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
        layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
        attention_head_dim=(2, 4), use_linear_projection=True, norm_num_groups=4,
        addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=16 + 6 * 8,
    )  # fmt: skip
    tokenizer = build_clip_tokenizer(path / "_tokenizer_src")
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(CLIPTextConfig(**text_cfg)),
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**text_cfg)),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet.eval(),
        scheduler=sd1_scheduler(),
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    import shutil

    shutil.rmtree(path / "_tokenizer_src", ignore_errors=True)
    return path


TINY_CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 16, "layers": 1, "width": 32, "patch_size": 4, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def build_tiny_clip(directory, name: str = "tiny-clip", seed: int = 0):
    """Write ``<name>.json`` (an open_clip model config) and ``<name>.safetensors`` (random)."""
    import json
    from pathlib import Path

    import open_clip

    from .utils.weights import save_weights

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg = directory / f"{name}.json"
    cfg.write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(str(cfg))
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    weights = directory / f"{name}.safetensors"
    save_weights(model.state_dict(), weights)
    return cfg, weights


def build_tiny_classifier(path, num_classes: int = 5, model_name: str = "resnet10t", seed: int = 0):
    """Save a random timm classifier's weights as safetensors."""
    import timm

    from .utils.weights import save_weights

    torch.manual_seed(seed)
    model = timm.create_model(model_name, pretrained=False, num_classes=num_classes)
    save_weights(model.state_dict(), path)
    return path


def build_tiny_aesthetic_head(path, dim: int = 16, seed: int = 0):
    """Save a random linear aesthetic head (``weight``/``bias``) as safetensors."""
    from .utils.weights import save_weights

    g = torch.Generator().manual_seed(seed)
    save_weights({"weight": torch.randn(1, dim, generator=g), "bias": torch.full((1,), 5.0)}, path)
    return path
