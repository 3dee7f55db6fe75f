"""Lightning callbacks for DOODL runs (installed as ``doodl_pl.callbacks``)."""

from .image_logger import ImageLogger, make_grid
from .metrics import StepMetrics
from .perturb import PerturbLatents
from .renormalize import RenormalizeLatents
from .tie import TieLatents

__all__ = [
    "ImageLogger",
    "PerturbLatents",
    "RenormalizeLatents",
    "StepMetrics",
    "TieLatents",
    "make_grid",
]
