"""``doodl-pl``: one command line: ``fit`` (the LightningCLI), ``evaluate``, ``grid``,
``train`` and ``benchmark``."""

from __future__ import annotations

import json
import sys
from argparse import ArgumentError
from pathlib import Path

from lightning.pytorch.cli import LightningCLI

from .config_errors import add_location, explain
from .data.datamodule import DoodlDataModule
from .hub import ModelLoadError
from .modules.base import GenerationModule
from .outputs import RECORD_MARK
from .quiet import quiet_libraries

__all__ = ["DoodlCLI", "console", "explain", "main", "summary"]

EXIT_BAD_INPUT = 2
EXIT_ITEMS_FAILED = 3
USER_ERRORS = (ValueError, FileNotFoundError, ModelLoadError, ArgumentError)


class DoodlCLI(LightningCLI):
    """LightningCLI whose run config is stamped into every output PNG, and whose errors say
    where in the config the argument they name was (a note on the exception)."""

    def __init__(self, *args, **kwargs) -> None:
        try:
            super().__init__(*args, **kwargs)
        except USER_ERRORS as err:
            config = getattr(self, "config", None)  # absent when parsing itself failed
            if config is not None:
                sub = self.subcommand if getattr(self, "subcommand", None) else None
                add_location(err, (config[sub] if sub else config).as_dict())
            raise

    def before_fit(self) -> None:
        try:
            # Every resolved value, nulls included: what a resume is compared against.
            self.model.run_config = self.parser.dump(self.config, skip_none=False)
        except Exception:  # noqa: BLE001 - metadata only; never block a run on it
            self.model.run_config = None
        if self.model.run_config:
            self.model.writer.check_resume(self.model.run_config)
        if self.model.run_config and self.trainer.is_global_zero:
            root = self.model.writer.root
            root.mkdir(parents=True, exist_ok=True)
            (root / "config.yaml").write_text(f"{RECORD_MARK}\n{self.model.run_config}")

    def after_fit(self) -> None:
        model = self.model
        rank = self.trainer.global_rank
        if rank == 0:
            print(f"doodl-pl: {summary(model.writer.root)}", file=sys.stderr)
        if model.failed_ids:
            print(
                f"doodl-pl: {len(model.failed_ids)} item(s) failed on rank {rank}: "
                f"{sorted(model.failed_ids)[:10]}; see `reason` in manifest.jsonl",
                file=sys.stderr,
            )


def summary(root: Path) -> str:
    """One line on a finished run: items ok and failed, mean loss start → end, where it is."""
    parts = []
    path = root / "run_metrics.json"
    if path.is_file():
        m = json.loads(path.read_text())
        items, failed = int(m.get("items", 0)), int(m.get("failed", 0))
        parts.append(f"{items - failed} item(s) ok, {failed} failed")
        start, end = m.get("loss_start"), m.get("loss_end")
        if isinstance(start, float) and start == start and end == end:
            parts.append(f"mean loss {start:.4f} → {end:.4f}")
        if "accepted_per_1000_calls" in m:
            parts.append(
                f"{int(m['accepted'])} accepted ({m['accepted_per_1000_calls']:.2f} per 1000 UNet calls)"
            )
    parts.append(f"outputs in {root.resolve()} (images/, manifest.jsonl)")
    return "; ".join(parts)


def _build(args: list[str] | None) -> DoodlCLI:
    return DoodlCLI(
        GenerationModule,
        DoodlDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        auto_configure_optimizers=False,
        save_config_callback=None,  # the config goes to <output_dir>/config.yaml instead
        parser_kwargs={"exit_on_error": False},
        trainer_defaults={
            "max_epochs": 1,
            "use_distributed_sampler": False,
            "enable_checkpointing": False,
            "num_sanity_val_steps": 0,
            "log_every_n_steps": 1,
        },
    )


def main(args: list[str] | None = None) -> DoodlCLI | list[dict]:
    """Build and run the CLI.

    The first word is the command (:data:`COMMANDS`): ``fit`` (and Lightning's other trainer
    commands) go to the LightningCLI, ``evaluate``, ``grid``, ``train`` and ``benchmark`` to their own
    parsers; no command, or ``--help``, lists them. From the console
    (``args`` is None) bad input ends in one ``doodl-pl: error: …`` line and exit status 2, and a
    run where some items failed exits with status 3. Called with ``args`` (tests, notebooks),
    errors propagate as exceptions.
    """
    argv = sys.argv[1:] if args is None else args
    quiet_libraries()
    if not argv or argv[0] in ("-h", "--help"):
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {text}" for name, (text, _) in COMMANDS.items()]
        print("usage: doodl-pl COMMAND ...\n\ncommands:\n" + "\n".join(lines))
        return []
    run = COMMANDS.get(argv[0], (None, None))[1]
    if run is not None:
        if args is not None:
            return run(argv[1:])
        try:
            return run(argv[1:])
        except USER_ERRORS as err:  # already phrased for the user (paths, option names)
            print(f"doodl-pl: error: {' '.join(str(err).split())}", file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
    if args is not None:
        return _build(args)
    try:
        cli = _build(None)
    except USER_ERRORS as err:
        print(f"doodl-pl: error: {explain(err)}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    if cli.model.failed_ids:
        sys.exit(EXIT_ITEMS_FAILED)
    return cli


def _evaluate(argv: list[str]) -> list[dict]:
    from .evaluation import main as evaluate
    from .shapes64.evaluation import PRESET

    return evaluate(argv, [PRESET])


def _grid(argv: list[str]) -> None:
    from .evaluation.cli import grid_main

    return grid_main(argv)


def _train(argv: list[str]):
    from .shapes64.train import main as train

    # its LightningCLI has one trainer command; `doodl-pl train --config C` means `fit`
    return train(argv if argv[:1] == ["fit"] else ["fit", *argv])


def _benchmark(argv: list[str]) -> None:
    from .shapes64.harness import main as benchmark

    return benchmark(argv)


# name → (what it does, the function that runs it on its own arguments; None: the LightningCLI)
COMMANDS = {
    "fit": ("optimise (or generate) the items of a config: `doodl-pl fit --config C.yaml`", None),
    "evaluate": (
        "score output folders and compare them: `doodl-pl evaluate RUN... [--out DIR]`",
        _evaluate,
    ),
    "grid": (
        "side-by-side image grid of output folders: `doodl-pl grid RUN... --out G.png`",
        _grid,
    ),
    "train": (
        "train a Shapes-64 model: `doodl-pl train --config configs/shapes64/train_*.yaml`",
        _train,
    ),
    "benchmark": (
        "the Shapes-64 benchmark, every method tuned: `doodl-pl benchmark --apps text`",
        _benchmark,
    ),
}


def console() -> None:
    """Console-script entry point: run :func:`main`; exit status 0 unless it exits otherwise."""
    main()
