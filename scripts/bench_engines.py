#!/usr/bin/env python
"""Time and measure the gradient engines on an EDICT chain.

Prints a table; with ``--json`` one JSON object per (engine, T) line:
``{"engine", "T", "step_s", "generate_s", "ratio", "peak_mem_mb", "grad_cos_vs_autograd"}``.

``step_s`` is one optimisation step (forward + backward), ``generate_s`` one no-grad EDICT
generation, ``ratio = step_s / generate_s``. ``peak_mem_mb`` is the CUDA allocator's peak above
the baseline on GPU, and the peak bytes held by autograd graphs on CPU (see SavedTensorMeter).

    python scripts/bench_engines.py                      # tiny UNet, CPU
    python scripts/bench_engines.py --sd15 --device cuda # SD-1.5 architecture, random weights
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time

import diffusers
import torch

from doodl_pl.engines import make_engine
from doodl_pl.models import LatentUNetEps
from doodl_pl.sampling import EdictChain, Schedule, official_edict_scheduler
from doodl_pl.testing import sd15_unet, tiny_text_condition, tiny_unet
from doodl_pl.utils import SavedTensorMeter


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--engines", nargs="+", default=["reversible", "checkpoint", "autograd"])
    p.add_argument("--steps", nargs="+", type=int, default=[10, 25, 50])
    p.add_argument("--sd15", action="store_true", help="SD-1.5-architecture UNet, 64x64 latents")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--dtype", default=None, help="UNet dtype (default: float16 on cuda, else float32)"
    )
    p.add_argument("--state-dtype", default="float64")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--json", action="store_true")
    return p.parse_args()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    args = parse()
    diffusers.utils.logging.set_verbosity_error()
    device = args.device
    dtype = getattr(torch, args.dtype or ("float16" if device.startswith("cuda") else "float32"))
    if args.sd15:
        unet, size, dim, length = sd15_unet(dtype), 64, 768, 77
    else:
        unet, size, dim, length = tiny_unet(dtype=dtype), 8, 16, 5
    model = LatentUNetEps(unet.to(device))
    cond = tiny_text_condition(args.batch, dim, length, args.guidance, dtype=dtype)
    cond.embeds, cond.null_embeds = cond.embeds.to(device), cond.null_embeds.to(device)
    state_dtype = getattr(torch, args.state_dtype)
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(args.batch, 4, size, size, generator=g).to(device)
    target = torch.randn(x_T.shape, generator=g).to(device)

    def loss_fn(x0, y0):
        return ((x0 - target) ** 2).mean() + ((y0 - target) ** 2).mean()

    rows = []
    for steps in args.steps:
        chain = EdictChain(
            model,
            Schedule.from_scheduler(official_edict_scheduler(), steps),
            cond,
            state_dtype=state_dtype,
        )
        gen = []
        for _ in range(args.repeat):
            sync(device)
            t0 = time.perf_counter()
            chain.sample(x_T)
            sync(device)
            gen.append(time.perf_counter() - t0)
        generate_s = statistics.median(gen)
        reference = None
        for name in args.engines:
            engine = make_engine(name)
            times, peak, grad = [], None, None
            try:
                for _ in range(args.repeat):
                    x = x_T.clone().requires_grad_(True)
                    if device.startswith("cuda"):
                        torch.cuda.empty_cache()
                        torch.cuda.reset_peak_memory_stats()
                        base = torch.cuda.memory_allocated()
                        meter = contextlib.nullcontext()
                    else:
                        meter = SavedTensorMeter()
                    sync(device)
                    t0 = time.perf_counter()
                    with meter:
                        x0, y0 = engine(chain, (x, x))
                        loss_fn(x0, y0).backward()
                    sync(device)
                    times.append(time.perf_counter() - t0)
                    if device.startswith("cuda"):
                        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
                    else:
                        peak = meter.peak_mb
                    grad = x.grad.detach().double().flatten()
                    del x0, y0
            except torch.OutOfMemoryError:
                torch.cuda.empty_cache()
                rows.append(
                    dict(
                        engine=name,
                        T=steps,
                        step_s=None,
                        generate_s=generate_s,
                        ratio=None,
                        peak_mem_mb=None,
                        grad_cos_vs_autograd=None,
                    )
                )
                continue
            if name == "autograd":
                reference = grad
            rows.append(
                dict(
                    engine=name,
                    T=steps,
                    step_s=statistics.median(times),
                    generate_s=generate_s,
                    ratio=statistics.median(times) / generate_s,
                    peak_mem_mb=peak,
                    grad=grad,
                )
            )
        for row in rows:
            if row["T"] == steps and "grad" in row:
                grad = row.pop("grad")
                row["grad_cos_vs_autograd"] = (
                    None
                    if reference is None
                    else float(torch.nn.functional.cosine_similarity(grad, reference, dim=0))
                )
    for row in rows:
        if args.json:
            print(json.dumps(row), flush=True)
    if not args.json:
        model_name = "SD-1.5 arch (random)" if args.sd15 else "tiny UNet"
        print(
            f"# {model_name}, {device}, UNet {dtype}, state {state_dtype}, batch {args.batch}, "
            f"CFG {args.guidance}, median of {args.repeat}"
        )
        print(
            f"{'engine':<11}{'T':>4}{'step_s':>10}{'generate_s':>12}{'ratio':>8}"
            f"{'peak_mem_mb':>13}{'cos_vs_ag':>11}"
        )
        fmt = lambda v, f: "n/a" if v is None else format(v, f)  # noqa: E731
        for r in rows:
            print(
                f"{r['engine']:<11}{r['T']:>4}{fmt(r['step_s'], '.4f'):>10}"
                f"{fmt(r['generate_s'], '.4f'):>12}{fmt(r['ratio'], '.2f'):>8}"
                f"{fmt(r['peak_mem_mb'], '.2f'):>13}{fmt(r['grad_cos_vs_autograd'], '.6f'):>11}"
            )


if __name__ == "__main__":
    main()
