#!/usr/bin/env python
"""Round-trip drift of the exactly invertible chains: ‖invert(sample(x)) − x‖ / ‖x‖.

BDIA for several γ and EDICT (p = 0.93), with UNet and latent state both in float64 or both in
float32, at T ∈ {10, 20, 50}; tiny random UNet, CFG 7.5. Prints one table (T × γ per dtype).

    python scripts/bench_inversion.py
"""

from __future__ import annotations

import argparse

import diffusers
import torch

from doodl_pl.engines.bench import drift_table
from doodl_pl.models import LatentUNetEps
from doodl_pl.testing import tiny_text_condition, tiny_unet


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", nargs="+", type=int, default=[10, 20, 50])
    p.add_argument("--gammas", nargs="+", type=float, default=[0.5, 0.8, 0.9, 0.95, 1.0])
    a = p.parse_args()
    diffusers.utils.logging.set_verbosity_error()
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rows = drift_table(
        lambda dt: LatentUNetEps(tiny_unet(dtype=dt)),
        lambda dt: tiny_text_condition(2, dtype=dt),
        x,
        a.steps,
        a.gammas,
    )
    cols = [f"bdia γ={g:g}" for g in a.gammas] + ["edict p=0.93"]
    for dtype in ("float64", "float32"):
        print(f"\n{dtype} (UNet and state)\n\n| T | " + " | ".join(cols) + " |")
        print("|---" * (len(cols) + 1) + "|")
        for T in a.steps:
            vals = [r["drift"] for r in rows if r["dtype"] == dtype and r["T"] == T]
            print(f"| {T} | " + " | ".join(f"{v:.1e}" for v in vals) + " |")


if __name__ == "__main__":
    main()
