"""What each finished item leaves: its cost, its PNG, its metadata and manifest lines."""

from __future__ import annotations

import json
import math
import time
from typing import Any

from torch import Tensor

from ..data.datamodule import Batch
from ..outputs import jsonable, metadata_fields

__all__ = ["Records"]


class Records:
    """Cost accounting and the one record every method writes (a mixin of
    :class:`GenerationModule`: it reads ``eps``, ``losses``, ``method``, ``sampler``,
    ``writer``, ``accept``, ``run_config`` and ``global_rank``, and calls ``guide_scores``)."""

    def batch_cost(self, n: int) -> dict[str, float]:
        """The batch's UNet calls and seconds since its first step, per item (``n`` items);
        resets the call counter for the next batch."""
        calls, vjps = self.eps.reset()
        wall = time.perf_counter() - self._t0
        return {
            "wall_s": wall / max(1, n),
            "batch_wall_s": wall,
            "unet_calls": (calls + vjps) / max(1, n),
            "unet_forwards": calls / max(1, n),
            "unet_vjps": vjps / max(1, n),
        }

    def record(
        self,
        item: dict[str, Any],
        image: Tensor | None,
        losses: list[float],
        end: float,
        cost: dict[str, float],
        failed: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Write one finished item: its PNG and ``metadata.jsonl`` line (unless it failed), then
        its ``manifest.jsonl`` line, the one record every method writes.

        Args:
            item: the item's fields.
            image: its output image ``(3, H, W)``.
            losses: its scores, the starting image's first.
            end: the output image's score.
            cost: :meth:`batch_cost` of its batch.
            failed: why it failed, if it did; a non-finite ``end`` under a loss fails it too.
            **fields: the method's own fields (e.g. ``opt_steps``, ``chosen_candidate``).

        Returns:
            The manifest line as written.
        """
        if failed is None and self.losses and not math.isfinite(end):
            failed = f"non-finite final loss ({end})"
        row = {
            "id": item["id"],
            "prompt": item.get("prompt", ""),
            "seed": item["seed"],
            "method": self.method,
            "rank": self.global_rank,
            "status": "failed" if failed else "ok",
            "loss_start": losses[0] if losses else end,
            "loss_end": end,
            "losses": losses,
            "sampler": self.sampler,
            **cost,
            **fields,
        }
        if failed:
            row["reason"] = failed
            self.failed_ids.add(item["id"])
        else:
            text = {"prompt": row["prompt"], "seed": str(item["seed"]), "id": item["id"]}
            text["method"] = self.method
            if self.run_config:
                text["config"] = self.run_config
            self.writer.write_image(item["id"], image, text)
            row.update(self.guide_scores(image, item))
            if self.accept:
                row["accepted"] = self.accept.meets(row)
        line = json.loads(json.dumps(row, default=jsonable))
        if not failed:
            self.writer.append_metadata(item["id"], metadata_fields(item, line))
        self.writer.append(line)
        self.run_records.append(line)
        return line

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        if batch.step == 0:
            self._t0 = time.perf_counter()
            self.eps.reset()
