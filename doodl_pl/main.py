"""``doodl-pl``: the LightningCLI entry point."""

from __future__ import annotations

import sys

from lightning.pytorch.cli import LightningCLI

from .data.datamodule import DoodlDataModule
from .modules.base import GenerationModule

__all__ = ["DoodlCLI", "main"]

EXIT_ITEMS_FAILED = 3


class DoodlCLI(LightningCLI):
    """LightningCLI whose run config is stamped into every output PNG."""

    def before_fit(self) -> None:
        try:
            self.model.run_config = self.parser.dump(self.config, skip_none=True)
        except Exception:  # noqa: BLE001 - metadata only; never block a run on it
            self.model.run_config = None

    def after_fit(self) -> None:
        model = self.model
        rank = self.trainer.global_rank
        if rank == 0:
            print(
                f"doodl-pl: outputs in {model.writer.root.resolve()} (images/, manifest.jsonl)",
                file=sys.stderr,
            )
        if model.failed_ids:
            print(
                f"doodl-pl: {len(model.failed_ids)} item(s) failed on rank {rank}: "
                f"{sorted(model.failed_ids)[:10]}; see `reason` in manifest.jsonl",
                file=sys.stderr,
            )


def main(args: list[str] | None = None) -> DoodlCLI:
    """Build and run the CLI. Exits with status 3 when some items failed (console use)."""
    cli = DoodlCLI(
        GenerationModule,
        DoodlDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={
            "max_epochs": 1,
            "use_distributed_sampler": False,
            "enable_checkpointing": False,
            "num_sanity_val_steps": 0,
            "log_every_n_steps": 1,
        },
    )
    if args is None and getattr(cli.model, "failed_ids", None):
        sys.exit(EXIT_ITEMS_FAILED)
    return cli


if __name__ == "__main__":
    main()
