"""Per-step metrics: loss per item and seconds per step, to the logger and ``metrics.csv``."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import lightning.pytorch as pl

__all__ = ["StepMetrics"]


class StepMetrics(pl.Callback):
    """Writes ``metrics.csv`` (rank, id, step, loss, seconds) next to the outputs, logs
    ``train/sec_per_step``, and sends each item's score per optimisation step to the logger as
    ``loss/<id>`` (one curve per item in TensorBoard). One file per rank (``metrics.rank{r}.csv``)
    under DDP; run-level values reduced over ranks come from :class:`RunMetrics`."""

    def __init__(self) -> None:
        self._t = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        seconds = time.perf_counter() - self._t
        history = pl_module.history
        root = Path(pl_module.writer.root)
        name = (
            "metrics.csv" if trainer.world_size == 1 else f"metrics.rank{trainer.global_rank}.csv"
        )
        path = root / name
        new = not path.exists()
        curves = {}
        with path.open("a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["rank", "id", "step", "loss", "seconds"])
            for i, it in enumerate(batch.items):
                if batch.pad[i]:
                    continue
                loss = history[i][-1] if i < len(history) and history[i] else ""
                w.writerow([trainer.global_rank, it["id"], batch.step, loss, f"{seconds:.4f}"])
                if loss != "":
                    curves[f"loss/{it['id']}"] = float(loss)
        for logger in trainer.loggers if curves else []:
            logger.log_metrics(curves, step=batch.step)
        pl_module.log("train/sec_per_step", seconds, batch_size=len(batch.items))
