"""How often does the model draw each class under each prompt word? The generator's confusion
matrix, read by the judge on vanilla draws: the base rate of every (prompt word, target class)
pair, from which target sets of any rarity are built (issue 25 #4: "a red circle" aimed at an
octagon is rare if the model draws octagons for "circle" 3 % of the time)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.items import write_items
from .benchmark import OFFSET, _phrase, fid_references
from .dataset import SPLITS
from .world import SHAPE_WORD, SHAPES, sample_scene

__all__ = ["WORDS", "base_rates", "parse_pairs", "target_items", "word_items"]

#: Every prompt word of the world (the hidden classes share "polygon").
WORDS = tuple(dict.fromkeys(SHAPE_WORD.values()))
#: Seeds of the scan, apart from every benchmark application's.
SCAN_OFFSET = OFFSET + 200_000  # below the next split's first seed (1 000 000 apart)


def word_items(split: str, per_word: int, out: Path, words: tuple[str, ...] = WORDS) -> Path:
    """``per_word`` items per word, ``"a {color} {word}"`` with each seed's own color; no
    target (the judge's reading is the result)."""
    start = SPLITS[f"{split}_one"][0] + SCAN_OFFSET
    rows = []
    for w, word in enumerate(words):
        for i in range(per_word):
            seed = start + 1000 * w + i
            rows.append({"id": f"{word}_{i:03d}", "prompt": _prompt(seed, word), "seed": seed})
    return write_items(rows, out)


def base_rates(words: list[str], predicted: list[int]) -> dict[str, np.ndarray]:
    """Per prompt word, the share of its draws the judge reads as each class (a row of
    ``len(SHAPES)`` summing to 1)."""
    out: dict[str, np.ndarray] = {}
    for word in dict.fromkeys(words):
        pred = np.array([p for w, p in zip(words, predicted, strict=True) if w == word])
        out[word] = np.bincount(pred, minlength=len(SHAPES)) / max(1, len(pred))
    return out


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """``"diamond:pentagon,cross:diamond"`` → ``[("diamond", "pentagon"), ("cross", "diamond")]``
    (prompt word, target class)."""
    pairs = []
    for part in text.split(","):
        word, _, target = part.strip().partition(":")
        if word not in WORDS or target not in SHAPES:
            raise ValueError(
                f"target pair {part!r}: expected WORD:CLASS with WORD in {WORDS} and CLASS in "
                f"{SHAPES}"
            )
        pairs.append((word, target))
    return pairs


def target_items(pairs: list[tuple[str, str]], n: int, split: str, out: Path) -> Path:
    """``n`` items cycling through ``pairs``: ``"a {color} {word}"`` with each seed's colour and
    the pair's class as ``class_index`` (the guide's target, the judge's validity); renders of
    each target class beside ``out``, in ``fid_reference/`` (per-class FID's references)."""
    start = SPLITS[f"{split}_one"][0] + SCAN_OFFSET + 50_000
    targets = sorted({t for _, t in pairs}, key=SHAPES.index)
    fid_references(targets, start + 20_000, out.parent / "fid_reference")
    rows = []
    for i in range(n):
        word, target = pairs[i % len(pairs)]
        seed = start + i
        rows.append(
            {
                "id": f"rare_{i:03d}",
                "prompt": _prompt(seed, word),
                "seed": seed,
                "class_index": SHAPES.index(target),
                "word": word,
            }
        )
    return write_items(rows, out)


def _prompt(seed: int, word: str) -> str:
    """``"a {color} {word}"`` with the colour ``seed``'s one-object scene has."""
    return _phrase(sample_scene(seed, n_objects=1).objects[0].color, word)
