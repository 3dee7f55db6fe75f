"""Expectation over transformations (EOT): any image loss averaged over random, differentiable
views of each image, so the gradient follows what survives small shifts, blur and noise
(Athalye et al. 2018) instead of the guide's pixel-exact, non-robust directions."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import ImageLoss, LossContext, check_image_loss

__all__ = ["EOT", "RandomViews"]


class RandomViews:
    """``copies`` random views of one image, drawn from the item's generator.

    Each view: a shift by up to ``shift``·side pixels in x and y (edge pixels repeat), a Gaussian
    blur with σ ~ U(0, ``blur``) px, pixel noise with std ~ U(0, ``noise``), and (only when the
    target is not a colour, so ``color`` defaults to 0) brightness and saturation scaled by
    1 ± U(0, ``color``). Every draw comes from ``generator``: the same item, step and seed give
    the same views, whatever the batch or rank.
    """

    def __init__(
        self,
        copies: int = 4,
        shift: float = 0.0625,
        blur: float = 1.0,
        noise: float = 0.02,
        color: float = 0.0,
    ) -> None:
        if copies < 1:
            raise ValueError(f"`copies` must be >= 1, got {copies}")
        for name, value in (("shift", shift), ("blur", blur), ("noise", noise), ("color", color)):
            if not 0 <= value < (0.5 if name == "shift" else math.inf):
                raise ValueError(f"`{name}` must be >= 0 (shift < 0.5), got {value}")
        self.copies, self.shift, self.blur, self.noise, self.color = (
            copies,
            shift,
            blur,
            noise,
            color,
        )

    def __call__(self, image: Tensor, generator: torch.Generator | None) -> Tensor:
        """``(3, H, W)`` in [0, 1] → ``(copies, 3, H, W)``, differentiable in ``image``."""
        u = torch.rand(self.copies, 6, generator=generator).tolist()
        return torch.stack([self.view(image, *row) for row in u])

    def view(self, image: Tensor, ux, uy, ub, un, uc, us) -> Tensor:
        _, h, w = image.shape
        x = image
        dx = round((2 * ux - 1) * self.shift * w)
        dy = round((2 * uy - 1) * self.shift * h)
        if dx or dy:
            x = _shift(x, dx, dy)
        sigma = ub * self.blur
        if sigma > 0.05:
            x = _blur(x, sigma)
        if self.color > 0:
            gray = x.mean(0, keepdim=True)
            x = gray + (x - gray) * (1 + (2 * us - 1) * self.color)
            x = x * (1 + (2 * uc - 1) * self.color)
        if self.noise > 0:
            # The noise itself is keyed by the same draw, through a generator of its own.
            g = torch.Generator().manual_seed(int(un * 2**31))
            x = x + torch.randn(x.shape, generator=g).to(x) * (un * self.noise)
        return x.clamp(0, 1)


def _shift(x: Tensor, dx: int, dy: int) -> Tensor:
    """Translate by (dx, dy) pixels, repeating the edge (the background of a centred scene)."""
    _, h, w = x.shape
    pad = (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0))
    padded = F.pad(x[None], pad, mode="replicate")[0]
    oy, ox = max(-dy, 0), max(-dx, 0)
    return padded[:, oy : oy + h, ox : ox + w]


def _blur(x: Tensor, sigma: float) -> Tensor:
    radius = max(1, math.ceil(2 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[0]
    y = F.pad(x[None], (radius, radius, radius, radius), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return y[0]


class EOT(ImageLoss):
    """Any image loss as an expectation over :class:`RandomViews` of each image.

    The optimised loss is the mean of ``loss`` over ``copies`` views per item, drawn from the
    item's generator of the step (``LossContext.generators``: keyed by seed and step). The
    guide score, which acceptance and the records read, stays the wrapped loss's score of the
    image itself.

    Args:
        loss: the wrapped loss (its own ``weight`` still applies).
        copies, shift, blur, noise, color: the views (:class:`RandomViews`); keep ``color`` 0
            when the target is a colour.
        weight: weight of the whole term when several losses are summed.
    """

    def __init__(
        self,
        loss: ImageLoss,
        copies: int = 4,
        shift: float = 0.0625,
        blur: float = 1.0,
        noise: float = 0.02,
        color: float = 0.0,
        weight: float = 1.0,
    ) -> None:
        super().__init__(weight)
        check_image_loss("loss", loss)
        self.loss = loss
        self.views = RandomViews(copies, shift, blur, noise, color)

    @property
    def score_name(self) -> str | None:  # type: ignore[override]
        return self.loss.score_name

    def guide_score(self, images: Tensor, ctx: LossContext) -> Tensor | None:
        return self.loss.guide_score(images, ctx)

    def forward(self, images: Tensor, ctx: LossContext) -> Tensor:
        n, k = images.shape[0], self.views.copies
        views = torch.cat([self.views(im, ctx.generator(i)) for i, im in enumerate(images)])
        # Each view carries its item's fields and generator (item-major order).
        batch = {key: [v for v in values for _ in range(k)] for key, values in ctx.batch.items()}
        gens = None if ctx.generators is None else [g for g in ctx.generators for _ in range(k)]
        per_view = self.loss(views, LossContext(batch, gens))
        return self.loss.weight * per_view.view(n, k).mean(1)
