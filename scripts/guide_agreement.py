#!/usr/bin/env python
"""Guide–judge agreement on the vocabulary application, before any search (issue 25).

Two tables per guide (``doodl_pl.shapes64.agreement``): on ``--draws`` vanilla draws of each
item (what a search that does nothing would be accepted on, and how often the judge then
rejects), and on held-out renders of the hidden classes after the VAE round trip (truth known:
the guide should accept, and a judge that rejects is wrong; the floor of any hacking rate).

    .venv/bin/python scripts/guide_agreement.py --split tune --n 48 --draws 8 \\
        --out outputs/agreement_tune
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from doodl_pl.backbones import StableDiffusion
from doodl_pl.evaluation import load_run
from doodl_pl.shapes64 import quality
from doodl_pl.shapes64.agreement import agreement, draw_pool, hidden_targets, markdown_rows
from doodl_pl.shapes64.assets import SD
from doodl_pl.shapes64.benchmark import fit_run, method_config
from doodl_pl.shapes64.dataset import load_split
from doodl_pl.shapes64.guides import vocabulary_guide
from doodl_pl.shapes64.items import HIDDEN, build_items
from doodl_pl.shapes64.world import SHAPES


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--split", default="tune", choices=["tune", "eval"])
    p.add_argument("--n", type=int, default=48, help="vocabulary items")
    p.add_argument("--draws", type=int, default=8, help="vanilla draws per item")
    p.add_argument("--renders", type=int, default=600, help="held-out one-object renders read")
    p.add_argument(
        "--guides",
        nargs="+",
        default=["plain", "robust", "ensemble"],
        help="names (plain, robust, eot, ensemble) or resnet10t .safetensors files",
    )
    p.add_argument("--thresholds", nargs="+", type=float, default=[0.5, 0.9, 0.99])
    p.add_argument("--out", default="outputs/agreement")
    a = p.parse_args()
    out = Path(a.out)
    items = build_items("vocabulary", a.n, a.split, out / "items")
    pool = draw_pool(items, a.draws, out / "pool.jsonl")
    run_dir = out / "vanilla"
    over = {"sampler": "bdia", "gamma": 0.5, "num_inference_steps": 20}
    cfg = method_config("vocabulary", "vanilla", pool, run_dir, batch_size=32, overrides=over)
    fit_run(cfg, run_dir)  # resumes a killed run
    run = load_run(run_dir, pool)
    guides = {g: vocabulary_guide(g) for g in a.guides}
    targets = [r["item"]["class_index"] for r in run.rows]
    drawn = agreement(run.tensor(), targets, guides, tuple(a.thresholds))
    print(f"\n{len(targets)} vanilla draws (BDIA γ 0.5, T 20) of {a.n} {a.split} vocabulary items; "
          f"judge-valid {drawn[0]['valid']:.3f}\n\n{markdown_rows(drawn)}")  # fmt: skip

    images, records = load_split(f"{a.split}_one", a.renders)
    keep = hidden_targets(records, HIDDEN)
    rt = quality.to_tensor(quality.vae_roundtrip(StableDiffusion(SD), images[keep]))
    truth = [SHAPES.index(records[i]["objects"][0]["shape"]) for i in keep]
    known = agreement(rt, truth, guides, tuple(a.thresholds))
    print(f"\n{len(keep)} {a.split} renders of the hidden classes through the VAE round trip "
          f"(truth known); judge-valid {known[0]['valid']:.3f}\n\n{markdown_rows(known)}")  # fmt: skip
    report = {"args": vars(a), "vanilla_draws": drawn, "vae_roundtrip": known}
    (out / "agreement.json").write_text(json.dumps(report, indent=1))
    print(f"\nwrote {out / 'agreement.json'}")


if __name__ == "__main__":
    main()
