"""LightningModules: DOODL and its baselines."""

from .base import GenerationModule
from .baselines import BestOfNModule, GuidedEps, OneStepGuidanceModule, VanillaModule
from .doodl import DoodlModule, LatentBank

__all__ = [
    "BestOfNModule",
    "DoodlModule",
    "GenerationModule",
    "GuidedEps",
    "LatentBank",
    "OneStepGuidanceModule",
    "VanillaModule",
]
