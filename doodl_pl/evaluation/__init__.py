"""Evaluation of generated outputs: CLIP score, validity, FID, aesthetic and Shapes-64 checks."""

from .cli import main
from .evaluator import EvalConfig, Evaluator
from .paired import paired_cost_ratio, paired_difference, paired_markdown
from .results import markdown, plot, side_by_side, write_results
from .run import RunOutputs, load_run
from .stats import Estimate, bootstrap, mean, proportion

__all__ = [
    "paired_cost_ratio",
    "paired_difference",
    "paired_markdown",
    "Estimate",
    "EvalConfig",
    "Evaluator",
    "RunOutputs",
    "bootstrap",
    "load_run",
    "main",
    "markdown",
    "plot",
    "side_by_side",
    "mean",
    "proportion",
    "write_results",
]
