"""open_clip models for guidance losses: one loader for names, tags, local files and configs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..hub import load_or_explain, resolve
from ..models.protocol import freeze
from ..utils.weights import load_weights
from .crops import resize_to

__all__ = ["GUIDE_DTYPES", "ClipModel", "ClipSpec", "guide_dtype", "spherical_distance"]

GUIDE_DTYPES = ("float32", "float16", "bfloat16")


def guide_dtype(name: str, key: str = "dtype") -> torch.dtype:
    """A guide's dtype by name; ``key`` names the option in the error."""
    if name not in GUIDE_DTYPES:
        raise ValueError(f"{key} must be one of {GUIDE_DTYPES}, got {name!r}")
    return getattr(torch, name)


OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class ClipSpec:
    """One ensemble member.

    Attributes:
        name: open_clip model name (``ViT-B-32``), a path to a model-config JSON, or a
            ``local-dir:``/``hf-hub:`` reference.
        pretrained: pretrained tag (``laion2b_s34b_b79k``) or a local weights file.
        weight: weight of this member in the ensemble.
        dtype: dtype of the image and text towers (``float16``/``bfloat16`` halve their weights
            and the guide's VJP; embeddings and distances stay float32).
        checkpointing: recompute the image tower's blocks in the backward pass instead of
            storing them (same gradient; 16 ViT-L/14 cuts hold 3.9 GiB in float32 without it,
            0.7 GiB with it).
        base: a weights file (safetensors) of the same architecture whose tensors fill in those
            ``pretrained`` leaves out: a model shipped as the tensors it changed, e.g. the
            Shapes-64 relation CLIP, which shares the shipped CLIP's token table.
    """

    name: str = "ViT-B-32"
    pretrained: str | None = "laion2b_s34b_b79k"
    weight: float = 1.0
    dtype: str = "float32"
    checkpointing: bool = False
    base: str | None = None


class _Drop(logging.Filter):
    """Drops log records that contain ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def spherical_distance(a: Tensor, b: Tensor) -> Tensor:
    """2·arcsin(‖a − b‖ / 2)² between L2-normalised embeddings (the great-circle distance²/2)."""
    return (a - b).norm(dim=-1).div(2).clamp(max=1).arcsin().pow(2).mul(2)


class ClipModel(nn.Module):
    """A frozen open_clip model with normalised image/text embeddings."""

    def __init__(self, spec: ClipSpec, key: str = "models") -> None:
        super().__init__()
        import open_clip

        name = resolve(spec.name)
        pretrained = resolve(spec.pretrained) if spec.pretrained else None
        if name.endswith(".json"):
            open_clip.add_model_config(name)
            name = Path(name).stem

        base = resolve(spec.base) if spec.base else None
        if base is not None and pretrained is None:
            raise ValueError(
                "ClipSpec `base` fills in tensors of `pretrained`; set `pretrained` too"
            )

        def load():
            if base is None:
                model, _, _ = open_clip.create_model_and_transforms(name, pretrained=pretrained)
            else:
                # open_clip warns that the model is random; the next lines load its weights
                drop = _Drop("No pretrained weights loaded")
                logging.getLogger().addFilter(drop)
                try:
                    model = open_clip.create_model(name, pretrained=None)
                finally:
                    logging.getLogger().removeFilter(drop)
                state = dict(load_weights(base))
                state.update(load_weights(pretrained))
                model.load_state_dict({k: v.float() for k, v in state.items()})
            return model, open_clip.get_tokenizer(name)

        self.dtype = guide_dtype(spec.dtype, "ClipSpec `dtype`")
        self.model, self.tokenizer = load_or_explain(key, spec.pretrained or spec.name, load)
        freeze(self.model).to(self.dtype)
        if spec.checkpointing:
            self.model.set_grad_checkpointing(True)
        self.weight = float(spec.weight)
        visual = self.model.visual
        size = visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        mean = getattr(visual, "image_mean", None) or OPENAI_MEAN
        std = getattr(visual, "image_std", None) or OPENAI_STD
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self._text_cache: dict[str, Tensor] = {}

    def encode_image(self, images: Tensor, resize: bool = True) -> Tensor:
        """Images in [0, 1] (already at ``image_size`` unless ``resize``) → unit embeddings."""
        if resize:
            images = resize_to(images, self.image_size)
        x = (images - self.mean) / self.std
        return F.normalize(self.model.encode_image(x.to(self.dtype)).float(), dim=-1)

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> Tensor:
        missing = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if missing:
            tokens = self.tokenizer(missing).to(self.mean.device)
            emb = F.normalize(self.model.encode_text(tokens).float(), dim=-1)
            self._text_cache.update(zip(missing, emb, strict=True))
        return torch.stack([self._text_cache[t] for t in texts])
