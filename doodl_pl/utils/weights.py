"""Safe weight loading: safetensors, or ``torch.load(weights_only=True)``; never arbitrary pickle."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

__all__ = ["UnsafeWeightsError", "load_metadata", "load_weights", "save_weights"]


class UnsafeWeightsError(ValueError):
    """A weights file would need arbitrary code (pickle globals) to load."""


def load_weights(path: str | Path) -> dict[str, Tensor]:
    """Load a flat state dict from ``.safetensors`` or a weights-only torch file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises UnpicklingError or RuntimeError
        raise UnsafeWeightsError(
            f"refusing to load {str(path)!r}: it is not a plain weights file ({err}). Convert it "
            f"to safetensors in a trusted environment."
        ) from err
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return state


def load_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file ({} for other formats)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return {}
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def save_weights(state: dict[str, Tensor], path: str | Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(path))
