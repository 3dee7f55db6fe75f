"""doodl_pl: DOODL (Direct Optimization Of Diffusion Latents) on PyTorch Lightning.

In a notebook: ``doodl_pl.run(module, items)`` (see :func:`doodl_pl.api.run`).
"""

__version__ = "0.1.0"

__all__ = ["__version__", "run"]


def run(*args, **kwargs):
    """:func:`doodl_pl.api.run`, imported on first use (``import doodl_pl`` stays light)."""
    from .api import run as _run

    return _run(*args, **kwargs)
