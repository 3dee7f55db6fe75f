"""Paired differences between runs on the same items and seeds: method A − method B per item."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .evaluator import PROPORTIONS
from .stats import Estimate, bootstrap, calls_per_hit, mean

__all__ = ["paired_cost_ratio", "paired_difference", "paired_markdown"]


def paired_difference(
    ids_a: Sequence[str],
    a: Sequence[float],
    ids_b: Sequence[str],
    b: Sequence[float],
    missing: float | None = None,
) -> Estimate:
    """Mean of a − b over the items (joined by id), with a Student-t interval on the per-item
    differences: tighter than comparing two separate intervals, because each item's own
    difficulty cancels.

    Args:
        missing: the value of an item one run lacks, e.g. 0 for a success metric, where an item
            a method did not deliver is a failure; ``None`` leaves such items out. A NaN value
            (the metric does not apply to that item) is always left out.
    """
    by_a = dict(zip(ids_a, a, strict=True))
    by_b = dict(zip(ids_b, b, strict=True))

    def value(table: dict[str, float], i: str) -> float:
        if i not in table:
            return np.nan if missing is None else float(missing)
        return float(table[i])

    ids = list(by_a) + [i for i in by_b if i not in by_a]
    pairs = [(value(by_a, i), value(by_b, i)) for i in ids]
    diffs = [x - y for x, y in pairs if np.isfinite(x) and np.isfinite(y)]
    est = mean(diffs)
    est.method = "paired-t"
    return est


def paired_cost_ratio(
    calls_a: Sequence[float],
    hits_a: Sequence[float],
    calls_b: Sequence[float],
    hits_b: Sequence[float],
    reps: int = 2000,
    seed: int = 0,
) -> Estimate:
    """How many times B's calls per hit A needs, (Σ calls_a / Σ hits_a) / (Σ calls_b / Σ
    hits_b), over the same items in the same order, with a percentile bootstrap interval that
    resamples items jointly, so each item's difficulty counts once for both. Infinite where a
    resample holds no hit of A; 0 where it holds none of B (B's cost unbounded)."""
    arrays = [np.asarray(v, dtype=np.float64) for v in (calls_a, hits_a, calls_b, hits_b)]
    n = len(arrays[0])
    if any(len(v) != n for v in arrays) or n == 0:
        raise ValueError(
            f"calls and hits must be four equal, non-empty lists, got {[len(v) for v in arrays]}"
        )
    ca, ha, cb, hb = arrays

    def ratio(idx: np.ndarray) -> float:
        a, b = calls_per_hit(ca[idx], ha[idx]), calls_per_hit(cb[idx], hb[idx])
        return math.inf if math.isinf(a) or not b else a / b  # finite / inf: 0

    lo, hi = bootstrap(ratio, n, reps, seed)
    return Estimate(ratio(np.arange(n)), lo, hi, n, "paired bootstrap")


def paired_markdown(results: list[dict[str, Any]], focus: str) -> str:
    """A table of ``focus`` − every other run, one row per per-item metric (FID has no per-item
    value and is left out); in a success metric an item a run failed or lacks is a failure.
    Empty when no run is named ``focus``."""
    base = next((r for r in results if r["name"] == focus), None)
    if base is None:
        return ""
    others = [r for r in results if r["name"] != focus]
    keys = [k for k in base["per_item"] if k != "id"]
    head = [f"{focus} − {r['name']}" for r in others]
    lines = ["| metric | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for k in keys:
        cells = []
        for r in others:
            if k not in r["per_item"]:
                cells.append("—")
                continue
            est = paired_difference(
                base["per_item"]["id"], base["per_item"][k], r["per_item"]["id"], r["per_item"][k],
                missing=0.0 if k in PROPORTIONS else None,
            )  # fmt: skip
            cells.append(f"{est.value:+.3f} [{est.lo:+.3f}, {est.hi:+.3f}]" if est.n > 1 else "n/a")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
