"""Time, memory and gradient accuracy of the gradient engines on EDICT and BDIA chains.

One row per (sampler, engine, T). ``step_s`` is one optimisation step (forward + backward to the
initial pair), ``generate_s`` one no-grad generation: EDICT's own for EDICT rows, plain DDIM's for
BDIA rows (the one-evaluation baseline BDIA is measured against). Repeats are interleaved (one
generation, then every engine, then the next repeat) and each ratio is the median of per-repeat
ratios, so a machine that slows down for a while slows numerator and denominator alike.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..sampling.bdia import BdiaChain
from ..sampling.edict import EdictChain
from ..sampling.samplers import Ddim, make_sampler
from ..sampling.schedule import Schedule, official_edict_scheduler
from ..utils.memory import SavedTensorMeter
from . import make_engine

__all__ = ["BenchSetup", "bench_engines", "drift_table", "format_table", "round_trip_drift"]


@dataclass
class BenchSetup:
    """What every row runs on: an ε model, its conditioning and the initial latents."""

    model: Any
    cond: Any
    x_T: Tensor
    state_dtype: torch.dtype = torch.float64
    gamma: float = 1.0
    mix: float = 0.93


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _chains(setup: BenchSetup, sampler: str, steps: int):
    """The sampler's chain, and the chain whose generation it is timed against: its own for
    two-evaluation samplers (EDICT), plain DDIM's for one-evaluation ones (BDIA)."""
    schedule = Schedule.from_scheduler(official_edict_scheduler(), steps)
    args = (setup.model, schedule, setup.cond, setup.state_dtype)
    sampling = make_sampler(sampler, mix=setup.mix, gamma=setup.gamma)
    chain = sampling.chain(*args)
    return chain, (Ddim().chain(*args) if sampling.calls_per_step == 1 else chain)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """(seconds, result) of ``fn()``, the device synchronised before and after."""
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


def _guarded(fn: Callable[[], Any], device: torch.device) -> tuple[float | None, Any]:
    """``timed(fn)``, or ``(None, None)`` when the step runs out of GPU memory."""
    try:
        return timed(fn, device)
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return None, None


def bench_engines(
    setup: BenchSetup,
    samplers: Iterable[str] = ("edict", "bdia"),
    engines: Iterable[str] = ("reversible", "checkpoint", "autograd"),
    steps: Iterable[int] = (10, 25, 50),
    repeat: int = 5,
    progress: Callable[[str], None] | None = None,
    warmup: bool = True,
) -> list[dict[str, Any]]:
    """Measure every (sampler, engine, T) after one untimed warm-up run of each; returns rows in
    the ``--json`` format."""
    device = setup.x_T.device
    g = torch.Generator().manual_seed(1)
    target = torch.randn(setup.x_T.shape, generator=g).to(device)
    engines = list(engines)
    rows = []
    for sampler in samplers:
        for T in steps:
            chain, gen_chain = _chains(setup, sampler, T)
            gen_s, step_s = [], {e: [] for e in engines}
            peak, grad = {}, {}
            if warmup:  # untimed: allocator, caches and any torch.compile graphs
                gen_chain.sample(setup.x_T)
                for name in engines:
                    _guarded(lambda n=name, c=chain: _one_step(n, c, setup.x_T, target), device)
            for _ in range(repeat):
                gen_s.append(timed(lambda c=gen_chain: c.sample(setup.x_T), device)[0])
                for name in engines:
                    seconds, out = _guarded(
                        lambda n=name, c=chain: _one_step(n, c, setup.x_T, target), device
                    )
                    step_s[name].append(seconds)
                    if out is not None:
                        peak[name], grad[name] = out
            ref = grad.get("autograd")
            for name in engines:
                times = step_s[name]
                ok = [s for s in times if s is not None]
                row = dict(
                    engine=name,
                    sampler=sampler,
                    T=T,
                    step_s=statistics.median(ok) if ok else None,
                    generate_s=statistics.median(gen_s),
                    ratio=(
                        statistics.median(s / q for s, q in zip(times, gen_s, strict=True))
                        if len(ok) == len(times)
                        else None
                    ),
                    peak_mem_mb=peak.get(name),
                    grad_cos_vs_autograd=(
                        None
                        if ref is None or name not in grad
                        else float(torch.nn.functional.cosine_similarity(grad[name], ref, dim=0))
                    ),
                )
                if name == "reversible" and "checkpoint" in step_s and ok:
                    pairs = [
                        r / c
                        for r, c in zip(times, step_s["checkpoint"], strict=True)
                        if r is not None and c is not None
                    ]
                    row["vs_checkpoint"] = statistics.median(pairs) if pairs else None
                rows.append(row)
                if progress:
                    progress(format_table([row], header=False))
    return rows


def _one_step(name: str, chain, x_T: Tensor, target: Tensor) -> tuple[float, Tensor]:
    """One forward + backward; returns (peak MB held for backward, gradient on x_T)."""
    engine = make_engine(name)
    x = x_T.clone().requires_grad_(True)
    cuda = x.device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    meter = contextlib.nullcontext() if cuda else SavedTensorMeter()
    with meter:
        state = chain.outputs(engine(chain, (x, x)))
        loss = sum(((z - target) ** 2).mean() for z in state)
        loss.backward()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else meter.peak_mb
    return peak, x.grad.detach().double().flatten()


def format_table(rows: list[dict[str, Any]], header: bool = True) -> str:
    """Rows as the fixed-width table ``scripts/bench_engines.py`` prints."""

    def fmt(v, f):
        return "n/a" if v is None else format(v, f)

    lines = []
    if header:
        lines.append(
            f"{'sampler':<8}{'engine':<11}{'T':>4}{'step_s':>10}{'generate_s':>12}{'ratio':>8}"
            f"{'vs_ckpt':>9}{'peak_mem_mb':>13}{'cos_vs_ag':>11}"
        )
    for r in rows:
        lines.append(
            f"{r['sampler']:<8}{r['engine']:<11}{r['T']:>4}{fmt(r['step_s'], '.4f'):>10}"
            f"{fmt(r['generate_s'], '.4f'):>12}{fmt(r['ratio'], '.2f'):>8}"
            f"{fmt(r.get('vs_checkpoint'), '.2f'):>9}"
            f"{fmt(r['peak_mem_mb'], '.2f'):>13}{fmt(r['grad_cos_vs_autograd'], '.6f'):>11}"
        )
    return "\n".join(lines)


def round_trip_drift(chain, x: Tensor, y: Tensor | None = None) -> float:
    """‖invert(sample(x, y)) − (x, y)‖ / ‖(x, y)‖ over the whole initial state."""
    y = x if y is None else y
    rebuilt = chain.invert(*chain.sample(x, y))
    start = chain.prepare((x, y))
    num = sum(float(torch.sum((r - s).double() ** 2)) for r, s in zip(rebuilt, start, strict=True))
    den = sum(float(torch.sum(s.double() ** 2)) for s in start)
    return (num / den) ** 0.5


def drift_table(
    model_for: Callable[[torch.dtype], Any],
    cond_for: Callable[[torch.dtype], Any],
    x_T: Tensor,
    steps: Iterable[int] = (10, 20, 50),
    gammas: Iterable[float] = (0.5, 0.8, 0.9, 0.95, 1.0),
    dtypes: Iterable[torch.dtype] = (torch.float64, torch.float32),
    mix: float = 0.93,
) -> list[dict[str, Any]]:
    """Round-trip drift of BDIA for each γ (and of EDICT at ``mix``), model and state in each
    dtype, for each T."""
    rows = []
    for dtype in dtypes:
        model, cond, x = model_for(dtype), cond_for(dtype), x_T.to(dtype)
        for T in steps:
            schedule = Schedule.from_scheduler(official_edict_scheduler(), T)
            for gamma in gammas:
                chain = BdiaChain(model, schedule, cond, gamma, dtype)
                rows.append(
                    dict(sampler="bdia", gamma=gamma, T=T, dtype=str(dtype).split(".")[-1],
                         drift=round_trip_drift(chain, x))
                )  # fmt: skip
            chain = EdictChain(model, schedule, cond, mix, dtype)
            rows.append(
                dict(sampler="edict", mix=mix, T=T, dtype=str(dtype).split(".")[-1],
                     drift=round_trip_drift(chain, x))
            )  # fmt: skip
    return rows
