"""Data: items, images and the DataModule."""

from .datamodule import DoodlDataModule, parse_seeds, shard
from .images import ImageLoadError, load_image, to_pil
from .items import Item, ItemsError, grid_items, read_items

__all__ = [
    "DoodlDataModule",
    "ImageLoadError",
    "Item",
    "ItemsError",
    "grid_items",
    "load_image",
    "parse_seeds",
    "read_items",
    "shard",
    "to_pil",
]
