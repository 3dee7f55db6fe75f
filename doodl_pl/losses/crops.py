"""Random square cuts ("cutouts") for CLIP-style losses, area-pooled to the model's input size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["multi_crop", "resize_to"]


def resize_to(images: Tensor, size: int) -> Tensor:
    """Area pooling when shrinking, bilinear when enlarging: differentiable either way."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    if images.shape[-1] >= size and images.shape[-2] >= size:
        return F.adaptive_avg_pool2d(images, size)
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def multi_crop(
    image: Tensor,
    n_cuts: int,
    size: int,
    cut_power: float = 0.3,
    generator=None,
    min_cut: float | None = None,
) -> Tensor:
    """``n_cuts`` random square crops of one image ``(3, H, W)`` → ``(n_cuts, 3, size, size)``.

    Side = u^cut_power · (S − s) + s with u ~ U(0, 1), S = min(H, W) and s = min(S, size), so
    cuts lean towards the whole image; each is placed uniformly and resized to ``size``.
    When the image is no larger than the model input (S ≤ size) every such cut is the whole
    image; ``min_cut`` (a fraction of S) then sets s = min_cut·S so cuts still vary. For larger
    images ``min_cut`` is ignored: their cuts keep the paper's distribution (s = size).
    """
    _, h, w = image.shape
    big = min(h, w)
    small = min(big, size)
    if min_cut is not None and big <= size:
        small = max(1, int(min_cut * big))
    u = torch.rand(n_cuts, generator=generator)
    offs = torch.rand(n_cuts, 2, generator=generator)
    cuts = []
    for i in range(n_cuts):
        side = int(float(u[i]) ** cut_power * (big - small) + small)
        oy = int(float(offs[i, 0]) * (h - side + 1))
        ox = int(float(offs[i, 1]) * (w - side + 1))
        cuts.append(resize_to(image[None, :, oy : oy + side, ox : ox + side], size))
    return torch.cat(cuts)
