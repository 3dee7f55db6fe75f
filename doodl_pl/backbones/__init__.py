"""Diffusion backbones: the pieces around the ε model (VAE, text encoder, scheduler)."""

from .stable_diffusion import EDICT_SCHEDULER, StableDiffusion

__all__ = ["EDICT_SCHEDULER", "StableDiffusion"]
