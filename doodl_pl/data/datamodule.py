"""The DataModule: items → fixed per-rank shards → batches, each repeated once per optimisation step."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
from torch.utils.data import DataLoader, Dataset

from .items import Item, ItemsError, grid_items, read_items

__all__ = ["DoodlDataModule", "parse_seeds", "shard"]


def parse_seeds(seeds: list[int] | int | str) -> list[int]:
    """``[0, 5]``, ``7`` or ``"0-9"`` (inclusive) → list of seeds."""
    if isinstance(seeds, int):
        return [seeds]
    if isinstance(seeds, str):
        lo, sep, hi = seeds.partition("-")
        try:
            return list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
        except ValueError as err:
            raise ValueError(f"`data.init_args.seeds` must look like '0-9', got {seeds!r}") from err
    return [int(s) for s in seeds]


def shard(
    items: list[Any], rank: int, world: int, batch_size: int
) -> list[tuple[list[Any], list[bool]]]:
    """This rank's batches: items ``rank::world``, in order, padded so every rank runs the same
    number of batches (pads repeat an item and are flagged, never written)."""
    mine = items[rank::world]
    per_rank = math.ceil(len(items) / world) if items else 0
    n_batches = math.ceil(per_rank / batch_size) if per_rank else 0
    batches = []
    for b in range(n_batches):
        chunk = mine[b * batch_size : (b + 1) * batch_size]
        pads = [False] * len(chunk)
        if not chunk:
            chunk, pads = [items[0]], [True]
        batches.append((chunk, pads))
    return batches


class _Steps(Dataset):
    def __init__(self, batches, repeats: int) -> None:
        self.units = [(b, j) for b in range(len(batches)) for j in range(repeats)]
        self.batches, self.repeats = batches, repeats

    def __len__(self) -> int:
        return len(self.units)

    def __getitem__(self, i: int) -> dict[str, Any]:
        b, j = self.units[i]
        chunk, pads = self.batches[b]
        return {
            "items": [it.to_dict() for it in chunk],
            "pad": list(pads),
            "step": j,
            "last": j == self.repeats - 1,
            "batch_index": b,
        }


def _identity(x):
    return x


class DoodlDataModule(pl.LightningDataModule):
    """Items from a JSONL/CSV file, a prompts × seeds grid, or inline dicts.

    Every rank takes a fixed shard (no shuffling, no distributed sampler), so each item is done
    exactly once; items already in the output manifest are skipped.

    Args:
        items: a ``.jsonl`` or ``.csv`` items file.
        prompts: a text file with one prompt per line (grid mode, with ``seeds``).
        seeds: seeds for grid mode: a list, one int, or an inclusive range ``"0-9"``.
        inline: items given directly in the config.
        batch_size: items optimised together.
        limit: keep only the first ``limit`` items.
    """

    def __init__(
        self,
        items: str | None = None,
        prompts: str | None = None,
        seeds: list[int] | int | str = 0,
        inline: list[dict[str, Any]] | None = None,
        batch_size: int = 1,
        limit: int | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"`data.init_args.batch_size` must be >= 1, got {batch_size}")
        if sum(x is not None for x in (items, prompts, inline)) != 1:
            raise ValueError(
                "set exactly one of `data.init_args.items`, `data.init_args.prompts` "
                "or `data.init_args.inline`"
            )
        self.items_file, self.prompts, self.seeds = items, prompts, seeds
        self.inline, self.batch_size, self.limit = inline, batch_size, limit
        self._items: list[Item] | None = None

    @property
    def all_items(self) -> list[Item]:
        if self._items is None:
            if self.items_file is not None:
                items = read_items(self.items_file)
            elif self.prompts is not None:
                items = grid_items(self.prompts, parse_seeds(self.seeds))
            else:
                from .items import _item

                items = [
                    _item(raw, f"data.init_args.inline[{i}]", _cwd())
                    for i, raw in enumerate(self.inline)
                ]
                if len({it.id for it in items}) != len(items):
                    raise ItemsError("`data.init_args.inline`: item ids must be unique")
            self._items = items[: self.limit] if self.limit is not None else items
        return self._items

    def setup(self, stage: str) -> None:
        """Parse the items and check every image they name, before any model work."""
        from .images import check_image

        for it in self.all_items:
            if it.image:
                check_image(it.image, f"item {it.id!r} `image`")
            for ref in it.reference_images or []:
                check_image(ref, f"item {it.id!r} `reference_images`")

    def train_dataloader(self) -> DataLoader:
        module = self.trainer.lightning_module
        done = module.finished_ids() if hasattr(module, "finished_ids") else set()
        pending = [it for it in self.all_items if it.id not in done]
        repeats = getattr(module, "batch_repeats", 1)
        batches = shard(pending, self.trainer.global_rank, self.trainer.world_size, self.batch_size)
        return DataLoader(
            _Steps(batches, repeats),
            batch_size=None,
            shuffle=False,
            collate_fn=_identity,
            num_workers=0,
        )


def _cwd():
    from pathlib import Path

    return Path.cwd()
