"""Differentiable losses on final pixels, each ``(images, ctx) → (B,)``."""

from .aesthetic import AestheticHead, AestheticLoss
from .base import ImageLoss, LossContext
from .callable import CallableLoss
from .classifier import ClassifierLoss
from .classifier_keep import ClassifierKeepLoss
from .clip import CLIPImageLoss, CLIPTextLoss
from .clip_models import ClipModel, ClipSpec, spherical_distance
from .crops import multi_crop
from .ensemble import GuideEnsemble
from .noise_prior import chi_norm_nll
from .toy import ColorLoss
from .transforms import EOT, RandomViews
from .verified import Verified

__all__ = [
    "AestheticHead",
    "AestheticLoss",
    "CLIPImageLoss",
    "CLIPTextLoss",
    "CallableLoss",
    "EOT",
    "GuideEnsemble",
    "RandomViews",
    "ClassifierLoss",
    "ClassifierKeepLoss",
    "ClipModel",
    "ClipSpec",
    "ColorLoss",
    "ImageLoss",
    "LossContext",
    "chi_norm_nll",
    "multi_crop",
    "spherical_distance",
    "Verified",
]
