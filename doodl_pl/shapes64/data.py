"""The Shapes-64 training data: rendered scenes of one split, as a LightningDataModule."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .dataset import load_split

__all__ = ["ShapesData"]


class _Indexed(Dataset):
    def __init__(self, images: np.ndarray, indices: np.ndarray) -> None:
        self.images, self.indices = images, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        j = int(self.indices[i])
        return torch.from_numpy(self.images[j]).permute(2, 0, 1), j


class ShapesData(pl.LightningDataModule):
    """Rendered scenes of one split; batches are ``(uint8 images (B, 3, 64, 64), indices)``.

    Args:
        split: a :data:`~doodl_pl.shapes64.dataset.SPLITS` name.
        n: number of scenes (the split's first ``n`` seeds).
        batch_size: batch size.
        val_size: scenes held out for validation (the last ones).
        workers: processes used to render a missing cache.
    """

    def __init__(
        self,
        split: str = "train",
        n: int = 60000,
        batch_size: int = 64,
        val_size: int = 512,
        workers: int = 2,
    ) -> None:
        super().__init__()
        self.split, self.n, self.batch_size = split, n, batch_size
        self.val_size, self.workers = val_size, workers
        self.images: np.ndarray | None = None
        self.records: list[dict] = []

    def setup(self, stage: str) -> None:
        if self.images is None:
            self.images, self.records = load_split(self.split, self.n, self.workers)

    def train_dataloader(self) -> DataLoader:
        idx = np.arange(self.n - self.val_size)
        return DataLoader(
            _Indexed(self.images, idx),
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=0,
        )

    def val_dataloader(self) -> DataLoader:
        idx = np.arange(self.n - self.val_size, self.n)
        return DataLoader(_Indexed(self.images, idx), batch_size=self.batch_size, num_workers=0)
