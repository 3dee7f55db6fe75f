#!/usr/bin/env python
"""How far can a DOODL step go on a Shapes-64 guide? The score along the loss gradient, its sign
and a random direction, for each sampler (``doodl_pl.diagnostics.landscape``).

    .venv/bin/python scripts/diagnose_doodl_landscape.py --n 16 --split tune \\
        --samplers edict bdia:1 bdia:0.5 --out outputs/landscape.json
    # vocabulary: the step along a guide's gradient, scored by the held-out judge
    .venv/bin/python scripts/diagnose_doodl_landscape.py --app vocabulary --guide robust \\
        --score judge --samplers bdia:0.5 --out outputs/landscape/vocab_robust.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from doodl_pl.backbones import StableDiffusion
from doodl_pl.diagnostics.landscape import DIRECTIONS, line_probe
from doodl_pl.losses import CLIPTextLoss
from doodl_pl.modules import DoodlModule
from doodl_pl.shapes64.assets import CLIP, SD
from doodl_pl.shapes64.guides import GUIDES, judge_loss, vocabulary_guide
from doodl_pl.shapes64.items import build_items


def parse_sampler(text: str) -> tuple[str, float]:
    name, _, gamma = text.partition(":")
    if name not in ("edict", "bdia"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected edict or bdia[:GAMMA]")
    return name, float(gamma) if gamma else 1.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--app", default="text", choices=["text", "vocabulary"])
    p.add_argument(
        "--guide",
        default="plain",
        help=f"vocabulary: the guide whose gradient is followed: one of {', '.join(GUIDES)}, or a "
        "resnet10t .safetensors file",
    )
    p.add_argument(
        "--score",
        default="guide",
        choices=["guide", "judge"],
        help="vocabulary: score the moved starts with the guide's own loss or the\n"
        "held-out judge's (the evaluation classifier's cross-entropy)",
    )
    p.add_argument("--n", type=int, default=16, help="items")
    p.add_argument("--split", default="tune", choices=["tune", "eval"])
    p.add_argument(
        "--samplers", nargs="+", type=parse_sampler, default=[("edict", 1.0), ("bdia", 1.0)]
    )
    p.add_argument("--steps", nargs="+", type=float, default=[0.001, 0.003, 0.01, 0.03, 0.1])
    p.add_argument("--directions", nargs="+", default=list(DIRECTIONS), choices=DIRECTIONS)
    p.add_argument("--T", type=int, default=20, help="sampling steps")
    p.add_argument("--judge-T", type=int, default=None,
                   help="score the moved starts with this many sampling steps instead (does a\n"
                   "step found on the T-step chain help the judge-T one?)")  # fmt: skip
    p.add_argument("--guidance-scale", type=float, default=5.0)
    p.add_argument("--out", default="outputs/landscape.json")
    a = p.parse_args()
    out = Path(a.out)
    items_file = build_items(a.app, a.n, a.split, out.parent / f"{out.stem}_items")
    items = [json.loads(line) for line in items_file.read_text().splitlines()]
    backbone = StableDiffusion(pretrained=SD)
    if a.app == "text":
        loss = CLIPTextLoss(models=[CLIP], n_cuts=8, min_cut=0.75)
        scorer, what = loss, "CLIP loss with fixed cuts"
    else:
        loss = vocabulary_guide(a.guide)
        scorer = judge_loss() if a.score == "judge" else loss
        what = f"{a.score} cross-entropy of the target class, {a.guide} guide's gradient"
    report = {
        "command": "scripts/diagnose_doodl_landscape.py",
        "args": vars(a) | {"samplers": [f"{s}:{g:g}" for s, g in a.samplers]},
        "rows": [],
    }
    print(
        f"{a.n} {a.split} {a.app} items, T = {a.T}, CFG {a.guidance_scale}; score = {what} "
        "(lower is better); change = mean over items, improved = share that fell\n"
    )
    print("| sampler | direction | " + " | ".join(f"a = {s:g}" for s in a.steps) + " |")
    print("|---|---|" + "---|" * len(a.steps))
    for name, gamma in a.samplers:
        module = DoodlModule(
            backbone=backbone, loss=[loss], num_inference_steps=a.T, sampler=name, gamma=gamma,
            guidance_scale=a.guidance_scale, opt_steps=1,
        )  # fmt: skip
        judge = None
        if a.judge_T is not None or scorer is not loss:
            judge = DoodlModule(
                backbone=backbone, loss=[scorer], num_inference_steps=a.judge_T or a.T,
                sampler=name, gamma=gamma, guidance_scale=a.guidance_scale, opt_steps=1,
            )  # fmt: skip
        t0 = time.time()
        with torch.no_grad():
            rows = line_probe(module, items, a.steps, a.directions, judge=judge)
        label = "EDICT" if name == "edict" else f"BDIA γ={gamma:g}"
        if a.judge_T is not None:
            label += f", T={a.T} step scored at T={a.judge_T}"
        if a.app == "vocabulary":
            label += f", {a.guide} guide, {a.score} score"
        for kind in a.directions:
            cells = [r for r in rows if r["direction"] == kind]
            text = " | ".join(f"{r['change']:+.3f} ({r['improved']:.0%})" for r in cells)
            print(f"| {label} (start {cells[0]['start']:.3f}) | {kind} | {text} |", flush=True)
        report["rows"] += [r | {"sampler": name, "gamma": gamma} for r in rows]
        report.setdefault("seconds", {})[label] = round(time.time() - t0, 1)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1))  # after each sampler: a kill loses one
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
