"""``doodl-pl-train``: the LightningCLI that runs a Shapes-64 training recipe.

``doodl-pl-train fit --config configs/shapes64/train_<model>.yaml``; recipes live in
:mod:`doodl_pl.shapes64.recipes`, the data in :mod:`doodl_pl.shapes64.data`.
"""

from __future__ import annotations

import lightning.pytorch as pl

from .data import ShapesData

__all__ = ["console", "main"]


def main(args: list[str] | None = None):
    """Build and run the training CLI (``args`` as on the command line; None reads sys.argv)."""
    from lightning.pytorch.cli import LightningCLI

    return LightningCLI(
        pl.LightningModule,
        ShapesData,
        subclass_mode_model=True,
        args=args,
        save_config_kwargs={"overwrite": True},
    )


def console() -> None:
    """Console-script entry point (a returned CLI object must not become the exit status)."""
    main()


if __name__ == "__main__":
    console()
