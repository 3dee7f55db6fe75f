"""A quiet console: the third-party chatter a run does not need, silenced in one place."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["quiet_libraries", "quiet_loading"]

# Warnings Lightning gives for how doodl_pl uses it on purpose: frozen models stay in eval mode
# (determinism), and a deprecation inside Lightning itself.
_BENIGN = (
    r"Found \d+ module\(s\) in eval mode",
    r".*isinstance\(treespec, LeafSpec\)",
    r"The '\w+_dataloader' does not have many workers",
    r"LightningCLI's args parameter is intended to run from within Python",
    r"Total length of `\w+` across ranks is zero",  # a rerun with every item already done
    r"`LightningModule.configure_optimizers` returned `None`",  # baselines optimise nothing
)


def quiet_libraries() -> None:
    """Keep warnings and errors; drop Lightning's info lines (device summary, advertisements),
    diffusers' and transformers' loading notices (e.g. "install accelerate") and their loading
    progress bars, and the benign Lightning warnings above."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for lib in (diffusers_logging, transformers_logging):
        lib.set_verbosity_error()
        lib.disable_progress_bar()
    for pattern in _BENIGN:
        warnings.filterwarnings("ignore", message=pattern)


@contextmanager
def quiet_loading() -> Iterator[None]:
    """While loading models: diffusers' and transformers' notices (e.g. "install accelerate")
    and weight-loading bars off, their previous settings restored after."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    libs = (diffusers_logging, transformers_logging)
    before = [(lib.get_verbosity(), lib.is_progress_bar_enabled()) for lib in libs]
    for lib in libs:
        lib.set_verbosity_error()
        lib.disable_progress_bar()
    try:
        yield
    finally:
        for lib, (level, bar) in zip(libs, before, strict=True):
            lib.set_verbosity(level)
            if bar:
                lib.enable_progress_bar()
