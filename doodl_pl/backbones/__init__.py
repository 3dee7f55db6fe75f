"""Diffusion backbones: the pieces around the ε model (VAE, text encoder, scheduler)."""

from .decoder_inversion import DecoderInversion
from .stable_diffusion import EDICT_SCHEDULER, StableDiffusion
from .stable_diffusion_xl import StableDiffusionXL

__all__ = ["EDICT_SCHEDULER", "DecoderInversion", "StableDiffusion", "StableDiffusionXL"]
