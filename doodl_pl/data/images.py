"""Image loading that converts every common mode correctly and fails with the file's name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["ImageLoadError", "check_image", "load_image", "to_pil"]


class ImageLoadError(ValueError):
    """An image file is missing or unreadable."""


def _to_rgb(img):
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(
            np.clip(arr * (255.0 if arr.max() <= 1 else 1.0), 0, 255).astype(np.uint8), "L"
        )
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img.convert("RGB")


def load_image(path: str | Path, size: int | None = None, where: str = "") -> Tensor:
    """Read an image as ``(3, H, W)`` float in [0, 1].

    EXIF orientation is applied; RGBA/LA are composited on white; grayscale, palette and 16-bit
    images are converted to 8-bit RGB. With ``size``, the image is center-cropped to a square and
    resized (Lanczos).

    Args:
        path: the image file.
        size: output side, or ``None`` to keep the size.
        where: context for errors, e.g. ``"items.jsonl line 3"``.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    prefix = f"{where}: " if where else ""
    path = Path(path)
    if not path.is_file():
        raise ImageLoadError(f"{prefix}image file {str(path)!r} does not exist; fix the path")
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            img = _to_rgb(img)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ImageLoadError(
            f"{prefix}image file {str(path)!r} is corrupt or not an image ({err}); "
            f"replace it or remove the item"
        ) from err
    if size is not None:
        w, h = img.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
        if side != size:
            img = img.resize((size, size), Image.Resampling.LANCZOS)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def check_image(path: str | Path, where: str = "") -> None:
    """Fail now, with the file's name, if ``path`` is missing or not a decodable image."""
    load_image(path, None, where)


def to_pil(image: Tensor):
    """``(3, H, W)`` in [0, 1] → ``PIL.Image`` (RGB, 8-bit)."""
    from PIL import Image

    arr = (image.detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    return Image.fromarray(arr.permute(1, 2, 0).cpu().numpy(), "RGB")
