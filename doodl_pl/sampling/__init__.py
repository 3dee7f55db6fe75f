"""Sampling chains: EDICT (exactly invertible) and DDIM."""

from .chain import Chain, ReversibleChain, State
from .ddim import DdimChain
from .edict import EdictChain, check_mix
from .schedule import Schedule, official_edict_scheduler, sd1_scheduler

__all__ = [
    "Chain",
    "DdimChain",
    "EdictChain",
    "ReversibleChain",
    "Schedule",
    "State",
    "check_mix",
    "official_edict_scheduler",
    "sd1_scheduler",
]
