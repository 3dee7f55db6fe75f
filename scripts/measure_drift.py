#!/usr/bin/env python
"""How far the reversible engine's rebuilt x_T drifts from the true one in a real DOODL step, per
setting (sampler, γ, state dtype, T, compiled UNet), on the shipped Shapes-64 text demo.

Each row is one DOODL step (m = 1) on the demo's first ``--items`` items with
``drift_tolerance: null`` (measure, do not fail); the last column says whether the default
tolerance would accept it.

    .venv/bin/python scripts/measure_drift.py                 # about 5 min on 2 CPU cores
    .venv/bin/python scripts/measure_drift.py --compile       # adds compile_unet rows (slow start)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import yaml

from doodl_pl.engines import ReversibleEngine
from doodl_pl.main import main as doodl_main
from doodl_pl.shapes64.benchmark import method_config

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = [
    {"sampler": "edict", "num_inference_steps": 20},
    {"sampler": "edict", "num_inference_steps": 50},
    {"sampler": "edict", "num_inference_steps": 20, "state_dtype": "float32"},
    {"sampler": "edict", "num_inference_steps": 50, "state_dtype": "float32"},
    {"sampler": "bdia", "num_inference_steps": 20},
    {"sampler": "bdia", "num_inference_steps": 50},
    {"sampler": "bdia", "num_inference_steps": 50, "state_dtype": "float32"},
    {"sampler": "bdia", "gamma": 0.5, "num_inference_steps": 20},
    {"sampler": "bdia", "gamma": 0.5, "num_inference_steps": 50},
    {"sampler": "bdia", "gamma": 0.5, "num_inference_steps": 20, "state_dtype": "float32"},
]
COMPILED = [
    {"sampler": "edict", "num_inference_steps": 20, "backbone.init_args.compile_unet": True},
    {"sampler": "bdia", "num_inference_steps": 20, "backbone.init_args.compile_unet": True},
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--items", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="also measure compile_unet: true")
    p.add_argument("--out", default=None, help="write the rows as JSON here")
    a = p.parse_args()
    tol = ReversibleEngine().drift_tolerance
    items = ROOT / "configs" / "demo" / "data" / "text.jsonl"
    rows = []
    print(f"| setting | max drift (relative) | default tolerance {tol:g} |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for k, setting in enumerate(SETTINGS + (COMPILED if a.compile else [])):
            out = Path(tmp) / f"run{k}"
            over = {
                "opt_steps": 1,
                "engine": {"class_path": "doodl_pl.engines.ReversibleEngine",
                           "init_args": {"drift_tolerance": None}},
                **setting,
            }  # fmt: skip
            cfg = method_config(
                "text", "doodl", items, out, batch_size=a.items, overrides=over,
                config_dir=ROOT / "configs" / "benchmark",
            )  # fmt: skip
            cfg["data"]["init_args"]["limit"] = a.items
            path = Path(tmp) / f"run{k}.yaml"
            path.write_text(yaml.safe_dump(cfg))
            doodl_main(["fit", "--config", str(path)])
            lines = (out / "manifest.jsonl").read_text().splitlines()
            drift = max(json.loads(line)["max_drift"] for line in lines)
            label = ", ".join(f"{key.split('.')[-1]} {v}" for key, v in setting.items())
            ok = "accepted" if drift <= tol else "item fails"
            print(f"| {label} | {drift:.1e} | {ok} |", flush=True)
            rows.append({**setting, "max_drift": drift})
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=1))
        print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
