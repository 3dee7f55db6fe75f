"""Differentiable losses on final pixels, each ``(images, ctx) → (B,)``."""

from .aesthetic import AestheticHead, AestheticLoss
from .base import ImageLoss, LossContext
from .callable import CallableLoss
from .classifier import ClassifierLoss
from .clip import CLIPImageLoss, CLIPTextLoss
from .clip_models import ClipModel, ClipSpec, spherical_distance
from .crops import multi_crop
from .toy import ColorLoss

__all__ = [
    "AestheticHead",
    "AestheticLoss",
    "CLIPImageLoss",
    "CLIPTextLoss",
    "CallableLoss",
    "ClassifierLoss",
    "ClipModel",
    "ClipSpec",
    "ColorLoss",
    "ImageLoss",
    "LossContext",
    "multi_crop",
    "spherical_distance",
]
