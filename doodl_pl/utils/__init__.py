"""Small shared utilities."""

from .memory import LiveTensorMeter, SavedTensorMeter
from .seeding import item_generator, mix_seed
from .weights import UnsafeWeightsError, load_weights, save_weights

__all__ = [
    "LiveTensorMeter",
    "SavedTensorMeter",
    "UnsafeWeightsError",
    "item_generator",
    "load_weights",
    "mix_seed",
    "save_weights",
]
