"""Sampling chains: EDICT and BDIA-DDIM (exactly invertible) and DDIM; the samplers that
configure them."""

from .bdia import BdiaChain, check_gamma
from .chain import Chain, ReversibleChain, State
from .ddim import DdimChain
from .edict import EdictChain, check_mix
from .samplers import SAMPLERS, Bdia, Ddim, Edict, Sampler, SamplerName, make_sampler
from .schedule import Schedule, official_edict_scheduler, sd1_scheduler

__all__ = [
    "SAMPLERS",
    "Bdia",
    "BdiaChain",
    "Chain",
    "Ddim",
    "DdimChain",
    "Edict",
    "EdictChain",
    "ReversibleChain",
    "Sampler",
    "SamplerName",
    "Schedule",
    "State",
    "check_gamma",
    "check_mix",
    "make_sampler",
    "official_edict_scheduler",
    "sd1_scheduler",
]
