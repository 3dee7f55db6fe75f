"""Real images as starting points: load, VAE-encode and invert them through the chain."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..data.images import load_image
from ..utils.seeding import STREAM_ENCODE, item_generator

__all__ = ["Inversion"]


class Inversion:
    """Initial latents of a batch: seeded noise, or an edit item's inverted photo (a mixin of
    :class:`GenerationModule`: it reads ``backbone``, ``device``, ``state_dtype``,
    ``encode_sample``, ``encode_refine``, ``inversion_prompt``, ``inversion_guidance_scale``,
    ``inverts`` and ``sampler``, and calls ``noise``, ``condition`` and ``chain``)."""

    @torch.no_grad()
    def invert_images(self, items: list[dict[str, Any]]) -> tuple[Tensor, Tensor]:
        """Load, VAE-encode (refined by ``encode_refine`` when set) and invert the items' images
        through the configured chain (EDICT or BDIA, exactly) → untied (x_T, y_T)."""
        size = self.backbone.image_size
        images = torch.stack(
            [load_image(it["image"], size, where=f"item {it['id']!r} `image`") for it in items]
        ).to(self.device)
        latents = []
        for i, it in enumerate(items):
            g = item_generator(it["seed"], STREAM_ENCODE) if self.encode_sample else None
            latents.append(self.backbone.encode(images[i : i + 1], self.encode_sample, g))
        z0 = torch.cat(latents)
        if self.encode_refine is not None:
            z0 = self.encode_refine(self.backbone, images, z0)
        prompts = [
            self.inversion_prompt if self.inversion_prompt is not None else it["prompt"]
            for it in items
        ]
        if not self.inverts:
            raise ValueError(self._no_inversion(items[0]["id"]))
        cond = self.condition(items, self.inversion_guidance_scale, prompts)
        return self.chain(cond).invert(z0)

    def _no_inversion(self, item_id: str) -> str:
        return (
            f"`sampler` {self.sampler!r} cannot invert a real image, and item {item_id!r} is an "
            f"edit (it has an `image`): sampling from a DDIM inversion does not give the photo "
            f"back. Use `sampler: edict` or `bdia`, which invert exactly."
        )

    def initial_latents(self, items: list[dict[str, Any]]) -> tuple[Tensor, Tensor, Tensor]:
        """(x_T, y_T, is_edit) for a batch: seeded noise, or inverted images for edit items."""
        xs = [self.noise(it["seed"]).to(self.device, self.state_dtype) for it in items]
        ys = [x.clone() for x in xs]
        edit = torch.tensor([bool(it.get("image")) for it in items], device=self.device)
        if edit.any():
            idx = [i for i, it in enumerate(items) if it.get("image")]
            xe, ye = self.invert_images([items[i] for i in idx])
            for j, i in enumerate(idx):
                xs[i], ys[i] = xe[j], ye[j]
        return torch.stack(xs), torch.stack(ys), edit
