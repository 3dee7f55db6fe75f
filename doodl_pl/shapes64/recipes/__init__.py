"""Training recipes for the Shapes-64 models, one LightningModule per model, run by
``doodl-pl-train``. Each exports its model in its library's own format (diffusers directory,
open_clip config + safetensors, timm safetensors, aesthetic-head safetensors), fp16 on disk."""

from .aesthetic import AestheticRecipe
from .base import MAX_TOKENS, Recipe
from .classifier import ClassifierRecipe
from .clip import CLIP_CONFIG, ClipRecipe
from .t2i_terms import CfgConsistency, UncondDistill
from .text_to_image import TextToImageRecipe
from .vae import VaeRecipe

__all__ = [
    "CLIP_CONFIG",
    "MAX_TOKENS",
    "AestheticRecipe",
    "CfgConsistency",
    "ClassifierRecipe",
    "ClipRecipe",
    "Recipe",
    "TextToImageRecipe",
    "UncondDistill",
    "VaeRecipe",
]
