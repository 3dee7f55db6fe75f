"""Lightning callbacks for DOODL runs (installed as ``doodl_pl.callbacks``)."""

from .image_logger import ImageLogger, make_grid
from .metrics import StepMetrics
from .perturb import PerturbLatents
from .progress import ItemProgressBar
from .renormalize import RenormalizeLatents
from .run_metrics import RunMetrics
from .tie import TieLatents

__all__ = [
    "ImageLogger",
    "ItemProgressBar",
    "PerturbLatents",
    "RenormalizeLatents",
    "RunMetrics",
    "StepMetrics",
    "TieLatents",
    "make_grid",
]
