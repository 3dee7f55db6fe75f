"""doodl_pl: DOODL (Direct Optimization Of Diffusion Latents) on PyTorch Lightning."""

__version__ = "0.1.0"

__all__ = ["__version__"]
