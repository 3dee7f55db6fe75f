"""How far a DOODL step can go: the guide score along the loss gradient from x_T.

For each item the gradient g of the optimised loss (step-0 cuts) with respect to the tied
initial latent is computed through the module's own chain and engine. The start is then moved
by ``a`` along a unit-scaled direction d and renormalised to its norm (as DOODL does),

    x_T(a) = ‖x_T‖ · (x_T − a·d) / ‖x_T − a·d‖,   mean |d| = 1 per item,

and its image is scored with the fixed score cuts. Directions: ``gradient`` (g), ``sign``
(sign g, the direction a binding element-wise clip gives) and ``random`` (Gaussian, from the
item's seed): on a smooth loss a small step along g lowers the score and a random one hardly
moves it; where even small gradient steps raise it, the loss is rugged along its own gradient
and local steps gain little per call.

With a ``judge`` module (e.g. the same model at more sampling steps) the moved starts are scored
through the judge's chain instead: whether a step found on one chain still helps on another.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..utils.seeding import STREAM_PROBE, item_generator

__all__ = ["DIRECTIONS", "line_probe"]

DIRECTIONS = ("gradient", "sign", "random")


def _unit(d: Tensor) -> Tensor:
    return d / d.flatten(1).abs().mean(1).clamp_min(1e-30).view(-1, *[1] * (d.dim() - 1))


def _gradient(module, items: list[dict[str, Any]], x: Tensor, cond) -> Tensor:
    xp, yp = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    with torch.enable_grad():
        per_item, _ = module.optimised_loss(items, cond, xp, yp, 0)
        per_item.sum().backward()
    return (xp.grad + yp.grad).detach()  # the tied pair's gradient, as DoodlSGD sees it


@torch.no_grad()
def line_probe(
    module,
    items: list[dict[str, Any]],
    steps: Sequence[float],
    directions: Sequence[str] = DIRECTIONS,
    judge=None,
) -> list[dict[str, Any]]:
    """Score change along each direction for each step size ``a``.

    Args:
        module: a :class:`~doodl_pl.modules.DoodlModule` (its backbone, chain, engine and loss).
        items: generated items (``prompt``, ``seed`` and what the loss reads).
        steps: step sizes a (mean per-element move before renormalisation).
        directions: a subset of :data:`DIRECTIONS`.
        judge: the module whose chain and score the moved starts are scored with (default
            ``module``); it must share the latent shape.

    Returns:
        One row per (direction, a): ``start`` (mean score at x_T), ``change`` (mean score
        change), ``improved`` (fraction of items whose score fell), ``per_item`` (changes).
    """
    unknown = sorted(set(directions) - set(DIRECTIONS))
    if unknown:
        raise ValueError(f"`directions` must be among {DIRECTIONS}, got {unknown}")
    if not steps or any(a <= 0 for a in steps):
        raise ValueError(f"`steps` must be positive step sizes, got {list(steps)}")
    dev, dtype = module.device, module.state_dtype
    x = torch.stack([module.noise(it["seed"]) for it in items]).to(dev, dtype)
    cond = module.condition(items)
    judge = module if judge is None else judge
    jcond = cond if judge is module else judge.condition(items)
    norm = x.flatten(1).norm(dim=1).view(-1, *[1] * (x.dim() - 1))
    _, start = judge.evaluate(judge.generate(x, x.clone(), jcond), items)
    grad = _gradient(module, items, x, cond) if {"gradient", "sign"} & set(directions) else None
    rows = []
    for kind in directions:
        if kind == "random":
            d = torch.stack(
                [
                    torch.randn(x.shape[1:], generator=item_generator(it["seed"], STREAM_PROBE))
                    for it in items
                ]
            ).to(dev, dtype)
        else:
            d = grad.sign() if kind == "sign" else grad
        d = _unit(d)
        for a in steps:
            moved = x - a * d
            moved = moved * norm / moved.flatten(1).norm(dim=1).view_as(norm)
            _, score = judge.evaluate(judge.generate(moved, moved.clone(), jcond), items)
            change = (score - start).float()
            rows.append(
                {
                    "direction": kind,
                    "step": float(a),
                    "start": float(start.mean()),
                    "change": float(change.mean()),
                    "improved": float((change < 0).float().mean()),
                    "per_item": change.tolist(),
                }
            )
    return rows
