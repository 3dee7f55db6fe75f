"""Point estimates with 95 % confidence intervals."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Estimate", "bootstrap", "calls_per_hit", "mean", "proportion"]

Z95 = 1.959963984540054


@dataclass
class Estimate:
    """A figure with its 95 % interval ``[lo, hi]`` over ``n`` items and how it was computed."""

    value: float
    lo: float
    hi: float
    n: int
    method: str

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        if self.n == 0 or not math.isfinite(self.value):
            return "n/a"
        return f"{self.value:.3f} [{self.lo:.3f}, {self.hi:.3f}]"


def proportion(successes: Sequence[bool] | np.ndarray) -> Estimate:
    """Share of successes with the Wilson score interval."""
    k, n = int(np.sum(successes)), len(successes)
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, "wilson")
    p = k / n
    den = 1 + Z95**2 / n
    mid = (p + Z95**2 / (2 * n)) / den
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / den
    return Estimate(p, max(0.0, mid - half), min(1.0, mid + half), n, "wilson")


def mean(values: Sequence[float] | np.ndarray) -> Estimate:
    """Mean with a Student-t interval (normal quantile above 30 items)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, "t")
    m = float(v.mean())
    if n == 1:
        return Estimate(m, float("nan"), float("nan"), 1, "t")
    half = _t975(n - 1) * float(v.std(ddof=1)) / math.sqrt(n)
    return Estimate(m, m - half, m + half, n, "t")


def bootstrap(
    statistic: Callable[[np.ndarray], float], n: int, reps: int = 200, seed: int = 0
) -> tuple[float, float]:
    """Percentile 95 % interval of ``statistic(indices)`` over resampled item indices."""
    rng = np.random.default_rng(seed)
    draws = np.array([statistic(rng.integers(0, n, n)) for _ in range(reps)], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bounds = np.percentile(draws, [2.5, 97.5])
    if not np.isnan(draws).any():
        # Interpolating between two infinite draws (a cost with no hit) gives NaN: the bound is
        # that infinite draw.
        nearest = np.percentile(draws, [2.5, 97.5], method="nearest")
        bounds = np.where(np.isnan(bounds), nearest, bounds)
    return float(bounds[0]), float(bounds[1])


def calls_per_hit(calls: np.ndarray, hits: np.ndarray) -> float:
    """Σ calls / Σ hits (what one hit costs); infinite without a hit, the cost unbounded."""
    total = hits.sum()
    return float(np.nansum(calls) / total) if total else math.inf


_T = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
      10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042}  # fmt: skip


def _t975(df: int) -> float:
    """Two-sided 95 % Student-t quantile (table, rounded down to a listed df; normal past 30)."""
    if df > 30:
        return Z95
    return _T[max(k for k in _T if k <= df)]
