"""Noise-prediction models behind the ``eps(x, t, cond)`` protocol."""

from .adapters import LatentUNetEps, PixelUNetEps
from .analytic import AnalyticEps
from .condition import TextCondition
from .counting import CountingEps
from .protocol import EpsModel, freeze

__all__ = [
    "AnalyticEps",
    "CountingEps",
    "EpsModel",
    "LatentUNetEps",
    "PixelUNetEps",
    "TextCondition",
    "freeze",
]
