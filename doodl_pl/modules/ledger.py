"""Per-item stopping's bookkeeping: which items are still in the chain, the output of each one
that left early, and the UNet calls each item has cost."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

__all__ = ["ItemLedger"]


class _Counter(Protocol):
    calls: int
    vjps: int


class ItemLedger:
    """One batch's items (a DOODL module keeps one per batch).

    Args:
        counter: the model's call counter (``calls``, ``vjps``; reset at the batch's start).
        pad: per item, whether it is padding (never enters the chain under stopping).
        stopping: whether items may leave early (``accept`` is set).

    Attributes:
        active: per item, whether it is still optimised.
        done: item → (score, step, image) of the iterate that met ``accept``.
        spent: per item, [forwards, VJPs] charged to it.
    """

    def __init__(self, counter: _Counter, pad: list[bool], stopping: bool) -> None:
        pads = torch.tensor(pad, dtype=torch.bool)
        self.active: Tensor = ~pads if stopping else torch.ones(len(pad), dtype=torch.bool)
        self.done: dict[int, tuple[float, int, Tensor]] = {}
        self.spent = [[0.0, 0.0] for _ in pad]
        self._counter, self._mark = counter, (0, 0)

    def rows(self) -> list[int]:
        """The items still in the chain."""
        return torch.nonzero(self.active).flatten().tolist()

    def charge(self, rows: list[int]) -> None:
        """Split the UNet calls counted since the last charge evenly among ``rows`` (the rows
        that ran them), so each manifest line carries what its own item cost."""
        calls, vjps = self._counter.calls, self._counter.vjps
        delta = (calls - self._mark[0], vjps - self._mark[1])
        self._mark = (calls, vjps)
        for i in rows:
            self.spent[i][0] += delta[0] / len(rows)
            self.spent[i][1] += delta[1] / len(rows)

    def finish_early(self, i: int, score: float, step: int, image: Tensor) -> None:
        """Item ``i`` met ``accept`` at iterate ``step``: that image is its output; it leaves
        the chain."""
        self.done[i] = (score, step, image.clone())
        self.active[i] = False
