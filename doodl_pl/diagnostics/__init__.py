"""Diagnostics of DOODL's optimisation (not of its outputs: that is :mod:`doodl_pl.evaluation`)."""

from .landscape import DIRECTIONS, line_probe

__all__ = ["DIRECTIONS", "line_probe"]
