"""How often does the model draw each class under each prompt word? The generator's confusion
matrix, read by the judge on vanilla draws: the base rate of every (prompt word, target class)
pair, from which target sets of any rarity are built (issue 25 #4: "a red circle" aimed at an
octagon is rare if the model draws octagons for "circle" 3 % of the time)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..data.items import write_items
from ..evaluation.paired import paired_cost_ratio
from ..evaluation.stats import Estimate
from ..outputs import OutputWriter, number
from .dataset import SPLITS
from .items import OFFSET, _phrase, fid_references
from .world import SHAPE_WORD, SHAPES, sample_scene

__all__ = [
    "WORDS", "base_rates", "cost_ratios", "parse_pairs", "plot_sweep", "sweep_point",
    "target_items", "word_items",
]  # fmt: skip

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


def sweep_point(bin_dir: Path, rates: dict[str, list[float]]) -> dict[str, Any]:
    """One bin of the sweep: its items' mean base rate (``rates``: the scan's word → class
    shares) and, per method, UNet calls per accepted valid image with its interval and the
    calls spent in all (a lower bound on the cost where nothing valid was found)."""
    items = [json.loads(x) for x in (bin_dir / "items.jsonl").read_text().splitlines()]
    rate = float(np.mean([rates[it["word"]][it["class_index"]] for it in items]))
    runs = json.loads((bin_dir / "evaluation" / "results.json").read_text())
    methods = {}
    for run in runs:
        e = run["metrics"].get("calls_per_valid", {})
        spent = run["cost"]["unet_calls_per_item"] * len(items)
        methods[run["name"]] = {k: e.get(k, math.inf) for k in ("value", "lo", "hi")} | {
            "spent": spent
        }
    return {"bin": bin_dir.name, "base_rate": rate, "methods": methods}


def cost_ratios(
    bin_dir: Path, baseline: str = "rejection_sampling", folder: str = "evaluation"
) -> dict[str, Estimate]:
    """Each column's UNet calls per accepted valid image as a multiple of ``baseline``'s, on
    the bin's items joined by id, with a paired bootstrap interval (what issue 25's "≤ 0.5×"
    and "≤ 1.0×" compare)."""
    runs = {r["name"]: r for r in json.loads((bin_dir / folder / "results.json").read_text())}
    if baseline not in runs:
        raise ValueError(f"{bin_dir / folder}: no column named {baseline!r}, got {sorted(runs)}")

    def per_item(run: dict[str, Any]) -> dict[str, tuple[float, float]]:
        calls = {r["id"]: number(r.get("unet_calls")) for r in OutputWriter(run["root"]).records()}
        hits = run["per_item"]
        # A failed item delivered nothing (NaN): no hit, its calls still spent.
        return {
            i: (calls.get(i, 0.0), float(np.nan_to_num(v)))
            for i, v in zip(hits["id"], hits["accepted_valid"], strict=True)
        }

    base = per_item(runs[baseline])
    out = {}
    for name, run in runs.items():
        if name == baseline:
            continue
        mine = per_item(run)
        ids = [i for i in base if i in mine]
        out[name] = paired_cost_ratio(
            [mine[i][0] for i in ids], [mine[i][1] for i in ids],
            [base[i][0] for i in ids], [base[i][1] for i in ids],
        )  # fmt: skip
    return out


def plot_sweep(points: list[dict[str, Any]], path: Path) -> None:
    """UNet calls per accepted valid image against the base rate, per method (log–log); where
    a method found none, a hollow marker at the calls it spent (the cost is above it)."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = sorted(points, key=lambda p: -p["base_rate"])
    names = list(dict.fromkeys(n for p in points for n in p["methods"]))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, name in enumerate(names):
        color = f"C{k}"
        xs, ys, lo, hi = [], [], [], []
        for p in points:
            m = p["methods"].get(name)
            if m is None:
                continue
            x = p["base_rate"] * (1 + 0.04 * (k - 1))  # a little apart, to see the intervals
            if math.isfinite(m["value"]):
                xs.append(x)
                ys.append(m["value"])
                lo.append(m["value"] - m["lo"] if math.isfinite(m["lo"]) else 0)
                hi.append(m["hi"] - m["value"] if math.isfinite(m["hi"]) else 0)
            else:
                ax.scatter([x], [m["spent"]], marker="^", facecolors="none", edgecolors=color)
        ax.errorbar(xs, ys, yerr=[lo, hi], color=color, marker="o", capsize=3, label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    rates = [p["base_rate"] for p in points]
    ax.set_xticks(rates, [f"{r:.1%}\n{p['bin']}" for r, p in zip(rates, points, strict=True)])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.invert_xaxis()
    ax.set_xlabel("base rate of the target under its prompt (tune scan)")
    ax.set_ylabel("UNet calls per accepted valid image")
    ax.set_title("Rarity sweep, eval split (△: none found in the calls spent)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", lw=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
