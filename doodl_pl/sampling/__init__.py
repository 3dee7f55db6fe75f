"""Sampling chains: EDICT and BDIA-DDIM (exactly invertible) and DDIM."""

from .bdia import BdiaChain, check_gamma
from .chain import Chain, ReversibleChain, State
from .ddim import DdimChain
from .edict import EdictChain, check_mix
from .schedule import Schedule, official_edict_scheduler, sd1_scheduler

__all__ = [
    "BdiaChain",
    "Chain",
    "DdimChain",
    "EdictChain",
    "ReversibleChain",
    "Schedule",
    "State",
    "check_gamma",
    "check_mix",
    "official_edict_scheduler",
    "sd1_scheduler",
]
