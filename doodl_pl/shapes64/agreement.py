"""Guide–judge agreement before any optimisation: which of the images a guide accepts does the
held-out judge reject, on images nobody steered (vanilla draws) and on images whose truth is
known (renders through the VAE round trip, the best the generator can draw)?

On steered images a hacking rate mixes two causes: the search found the guide's blind spots,
or guide and judge already disagree about what the generator draws. These two tables separate
them: the first is the hacking rate of a search that does nothing (random draws), the second
the judge's own error where the guide is right by construction (its floor).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..data.items import write_items
from ..evaluation.stats import proportion
from ..evaluation.validity import Validity
from ..losses.base import ImageLoss, LossContext
from .guides import validity

__all__ = ["agreement", "draw_pool", "hidden_targets", "markdown_rows"]


@torch.no_grad()
def agreement(
    images: Tensor,
    targets: list[int],
    guides: dict[str, ImageLoss],
    thresholds: tuple[float, ...] = (0.9,),
    judge: Validity | None = None,
    batch: int = 64,
) -> list[dict[str, Any]]:
    """Per guide and threshold: the share of ``images`` it accepts (target probability ≥ the
    threshold), the hacking rate (accepted, the judge's top-1 is not the target) with its Wilson
    interval, and the share accepted and valid.

    Args:
        images: ``(N, 3, H, W)`` in [0, 1].
        targets: each image's target class.
        guides: name → a loss with a ``class_prob`` guide score.
        thresholds: the acceptance thresholds.
        judge: the held-out judge (default: the shipped evaluation classifier).
    """
    judge = judge or validity()
    t = torch.tensor(targets)
    valid = (judge.predict(images) == t).numpy()
    ctx = LossContext({"class_index": list(targets)})
    rows = [{"guide": "judge", "valid": float(valid.mean()), "n": len(t)}]
    for name, guide in guides.items():
        if guide.score_name != "class_prob":
            raise ValueError(f"guide {name!r} has no class_prob score ({guide.score_name!r})")
        prob = torch.cat(
            [
                guide.guide_score(images[i : i + batch], _slice(ctx, i, batch)).float().cpu()
                for i in range(0, len(t), batch)
            ]
        ).numpy()
        for th in thresholds:
            acc = prob >= th
            rows.append(
                {
                    "guide": name,
                    "threshold": th,
                    "accepted": float(acc.mean()),
                    "hacking": proportion(~valid[acc]).to_dict(),
                    "accepted_valid": float((acc & valid).mean()),
                    "n": len(t),
                }
            )
    return rows


def _slice(ctx: LossContext, i: int, n: int) -> LossContext:
    return LossContext({k: v[i : i + n] for k, v in ctx.batch.items()})


def markdown_rows(rows: list[dict[str, Any]]) -> str:
    """The rows of :func:`agreement` as a Markdown table."""
    out = [
        "| guide | threshold | accepted | hacking (judge rejects) | accepted and valid |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if r["guide"] == "judge":
            continue
        h = r["hacking"]
        hack = (
            "–" if h["n"] == 0 else f"{h['value']:.2f} [{h['lo']:.2f}, {h['hi']:.2f}] (n {h['n']})"
        )
        out.append(
            f"| {r['guide']} | {r['threshold']:g} | {r['accepted']:.3f} | {hack} | "
            f"{r['accepted_valid']:.3f} |"
        )
    return "\n".join(out)


def draw_pool(items_file: Path, draws: int, out: Path) -> Path:
    """``items_file`` with each item repeated ``draws`` times under new seeds (``seed`` +
    1 000 003·k), ids ``<id>_d<k>``: a pool of independent vanilla draws per item."""
    items = [json.loads(line) for line in items_file.read_text().splitlines() if line.strip()]
    pool = (
        it | {"id": f"{it['id']}_d{k}", "seed": it["seed"] + 1_000_003 * k}
        for k in range(draws)
        for it in items
    )
    return write_items(pool, out)


def hidden_targets(records: list[dict[str, Any]], hidden: tuple[str, ...]) -> np.ndarray:
    """Indices of one-object records whose shape is in ``hidden``."""
    return np.array([i for i, r in enumerate(records) if r["objects"][0]["shape"] in hidden])
