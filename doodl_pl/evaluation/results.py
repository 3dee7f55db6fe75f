"""Results of an evaluation: the JSON file, the Markdown table, the metric plots and the
side-by-side image grid of runs."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from .evaluator import lower_is_better
from .run import items_of
from .stats import Estimate

__all__ = [
    "budget_curve",
    "curve_points",
    "image_grid",
    "markdown",
    "plot",
    "side_by_side",
    "write_results",
]


def markdown(results: list[dict[str, Any]]) -> str:
    """One table: a row per metric, a column per run, plus UNet calls and seconds per item."""
    names = [r["name"] for r in results]
    keys = list(dict.fromkeys(k for r in results for k in r["metrics"]))
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for k in keys:
        cells = [str(Estimate(**r["metrics"][k])) if k in r["metrics"] else "—" for r in results]
        arrow = " ↓" if lower_is_better(k) else ""
        lines.append(f"| {k}{arrow} | " + " | ".join(cells) + " |")
    for k, fmt in (("unet_calls_per_item", "{:.0f}"), ("wall_s_per_item", "{:.2f}")):
        cells = [fmt.format(r["cost"][k]) if math.isfinite(r["cost"][k]) else "—" for r in results]
        lines.append(f"| {k.replace('_', ' ')} | " + " | ".join(cells) + " |")
    lines.append(
        "| items scored (failed) | "
        + " | ".join(f"{r['n']} ({len(r['failed'])})" for r in results)
        + " |"
    )
    return "\n".join(lines) + "\n"


def plot(results: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    """One panel per metric: a bar per run with its 95 % interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(dict.fromkeys(k for r in results for k in r["metrics"]))
    cols = min(4, max(1, len(keys)))
    rows = max(1, math.ceil(len(keys) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    names = [r["name"] for r in results]
    for ax, k in zip(axes.flat, keys, strict=False):
        vals, errs = [], [[], []]
        for r in results:
            e = r["metrics"].get(k)
            v = e["value"] if e else float("nan")
            vals.append(v)
            lo = e["lo"] if e and math.isfinite(e["lo"]) else v
            hi = e["hi"] if e and math.isfinite(e["hi"]) else v
            errs[0].append(max(0.0, v - lo) if math.isfinite(v) else 0.0)
            errs[1].append(max(0.0, hi - v) if math.isfinite(v) else 0.0)
        ax.bar(
            range(len(names)), vals, yerr=errs, capsize=3, color=plt.cm.tab10.colors[: len(names)]
        )
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
        ax.set_title(k + (" (lower is better)" if lower_is_better(k) else ""), fontsize=9)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def curve_points(
    results: list[dict[str, Any]], metric: str
) -> dict[str, list[tuple[float, float, float, float]]]:
    """``family → [(UNet calls per item, value, lo, hi)]`` sorted by calls. A run named
    ``family@label`` (e.g. ``doodl@m2``) joins ``family`` (e.g. the run named ``doodl``); runs
    without a finite ``metric`` are left out."""
    lines: dict[str, list[tuple[float, float, float, float]]] = {}
    for r in results:
        e = r["metrics"].get(metric)
        calls = r["cost"]["unet_calls_per_item"]
        if e is None or not math.isfinite(e["value"]) or not math.isfinite(calls):
            continue
        lines.setdefault(r["name"].split("@")[0], []).append((calls, e["value"], e["lo"], e["hi"]))
    return {k: sorted(v) for k, v in lines.items()}


def budget_curve(results: list[dict[str, Any]], metric: str, path: Path, title: str = "") -> Path:
    """``metric`` against UNet calls per item, one line per method family (:func:`curve_points`)
    with its 95 % intervals, as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, pts in curve_points(results, metric).items():
        x, y, lo, hi = (list(v) for v in zip(*pts, strict=True))
        err = [[max(0.0, a - b) for a, b in zip(y, lo, strict=True)],
               [max(0.0, b - a) for a, b in zip(y, hi, strict=True)]]  # fmt: skip
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=name)
    ax.set_xlabel("UNet calls per item")
    ax.set_ylabel(metric + (" (lower is better)" if lower_is_better(metric) else ""))
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_results(results: list[dict[str, Any]], out: Path, title: str = "") -> dict[str, Path]:
    """``results.json`` (with per-item values), ``results.md`` and ``metrics.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "results.json",
        "markdown": out / "results.md",
        "plot": out / "metrics.png",
    }
    paths["json"].write_text(json.dumps(results, indent=1, default=float))
    md = (f"# {title}\n\n" if title else "") + markdown(results)
    notes = sorted({n for r in results for n in r["notes"]})
    md += "".join(f"\nNote: {n}.\n" for n in notes)
    paths["markdown"].write_text(md)
    plot(results, paths["plot"], title)
    return paths


def _rows(run: Path) -> dict[str, dict]:
    path = run / "manifest.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run `doodl-pl fit` for {run} first")
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


def side_by_side(
    runs: list[str | Path],
    out: str | Path,
    labels: list[str] | None = None,
    scale: int = 3,
    max_items: int = 16,
    items: str | Path | None = None,
) -> Path:
    """Write a PNG grid comparing ``runs`` (output folders) item by item.

    Each cell shows the item's image (upscaled ``scale``× without smoothing) with the run label,
    the loss at the end and the prompt underneath. Items missing from a run are left blank.
    A first column shows what each image is judged against, where the items have one: the
    item's first reference image, or the photo it edits. ``items`` defaults to the items file
    the first run's ``config.yaml`` names.
    """
    from PIL import Image, ImageDraw, ImageFont

    runs = [Path(r) for r in runs]
    labels = list(labels or [r.name for r in runs])
    manifests = [_rows(r) for r in runs]
    ids = [i for i in manifests[0] if manifests[0][i].get("status", "ok") == "ok"][:max_items]
    given = _given_images(items if items is not None else items_of(runs[0]), ids)
    if given:
        label = "reference" if any(kind == "reference" for kind, _ in given.values()) else "input"
        labels = [label, *labels]
    font = ImageFont.load_default()
    probe = next(
        (
            r / "images" / f"{i}.png"
            for r in runs
            for i in ids
            if (r / "images" / f"{i}.png").is_file()
        ),
        None,
    )
    if probe is None:
        raise FileNotFoundError(f"no images to compare under {runs[0] / 'images'}")
    side = Image.open(probe).size[0] * scale
    text_h, pad = 44, 6
    cell_w, cell_h = side + pad, side + text_h + pad
    first = 1 if given else 0
    cols = len(runs) + first
    grid = Image.new("RGB", (cols * cell_w + pad, len(ids) * cell_h + pad + 16), "white")
    draw = ImageDraw.Draw(grid)
    for c, label in enumerate(labels):
        draw.text((pad + c * cell_w, 2), label, fill="black", font=font)
    for r, item in enumerate(ids):
        if item in given:
            kind, png = given[item]
            y = 16 + pad + r * cell_h
            grid.paste(Image.open(png).convert("RGB").resize((side, side), Image.NEAREST), (pad, y))
            draw.text((pad, y + side + 2), kind, fill="black", font=font)
        for c, (run, rows) in enumerate(zip(runs, manifests, strict=True), start=first):
            x, y = pad + c * cell_w, 16 + pad + r * cell_h
            png = run / "images" / f"{item}.png"
            if png.is_file():
                grid.paste(
                    Image.open(png).convert("RGB").resize((side, side), Image.NEAREST), (x, y)
                )
            row = rows.get(item, {})
            loss = row.get("loss_end")
            caption = f"loss {loss:.3f}" if isinstance(loss, (int, float)) else ""
            prompt = "\n".join(textwrap.wrap(row.get("prompt", ""), width=max(12, side // 6)))[:90]
            draw.text((x, y + side + 2), f"{caption}\n{prompt}", fill="black", font=font)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    return out


def _given_images(items: str | Path | None, ids: list[str]) -> dict[str, tuple[str, Path]]:
    """``{id: ("reference" | "input", path)}`` for the listed items that have such an image."""
    if items is None:
        return {}
    from ..data.items import read_items

    given = {}
    for it in read_items(items):
        if it.id not in ids:
            continue
        if it.reference_images:
            given[it.id] = ("reference", Path(it.reference_images[0]))
        elif it.image:
            given[it.id] = ("input", Path(it.image))
    return {i: (kind, png) for i, (kind, png) in given.items() if png.is_file()}


def image_grid(images: np.ndarray, rows: int, path: str | Path, scale: int = 2) -> Path:
    """Write uint8 ``images`` (N, H, W, 3) row-major as ``rows`` rows, enlarged ``scale``×
    without smoothing."""
    from PIL import Image

    if len(images) % rows:
        raise ValueError(f"{len(images)} images do not fill {rows} rows")
    cols = len(images) // rows
    h, w = images.shape[1:3]
    grid = (
        images.reshape(rows, cols, h, w, 3).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, 3)
    )
    path = Path(path)
    Image.fromarray(grid).resize((cols * w * scale, rows * h * scale), Image.NEAREST).save(path)
    return path
