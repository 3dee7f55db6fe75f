"""Resolve model references: package aliases, local paths or hub ids, with offline-clear errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

__all__ = ["ASSETS", "ModelLoadError", "load_or_explain", "resolve"]

ASSETS = Path(__file__).parent / "assets"
T = TypeVar("T")


class ModelLoadError(RuntimeError):
    """A model reference could not be loaded; the message says which config key and what to do."""


def resolve(ref: str) -> str:
    """Map ``ref`` to something a loader accepts.

    ``shapes64/...`` (or ``pkg:...``) names files shipped inside the package; an existing path is
    returned as is; anything else is passed through as a hub id or pretrained tag.
    """
    ref = str(ref)
    if ref.startswith("pkg:"):
        return str(ASSETS / ref[4:])
    if ref.split("/")[0] == "shapes64":
        return str(ASSETS / ref)
    return ref


def load_or_explain(key: str, ref: str, load: Callable[[], T]) -> T:
    """Run ``load``; turn a failure into one error naming ``key`` and how to pass a local path."""
    try:
        return load()
    except Exception as err:  # noqa: BLE001 - every loader raises its own types
        local = Path(ref).exists()
        hint = (
            f"`{key}` = {ref!r} exists locally but could not be loaded: {err}"
            if local
            else f"`{key}` = {ref!r} is not a local path and could not be fetched (this machine may "
            f"be offline). Download the model where you have network access, then set `{key}` "
            f"to the local file or directory. Cause: {type(err).__name__}: {str(err)[:300]}"
        )
        raise ModelLoadError(hint) from err
