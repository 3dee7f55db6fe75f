"""A progress bar that counts items, not optimisation steps."""

from __future__ import annotations

import sys

from lightning.pytorch.callbacks import ProgressBar

from doodl_pl.data.datamodule import DoodlDataModule

__all__ = ["ItemProgressBar"]


class ItemProgressBar(ProgressBar):
    """Items done of this rank's total, with an ETA, the current batch's optimisation step and
    its mean loss; shown on rank 0 (with several ranks it counts rank 0's share)."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._bar = None
        self._repeats = 1

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer, pl_module) -> None:
        if not self._enabled or trainer.global_rank != 0:
            return
        from tqdm.auto import tqdm

        data = trainer.datamodule
        if not isinstance(data, DoodlDataModule):
            return
        total, self._repeats = data.rank_items, data.repeats
        label = "items" if trainer.world_size == 1 else "items (rank 0)"
        self._bar = tqdm(total=total, desc=label, unit="item", file=sys.stderr, dynamic_ncols=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._bar is None:
            return
        loss = trainer.callback_metrics.get("train/loss")
        post = {"step": f"{batch.step + 1}/{self._repeats}"}
        if loss is not None:
            post["loss"] = f"{float(loss):.4f}"
        self._bar.set_postfix(post, refresh=False)
        if batch.last:
            self._bar.update(sum(not p for p in batch.pad))
        else:
            self._bar.refresh()

    def on_train_end(self, trainer, pl_module) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
