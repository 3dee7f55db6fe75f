"""The published architectures of SD 1.5, SD 2.1, SDXL and their guides, with random weights.

No download: the configs are public facts (each checkpoint's ``config.json``), and the parameter
counts in :data:`PARAMETERS` check them. Built on the ``meta`` device they cost nothing and give
memory and FLOP figures at a real model's size (:mod:`doodl_pl.sizing`); saved to a directory
they load through exactly the loaders real checkpoints use (the slow real-size runs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch

__all__ = [
    "BACKBONES",
    "PARAMETERS",
    "RealSize",
    "build_guides",
    "save_classifier_guide",
    "save_clip_guide",
    "save_pipeline",
]

Kind = Literal["sd15", "sd21", "sdxl"]

_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
)  # fmt: skip
_CLIP_L_TEXT = dict(
    hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
    projection_dim=768, hidden_act="quick_gelu",
)  # fmt: skip
_SD_UNET = dict(
    in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
)  # fmt: skip


@dataclass(frozen=True)
class RealSize:
    """One backbone's published architecture.

    Attributes:
        kind: ``sd15``, ``sd21`` or ``sdxl``.
        image_size: the side it was trained at (512, 768, 1024).
        unet, vae: ``UNet2DConditionModel`` / ``AutoencoderKL`` config entries.
        text: ``CLIPTextConfig`` entries of each text encoder (SDXL: two, the second projected).
        prediction_type: what the UNet predicts (SD 2.1: ``v_prediction``).
    """

    kind: Kind
    image_size: int
    unet: dict
    vae: dict
    text: tuple[dict, ...]
    prediction_type: str = "epsilon"

    @property
    def latent_size(self) -> int:
        return self.image_size // 8

    def build_unet(self):
        from diffusers import UNet2DConditionModel

        return UNet2DConditionModel(sample_size=self.latent_size, **self.unet).eval()

    def build_vae(self):
        from diffusers import AutoencoderKL

        return AutoencoderKL(sample_size=self.image_size, **self.vae).eval()

    def build_text(self) -> list:
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

        out = []
        for i, entries in enumerate(self.text):
            cls = CLIPTextModelWithProjection if self.kind == "sdxl" and i == 1 else CLIPTextModel
            out.append(
                cls(CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, **entries)).eval()
            )
        return out

    def context_dim(self) -> int:
        return int(self.unet["cross_attention_dim"])


BACKBONES: dict[str, RealSize] = {
    "sd15": RealSize(
        "sd15", 512, dict(_SD_UNET, cross_attention_dim=768, attention_head_dim=8),
        dict(_VAE, scaling_factor=0.18215), (_CLIP_L_TEXT,),
    ),
    "sd21": RealSize(
        "sd21", 768,
        dict(_SD_UNET, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
             use_linear_projection=True, upcast_attention=True),
        dict(_VAE, scaling_factor=0.18215),
        (dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
              num_hidden_layers=23, projection_dim=512, hidden_act="gelu"),),
        prediction_type="v_prediction",
    ),
    "sdxl": RealSize(
        "sdxl", 1024,
        dict(in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
             down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
             up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
             transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
             cross_attention_dim=2048, use_linear_projection=True,
             addition_embed_type="text_time", addition_time_embed_dim=256,
             projection_class_embeddings_input_dim=2816),
        dict(_VAE, scaling_factor=0.13025, force_upcast=True),
        (dict(_CLIP_L_TEXT, projection_dim=768),
         dict(hidden_size=1280, intermediate_size=5120, num_attention_heads=20,
              num_hidden_layers=32, projection_dim=1280, hidden_act="gelu")),
    ),
}  # fmt: skip

# Millions of parameters of the published checkpoints (UNet, VAE, text encoders in order).
PARAMETERS: dict[str, dict[str, float]] = {
    "sd15": {"unet": 859.5, "vae": 83.7, "text": 123.1},
    "sd21": {"unet": 865.9, "vae": 83.7, "text": 340.4},
    "sdxl": {"unet": 2567.5, "vae": 83.7, "text": 123.1 + 694.7},
}

GUIDE_CLIP = "ViT-L-14"  # the paper's CLIP guide; open_clip ships its config
GUIDE_CLASSIFIER = "resnet50"


def build_guides(clip: bool = True, classifier: bool = False, device: str = "cpu") -> dict:
    """Random-weight guides at their published size, built on ``device``: open_clip ViT-L/14
    (224-px input) and a timm ResNet-50 (1000 classes)."""
    import logging

    out = {}
    # open_clip warns on the root logger that no pretrained weights were loaded: by design here
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    if clip:
        import open_clip

        with torch.device(device):
            out["clip"] = open_clip.create_model(GUIDE_CLIP, pretrained=None, device=device)
    if classifier:
        import timm

        with torch.device(device):
            out["classifier"] = timm.create_model(GUIDE_CLASSIFIER, pretrained=False)
    root.setLevel(level)
    for model in out.values():
        model.eval()
    return out


def save_pipeline(
    kind: Kind, path: str | Path, seed: int = 0, image_size: int | None = None
) -> Path:
    """Write a random-weight diffusers directory of ``kind`` (safetensors, float16 on disk to
    halve the write; load it in any dtype), with the offline CLIP tokenizer and the SD noise
    schedule (``prediction_type`` as published); ``image_size`` overrides the published side."""
    from .models.tokenizer import build_clip_tokenizer
    from .sampling.schedule import sd1_scheduler

    spec = BACKBONES[kind]
    if image_size:
        spec = replace(spec, image_size=image_size)
    path = Path(path)
    torch.manual_seed(seed)
    tokenizer = build_clip_tokenizer(path / "_tokenizer_src")
    scheduler = sd1_scheduler()
    scheduler.register_to_config(prediction_type=spec.prediction_type)
    parts = dict(
        vae=spec.build_vae(), unet=spec.build_unet(), scheduler=scheduler, tokenizer=tokenizer
    )
    texts = spec.build_text()
    parts["text_encoder"] = texts[0]
    if kind == "sdxl":
        from diffusers import StableDiffusionXLPipeline as Pipeline

        parts.update(
            text_encoder_2=texts[1], tokenizer_2=tokenizer, force_zeros_for_empty_prompt=True,
            add_watermarker=False,
        )  # fmt: skip
    else:
        from diffusers import StableDiffusionPipeline as Pipeline

        parts.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe = Pipeline(**parts).to(torch.float16)
    pipe.save_pretrained(path, safe_serialization=True)
    import shutil

    shutil.rmtree(path / "_tokenizer_src", ignore_errors=True)
    return path


def save_clip_guide(directory: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """``ViT-L-14.json`` (open_clip's shipped config) and random float16 safetensors weights."""
    import open_clip

    from .utils.weights import save_weights

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg = directory / "real-vit-l-14.json"
    cfg.write_text(json.dumps(open_clip.get_model_config(GUIDE_CLIP)))
    torch.manual_seed(seed)
    model = open_clip.create_model(GUIDE_CLIP, pretrained=None)
    weights = directory / "real-vit-l-14.safetensors"
    save_weights({k: v.half() for k, v in model.state_dict().items()}, weights)
    return cfg, weights


def save_classifier_guide(path: str | Path, seed: int = 0) -> Path:
    """Random timm ResNet-50 weights (1000 classes) as safetensors."""
    import timm

    from .utils.weights import save_weights

    torch.manual_seed(seed)
    model = timm.create_model(GUIDE_CLASSIFIER, pretrained=False)
    save_weights(model.state_dict(), path)
    return Path(path)
