"""Optimizers for latent traversal."""

from .doodl_sgd import DoodlSGD

__all__ = ["DoodlSGD"]
