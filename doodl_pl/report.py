"""Side-by-side comparison grids of runs: one row per item, one column per run, prompt below."""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

__all__ = ["side_by_side"]


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
) -> Path:
    """Write a PNG grid comparing ``runs`` (output folders) item by item.

    Each cell shows the item's image (upscaled ``scale``× without smoothing) with the run label,
    the loss at the end and the prompt underneath. Items missing from a run are left blank.
    """
    from PIL import Image, ImageDraw, ImageFont

    runs = [Path(r) for r in runs]
    labels = labels or [r.name for r in runs]
    manifests = [_rows(r) for r in runs]
    ids = [i for i in manifests[0] if manifests[0][i].get("status", "ok") == "ok"][:max_items]
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
    grid = Image.new("RGB", (len(runs) * cell_w + pad, len(ids) * cell_h + pad + 16), "white")
    draw = ImageDraw.Draw(grid)
    for c, label in enumerate(labels):
        draw.text((pad + c * cell_w, 2), label, fill="black", font=font)
    for r, item in enumerate(ids):
        for c, (run, rows) in enumerate(zip(runs, manifests, strict=True)):
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


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Side-by-side grid of doodl-pl output folders.")
    p.add_argument("runs", nargs="+", help="output folders (each with manifest.jsonl, images/)")
    p.add_argument("--out", required=True)
    p.add_argument("--labels", nargs="*")
    a = p.parse_args(argv)
    print(side_by_side(a.runs, a.out, a.labels))


if __name__ == "__main__":
    main()
