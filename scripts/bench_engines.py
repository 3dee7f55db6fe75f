#!/usr/bin/env python
"""Time and measure the gradient engines on EDICT and BDIA chains.

Prints a table; with ``--json`` one JSON object per (sampler, engine, T) line:
``{"engine", "sampler", "T", "step_s", "generate_s", "ratio", "peak_mem_mb",
"grad_cos_vs_autograd"}`` (reversible rows add ``vs_checkpoint``).

``step_s`` is one optimisation step (forward + backward), ``generate_s`` one no-grad generation
(EDICT for EDICT rows, DDIM for BDIA rows), ``ratio = step_s / generate_s`` (median of
per-repeat ratios). ``peak_mem_mb`` is the CUDA allocator's peak above the baseline on GPU, and
the peak bytes held by autograd graphs on CPU (see SavedTensorMeter).

    python scripts/bench_engines.py                      # tiny UNet, CPU
    python scripts/bench_engines.py --sd15 --device cuda # SD-1.5 architecture, random weights
"""

from __future__ import annotations

import argparse
import json
import sys

import diffusers
import torch

from doodl_pl.engines.bench import BenchSetup, bench_engines, format_table
from doodl_pl.models import LatentUNetEps
from doodl_pl.sampling import SAMPLERS
from doodl_pl.testing import sd15_unet, tiny_text_condition, tiny_unet


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    reversible = [name for name, cls in SAMPLERS.items() if cls.inverts]
    p.add_argument("--samplers", nargs="+", default=reversible, choices=reversible)
    p.add_argument("--engines", nargs="+", default=["reversible", "checkpoint", "autograd"])
    p.add_argument("--steps", nargs="+", type=int, default=[10, 25, 50])
    p.add_argument("--sd15", action="store_true", help="SD-1.5-architecture UNet, 64x64 latents")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--dtype",
        nargs="+",
        default=None,
        help="UNet dtype(s), measured in turn (default: float16 on cuda, else float32)",
    )
    p.add_argument("--state-dtype", default="float64")
    p.add_argument("--gamma", type=float, default=1.0, help="BDIA's gamma")
    p.add_argument("--compile", action="store_true", help="torch.compile the UNet forward")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", default=None, help="also write all rows to this JSON file")
    return p.parse_args()


def main() -> None:
    args = parse()
    diffusers.utils.logging.set_verbosity_error()
    device = torch.device(args.device)
    dtypes = args.dtype or ["float16" if device.type == "cuda" else "float32"]
    all_rows = []
    for dtype_name in dtypes:
        dtype = getattr(torch, dtype_name)
        if args.sd15:
            unet, size, dim, length = sd15_unet(dtype), 64, 768, 77
        else:
            unet, size, dim, length = tiny_unet(dtype=dtype), 8, 16, 5
        model = LatentUNetEps(unet.to(device), compile=args.compile)
        cond = tiny_text_condition(args.batch, dim, length, args.guidance, dtype=dtype)
        cond.embeds, cond.null_embeds = cond.embeds.to(device), cond.null_embeds.to(device)
        x_T = torch.randn(args.batch, 4, size, size, generator=torch.Generator().manual_seed(0))
        setup = BenchSetup(
            model, cond, x_T.to(device), getattr(torch, args.state_dtype), gamma=args.gamma
        )
        model_name = "SD-1.5 arch (random)" if args.sd15 else "tiny UNet"
        title = (
            f"# {model_name}, {device}, UNet {dtype_name}, state {args.state_dtype}, batch "
            f"{args.batch}, CFG {args.guidance}, gamma {args.gamma}, compile {args.compile}, "
            f"median of {args.repeat}"
        )
        if not args.json:
            print(title)
            print(format_table([], header=True), flush=True)
        rows = bench_engines(
            setup,
            args.samplers,
            args.engines,
            args.steps,
            args.repeat,
            progress=None if args.json else lambda line: print(line, flush=True),
        )
        for row in rows:
            if args.json:
                print(json.dumps(row), flush=True)
            all_rows.append(dict(row, unet_dtype=dtype_name, model=model_name))
        del model, unet
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if args.out:
        meta = {"device": str(device), "state_dtype": args.state_dtype, "batch": args.batch}
        if device.type == "cuda":
            meta["gpu"] = torch.cuda.get_device_name()
        meta.update(cfg=args.guidance, gamma=args.gamma, compile=args.compile, repeat=args.repeat)
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "rows": all_rows}, f, indent=1)
        print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
