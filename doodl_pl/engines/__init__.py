"""Gradient engines: final-state gradient in, initial-state gradient out."""

from .autograd import AutogradEngine
from .base import GradientEngine
from .checkpoint import CheckpointEngine
from .reversible import ReversibleEngine

ENGINES = {
    "autograd": AutogradEngine,
    "checkpoint": CheckpointEngine,
    "reversible": ReversibleEngine,
}


def make_engine(name: str) -> GradientEngine:
    """Engine by name (``reversible``, ``checkpoint`` or ``autograd``)."""
    if name not in ENGINES:
        raise ValueError(f"`engine` must be one of {sorted(ENGINES)}, got {name!r}")
    return ENGINES[name]()


__all__ = [
    "ENGINES",
    "AutogradEngine",
    "CheckpointEngine",
    "GradientEngine",
    "ReversibleEngine",
    "make_engine",
]
