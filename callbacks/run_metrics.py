"""Run-level metrics, reduced over every rank with torchmetrics and logged once by rank 0."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import lightning.pytorch as pl
from torchmetrics import MeanMetric, SumMetric

from doodl_pl.outputs import atomic_write, number

__all__ = ["RunMetrics"]


class RunMetrics(pl.Callback):
    """At the end of ``fit``: mean loss at start and end, share of items improved, failures,
    items, seconds per item, UNet calls, the mean of each guide's own score (``guide_<name>``,
    e.g. the CLIP score) over the items this run generated and, under an ``accept`` rule, the
    accepted images and accepted images per 1000 UNet calls, synced across DDP ranks.

    Rank 0 logs them as ``run/<name>`` to ``trainer.logger`` and writes ``run_metrics.json`` next
    to the outputs; every rank gets the same values in :attr:`values`. Items skipped because an
    earlier run finished them are not counted.
    """

    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def on_train_end(self, trainer, pl_module) -> None:
        device = pl_module.device
        metrics = {
            "loss_start": MeanMetric(nan_strategy="ignore"),
            "loss_end": MeanMetric(nan_strategy="ignore"),
            "improved": MeanMetric(nan_strategy="ignore"),
            "seconds_per_item": MeanMetric(nan_strategy="ignore"),
            "failed": SumMetric(),
            "items": SumMetric(),
            "accepted": SumMetric(),
            "unet_calls": SumMetric(),
        }
        # The same metric names on every rank (a rank without items still joins the sync).
        guides = [f"guide_{name}" for name in pl_module.guide_score_names]
        metrics.update({g: MeanMetric(nan_strategy="ignore") for g in guides})
        for m in metrics.values():
            m.to(device)
        nan = float("nan")
        for r in pl_module.run_records:
            ok = r.get("status") == "ok"
            start, end = number(r.get("loss_start")), number(r.get("loss_end"))
            metrics["items"].update(1.0)
            metrics["failed"].update(0.0 if ok else 1.0)
            if ok:
                metrics["loss_start"].update(start)
                metrics["loss_end"].update(end)
                metrics["improved"].update(
                    nan if math.isnan(start) or math.isnan(end) else float(end < start)
                )
            metrics["seconds_per_item"].update(number(r.get("wall_s")))
            metrics["accepted"].update(float(ok and bool(r.get("accepted"))))
            calls = number(r.get("unet_calls"))
            metrics["unet_calls"].update(0.0 if math.isnan(calls) else calls)
            for g in guides:
                metrics[g].update(number(r.get(g)))
        # A mean that saw no value (every item failed) is nan, not a problem worth a warning.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.values = {k: float(m.compute()) for k, m in metrics.items()}
        if pl_module.accept:  # what a data set costs: accepted images per 1000 UNet calls
            calls = self.values["unet_calls"]
            self.values["accepted_per_1000_calls"] = (
                1000 * self.values["accepted"] / calls if calls else float("nan")
            )
        else:
            del self.values["accepted"]
        if trainer.global_rank != 0:
            return
        for logger in trainer.loggers:
            logger.log_metrics({f"run/{k}": v for k, v in self.values.items()})
            logger.save()
        text = json.dumps(self.values, indent=1, default=float) + "\n"
        atomic_write(Path(pl_module.writer.root) / "run_metrics.json", text.encode("utf-8"))
