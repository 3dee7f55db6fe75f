"""The sampler a module runs: a configured object that builds its chain and says what it can do.

Configured like the gradient engines, by ``class_path``::

    sampler: {class_path: doodl_pl.sampling.Bdia, init_args: {gamma: 1.0}}

or by name (``sampler: bdia``), which :func:`make_sampler` turns into the same object. This is
the one place that maps names to classes; modules, benchmarks and scripts ask the object
(``inverts``, ``calls_per_step``, ``images``) instead of branching on its name.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from .bdia import BdiaChain, check_gamma
from .chain import ChainBase
from .ddim import DdimChain
from .edict import EdictChain, check_mix
from .schedule import Schedule

__all__ = ["SAMPLERS", "Bdia", "Ddim", "Edict", "Sampler", "SamplerName", "make_sampler"]

SamplerName = Literal["edict", "bdia", "ddim"]


class Sampler:
    """A sampling method with its settings.

    Attributes:
        name: the short name configs may use.
        inverts: whether its chain inverts exactly (edits of real images need it).
        calls_per_step: UNet calls per denoising step (CFG batched into one call).
        images: final latents that are images (DOODL decodes and scores each).
    """

    name: ClassVar[str]
    inverts: ClassVar[bool] = True
    calls_per_step: ClassVar[int] = 1
    images: ClassVar[int] = 1

    def chain(
        self, model: Any, schedule: Schedule, cond: Any, state_dtype: torch.dtype | None
    ) -> ChainBase:
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, chain: ChainBase, x: Tensor, y: Tensor) -> Tensor:
        """The main final latent from the initial pair (x_T, y_T)."""
        return chain.outputs(chain.sample(x, y))[0]

    def describe(self) -> str:
        """``sampler`` and its settings as a config names them (for messages)."""
        return f"`sampler` {self.name!r}"


class Edict(Sampler):
    """EDICT (Wallace et al. 2023): two coupled latents, two ε evaluations per step.

    Args:
        mix: the mixing weight p, in (0, 1].
    """

    name = "edict"
    calls_per_step = 2
    images = 2

    def __init__(self, mix: float = 0.93) -> None:
        self.mix = check_mix(mix)

    def chain(self, model, schedule, cond, state_dtype) -> EdictChain:
        return EdictChain(model, schedule, cond, self.mix, state_dtype)


class Bdia(Sampler):
    """BDIA-DDIM (Zhang et al. 2024): exactly invertible with one ε evaluation per step.

    Args:
        gamma: γ, the older latent's weight, in (0, 1]; below 1 inversion amplifies round-off
            by γ^−T.
    """

    name = "bdia"

    def __init__(self, gamma: float = 1.0) -> None:
        self.gamma = check_gamma(gamma)

    def chain(self, model, schedule, cond, state_dtype) -> BdiaChain:
        return BdiaChain(model, schedule, cond, self.gamma, state_dtype)

    def describe(self) -> str:
        return f"`sampler` 'bdia', `gamma` {self.gamma}"


class Ddim(Sampler):
    """Deterministic DDIM (η = 0): generation only; it cannot give a real image back exactly."""

    name = "ddim"
    inverts = False

    def chain(self, model, schedule, cond, state_dtype) -> DdimChain:
        return DdimChain(model, schedule, cond, state_dtype)

    @torch.no_grad()
    def generate(self, chain: ChainBase, x: Tensor, y: Tensor) -> Tensor:
        return chain.sample(x)


SAMPLERS: dict[str, type[Sampler]] = {c.name: c for c in (Edict, Bdia, Ddim)}


def make_sampler(sampler: str | Sampler | Mapping[str, Any], **settings: Any) -> Sampler:
    """The sampler object for a config entry: an object as is, a name (built with those of
    ``settings`` its class takes, e.g. ``mix`` for EDICT, ``gamma`` for BDIA), or a
    ``{class_path, init_args}`` mapping (as a YAML file holds it)."""
    if isinstance(sampler, Sampler):
        return sampler
    if isinstance(sampler, Mapping):
        module, _, name = str(sampler["class_path"]).rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        return cls(**dict(sampler.get("init_args") or {}))
    if sampler not in SAMPLERS:
        names = ", ".join(map(repr, SAMPLERS))
        raise ValueError(f"`sampler` must be one of {names}, got {sampler!r}")
    cls = SAMPLERS[sampler]
    own = inspect.signature(cls).parameters
    return cls(**{k: v for k, v in settings.items() if k in own})
