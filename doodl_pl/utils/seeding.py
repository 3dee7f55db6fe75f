"""Per-item random streams that depend only on (seed, step, stream), never on batch or rank."""

from __future__ import annotations

import torch

__all__ = [
    "STREAM_CANDIDATE",
    "STREAM_CROPS",
    "STREAM_ENCODE",
    "STREAM_PERTURB",
    "STREAM_PROBE",
    "STREAM_REFERENCE",
    "STREAM_SCORE",
    "item_generator",
    "mix_seed",
]

_MASK = (1 << 64) - 1

# Independent random streams per item; distinct ids keep crops, perturbations, posterior samples
# and best-of-N candidates from ever sharing draws. STREAM_SCORE is the one fixed draw of cuts
# that every method scores its images with, so their losses compare like with like.
STREAM_CROPS, STREAM_PERTURB, STREAM_ENCODE, STREAM_CANDIDATE, STREAM_SCORE = 1, 2, 3, 4, 5
STREAM_PROBE = 0x7072  # the line probe's random directions (evaluation.landscape)
STREAM_REFERENCE = 6  # views of an item's reference images (CLIPImageLoss.reference_views)


def mix_seed(*parts: int) -> int:
    """A splitmix64-style hash of integers into a 63-bit seed."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) & _MASK)) & _MASK
        h = (h * 0xBF58476D1CE4E5B9) & _MASK
        h ^= h >> 31
        h = (h * 0x94D049BB133111EB) & _MASK
        h ^= h >> 29
    return h >> 1


def item_generator(seed: int, *stream: int) -> torch.Generator:
    """A CPU generator for one item's stream (crops, perturbations, candidate seeds)."""
    return torch.Generator().manual_seed(mix_seed(seed, *stream))
