"""Evaluation of generated outputs: CLIP score, validity, FID, aesthetic and Shapes-64 checks."""

from .evaluate import EvalConfig, Evaluator, main, markdown, write_results
from .paired import paired_difference, paired_markdown
from .run import RunOutputs, load_run
from .stats import Estimate, bootstrap, mean, proportion

__all__ = [
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
    "mean",
    "proportion",
    "write_results",
]
