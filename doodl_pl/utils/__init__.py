"""Small shared utilities."""

from .memory import SavedTensorMeter

__all__ = ["SavedTensorMeter"]
