"""Data: items, images and the DataModule."""

from .datamodule import Batch, DoodlDataModule, ItemConsumer, parse_seeds, shard
from .images import ImageLoadError, load_image, to_pil
from .items import Item, ItemsError, grid_items, item_from_dict, read_items

__all__ = [
    "Batch",
    "DoodlDataModule",
    "ItemConsumer",
    "ImageLoadError",
    "Item",
    "ItemsError",
    "grid_items",
    "item_from_dict",
    "load_image",
    "parse_seeds",
    "read_items",
    "shard",
    "to_pil",
]
