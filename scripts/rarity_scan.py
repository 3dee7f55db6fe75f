#!/usr/bin/env python
"""The base rate of every (prompt word, target class) pair on Shapes-64: vanilla draws of
"a {color} {word}" for each word, read by the judge (``doodl_pl.shapes64.rarity``). The rarity
sweep's target sets are chosen from this table (on the tune split).

    .venv/bin/python scripts/rarity_scan.py --split tune --per-word 64 --out outputs/rarity_tune
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from doodl_pl.evaluation import load_run
from doodl_pl.evaluation.validity import Validity
from doodl_pl.main import main as doodl_main
from doodl_pl.shapes64.assets import EVAL_CLASSIFIER
from doodl_pl.shapes64.benchmark import method_config
from doodl_pl.shapes64.rarity import base_rates, word_items
from doodl_pl.shapes64.world import SHAPES


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--split", default="tune", choices=["tune", "eval"])
    p.add_argument("--per-word", type=int, default=64, help="vanilla draws per prompt word")
    p.add_argument("--out", default="outputs/rarity")
    a = p.parse_args()
    out = Path(a.out)
    items = word_items(a.split, a.per_word, out / "items.jsonl")
    run_dir = out / "vanilla"
    over = {"sampler": "bdia", "gamma": 0.5, "num_inference_steps": 20, "loss": None}
    cfg = method_config("vocabulary", "vanilla", items, run_dir, batch_size=32, overrides=over)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    doodl_main(["fit", "--config", str(run_dir / "run.yaml")])  # resumes a killed run
    run = load_run(run_dir, items)
    judge = Validity(**EVAL_CLASSIFIER, num_classes=len(SHAPES), input_size=64)
    words = [r["id"].rsplit("_", 1)[0] for r in run.rows]
    rates = base_rates(words, judge.predict(run.tensor()).tolist())
    print(f"\nShare of {a.per_word} vanilla draws (BDIA γ 0.5, T 20, {a.split} seeds) the judge reads "
          "as each class, per prompt word\n")  # fmt: skip
    print("| prompt word | " + " | ".join(SHAPES) + " |")
    print("|---|" + "---|" * len(SHAPES))
    for word, row in rates.items():
        print(f"| {word} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
    report = {
        "args": vars(a),
        "classes": list(SHAPES),
        "rates": {k: v.tolist() for k, v in rates.items()},
    }
    (out / "rarity.json").write_text(json.dumps(report, indent=1))
    print(f"\nwrote {out / 'rarity.json'}")


if __name__ == "__main__":
    main()
