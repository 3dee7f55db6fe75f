"""The DataModule: items → fixed per-rank shards → batches, each repeated once per optimisation step."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import lightning.pytorch as pl
from torch.utils.data import DataLoader, Dataset

from .images import check_image
from .items import Item, ItemsError, grid_items, item_from_dict, read_items

__all__ = ["Batch", "DoodlDataModule", "ItemConsumer", "parse_seeds", "shard"]


@dataclass
class Batch:
    """One training step's input: a batch of items at optimisation step ``step``.

    Attributes:
        items: the items' fields (``id``, ``prompt``, ``seed``, …), one dict per item.
        pad: per item, True for a pad (repeats an item so every rank runs as many batches;
            never written).
        step: optimisation step within the batch, 0 … repeats − 1.
        last: whether this is the batch's last step (the module writes its outputs then).
        index: the batch's index on this rank.
    """

    items: list[dict[str, Any]]
    pad: list[bool]
    step: int
    last: bool
    index: int


@runtime_checkable
class ItemConsumer(Protocol):
    """What :class:`DoodlDataModule` needs from the module it feeds."""

    batch_repeats: int
    """Steps each batch is repeated for (DOODL's m; 1 for one-pass methods)."""

    def finished_items(self) -> dict[str, dict[str, Any]]:
        """Manifest lines of the items already done (skipped by this run), by id."""
        ...


def parse_seeds(seeds: list[int] | int | str) -> list[int]:
    """``[0, 5]``, ``7`` or ``"0-9"`` (inclusive) → list of seeds."""
    if isinstance(seeds, int):
        return [seeds]
    if isinstance(seeds, str):
        lo, sep, hi = seeds.partition("-")
        try:
            return list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
        except ValueError as err:
            raise ValueError(f"`seeds` must look like '0-9', got {seeds!r}") from err
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

    def __getitem__(self, i: int) -> Batch:
        b, j = self.units[i]
        chunk, pads = self.batches[b]
        return Batch([it.to_dict() for it in chunk], list(pads), j, j == self.repeats - 1, b)


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

    Attributes (set when the loader is built; what the progress bar reads):
        rank_items: the items this rank will do in this run (finished ones skipped, no pads).
        repeats: steps per batch.
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
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
        if sum(x is not None for x in (items, prompts, inline)) != 1:
            raise ValueError("set exactly one of `items`, `prompts` or `inline`")
        self.items_file, self.prompts, self.seeds = items, prompts, seeds
        self.inline, self.batch_size, self.limit = inline, batch_size, limit
        self._items: list[Item] | None = None
        self.rank_items = 0
        self.repeats = 1

    @property
    def all_items(self) -> list[Item]:
        if self._items is None:
            if self.items_file is not None:
                items = read_items(self.items_file)
            elif self.prompts is not None:
                items = grid_items(self.prompts, parse_seeds(self.seeds))
            else:
                items = [
                    item_from_dict(raw, f"inline[{i}]", Path.cwd())
                    for i, raw in enumerate(self.inline)
                ]
                if len({it.id for it in items}) != len(items):
                    raise ItemsError("`inline`: item ids must be unique")
            self._items = items[: self.limit] if self.limit is not None else items
        return self._items

    def setup(self, stage: str) -> None:
        """Parse the items and check every image they name, before any model work."""
        for it in self.all_items:
            if it.image:
                check_image(it.image, f"item {it.id!r} `image`")
            for ref in it.reference_images or []:
                check_image(ref, f"item {it.id!r} `reference_images`")

    def train_dataloader(self) -> DataLoader:
        module = self.trainer.lightning_module
        if not isinstance(module, ItemConsumer):
            raise TypeError(
                f"DoodlDataModule feeds an ItemConsumer (batch_repeats, finished_items()); "
                f"{type(module).__name__} is not one"
            )
        done = module.finished_items()
        _check_unchanged(self.all_items, done, self.items_file or self.prompts or "`inline`")
        pending = [it for it in self.all_items if it.id not in done]
        repeats = module.batch_repeats
        batches = shard(pending, self.trainer.global_rank, self.trainer.world_size, self.batch_size)
        self.rank_items = sum(not p for _, pads in batches for p in pads)
        self.repeats = repeats
        return DataLoader(
            _Steps(batches, repeats),
            batch_size=None,
            shuffle=False,
            collate_fn=_identity,
            num_workers=0,
        )


def _check_unchanged(items: list[Item], done: dict[str, dict[str, Any]], source: str) -> None:
    """A rerun skips the items already written; refuse when one of them now asks for something
    else (its prompt or seed changed), which would silently keep the old image."""
    for it in items:
        row = done.get(it.id)
        if row is None:
            continue
        for key, now in (("prompt", it.prompt), ("seed", it.seed)):
            if key in row and row[key] != now:
                raise ItemsError(
                    f"{source}: item {it.id!r}: `{key}` is {now!r} but the output folder's "
                    f"manifest.jsonl holds it done with {row[key]!r}; a rerun only adds missing "
                    f"items. Give the changed item a new id, set a new `output_dir`, or delete "
                    f"its line from manifest.jsonl to redo it"
                )
