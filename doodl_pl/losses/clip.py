"""CLIP guidance: text prompts or reference images, with multi-crop and model ensembles."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.images import load_image
from ..utils.seeding import STREAM_REFERENCE, item_generator
from .base import ImageLoss, LossContext
from .clip_models import ClipModel, ClipSpec, spherical_distance
from .crops import multi_crop, resize_to
from .transforms import RandomViews

__all__ = ["CLIPImageLoss", "CLIPTextLoss"]


class _ClipEnsembleLoss(ImageLoss):
    """Shared machinery: per-item cuts, per-model target embedding, weighted ensemble."""

    def __init__(
        self,
        models: list[ClipSpec] | None,
        n_cuts: int,
        cut_power: float,
        reduction: Literal["mean", "min"],
        weight: float,
        min_cut: float | None = None,
    ) -> None:
        super().__init__(weight)
        if min_cut is not None and not 0 < min_cut <= 1:
            raise ValueError(f"`min_cut` must be in (0, 1], got {min_cut}")
        self.min_cut = min_cut
        if n_cuts < 0:
            raise ValueError(f"`n_cuts` must be >= 0 (0 = whole image), got {n_cuts}")
        if reduction not in ("mean", "min"):
            raise ValueError(f"`reduction` must be 'mean' or 'min', got {reduction!r}")
        specs = models or [ClipSpec()]
        self.models = nn.ModuleList(ClipModel(s, key="models") for s in specs)
        self.n_cuts, self.cut_power, self.reduction = n_cuts, cut_power, reduction

    def targets(self, model: ClipModel, ctx: LossContext, batch_size: int) -> Tensor:
        raise NotImplementedError

    def cuts(self, image: Tensor, size: int, generator) -> Tensor:
        """The cuts of one image that the loss scores, resized to ``size``."""
        if not self.n_cuts:
            return resize_to(image[None], size)
        return multi_crop(image, self.n_cuts, size, self.cut_power, generator, self.min_cut)

    def guide_score(self, images: Tensor, ctx: LossContext) -> Tensor:
        """100 · max(cos, 0) of the whole image to the target under the first ensemble member."""
        model = self.models[0]
        target = self.targets(model, ctx, images.shape[0])
        feats = model.encode_image(resize_to(images, model.image_size), resize=False)
        return 100 * (feats * target).sum(-1).clamp_min(0)

    def forward(self, images: Tensor, ctx: LossContext) -> Tensor:
        total = images.new_zeros(images.shape[0])
        for model in self.models:
            target = self.targets(model, ctx, images.shape[0])
            # Every item's cuts go through the image tower as one batch.
            cuts = [
                self.cuts(image, model.image_size, ctx.generator(i))
                for i, image in enumerate(images)
            ]
            counts = [c.shape[0] for c in cuts]
            feats = model.encode_image(torch.cat(cuts), resize=False).split(counts)
            per_item = []
            for i, f in enumerate(feats):
                dist = spherical_distance(f, target[i][None])
                per_item.append(dist.mean() if self.reduction == "mean" else dist.min())
            total = total + model.weight * torch.stack(per_item)
        return total


class CLIPTextLoss(_ClipEnsembleLoss):
    """Spherical distance between image cuts and the prompt's CLIP text embedding.

    Its guide score is the CLIP score (``clip_score``) of the whole image.

    Args:
        models: ensemble members (open_clip name + tag or local file, and weight).
        text: fixed guidance text; ``None`` uses each item's ``prompt``.
        n_cuts: random cuts per image (16 in the paper); 0 uses the whole image.
        cut_power: cut sizes lean to the full image as u^cut_power.
        reduction: ``mean`` or ``min`` over cuts (the reference code used ``min``).
        weight: weight when several losses are summed.
        min_cut: smallest cut as a fraction of the image side, used only for images no larger
            than the CLIP input (e.g. 64-px Shapes-64 renders), whose cuts would otherwise all be
            the whole image; larger images keep the paper's cuts. ``None``: never used.
    """

    def __init__(
        self,
        models: list[ClipSpec] | None = None,
        text: str | None = None,
        n_cuts: int = 16,
        cut_power: float = 0.3,
        reduction: Literal["mean", "min"] = "mean",
        weight: float = 1.0,
        min_cut: float | None = None,
    ) -> None:
        super().__init__(models, n_cuts, cut_power, reduction, weight, min_cut)
        self.text = text

    score_name = "clip_score"

    def targets(self, model: ClipModel, ctx: LossContext, batch_size: int) -> Tensor:
        texts = [self.text or ctx.field("prompt", i, "") for i in range(batch_size)]
        return model.encode_text(texts)


class CLIPImageLoss(_ClipEnsembleLoss):
    """Spherical distance to the normalised mean CLIP embedding of reference images.

    Args:
        models: ensemble members; the paper used ViT-B/32, L/14, g/14 at 0.5, 0.25, 0.25.
        reference_images: fixed reference files; ``None`` uses each item's ``reference_images``.
        n_cuts, cut_power, reduction, weight, min_cut: as in :class:`CLIPTextLoss`.
        item_field: the item field that holds the references when ``reference_images`` is
            ``None``: ``reference_images`` (a list; personalization) or ``image`` (the photo an
            edit starts from, so the term keeps the edit close to it).
        reference_views: k copies of each reference, each shifted by up to
            ``reference_shift``·side (edges repeat), join it in the mean embedding, so the target
            says what the entity is more than where it stands; drawn from the item's ``seed``.
            0: the references alone.
    """

    def __init__(
        self,
        models: list[ClipSpec] | None = None,
        reference_images: list[str] | None = None,
        n_cuts: int = 16,
        cut_power: float = 0.3,
        reduction: Literal["mean", "min"] = "mean",
        weight: float = 1.0,
        min_cut: float | None = None,
        item_field: Literal["reference_images", "image"] = "reference_images",
        reference_views: int = 0,
        reference_shift: float = 0.35,
    ) -> None:
        super().__init__(models, n_cuts, cut_power, reduction, weight, min_cut)
        if item_field not in ("reference_images", "image"):
            raise ValueError(
                f"item_field must be 'reference_images' or 'image', got {item_field!r}"
            )
        if reference_views < 0:
            raise ValueError(f"`reference_views` must be >= 0, got {reference_views}")
        if not 0 <= reference_shift < 0.5:
            raise ValueError(f"`reference_shift` must be in [0, 0.5), got {reference_shift}")
        self.reference_images, self.item_field = reference_images, item_field
        self.views = (
            RandomViews(reference_views, reference_shift, blur=0.0, noise=0.0)
            if reference_views
            else None
        )
        self._cache: dict[tuple[int, tuple[str, ...], int | None], Tensor] = {}

    @torch.no_grad()
    def _reference(
        self, model: ClipModel, index: int, paths: tuple[str, ...], seed: int | None
    ) -> Tensor:
        key = (index, paths, seed if self.views else None)
        if key not in self._cache:
            refs = torch.stack(
                [load_image(p, model.image_size, where="reference_images") for p in paths]
            )
            if self.views:
                g = item_generator(int(seed or 0), STREAM_REFERENCE)
                refs = torch.cat([refs, *(self.views(r, g) for r in refs)])
            refs = refs.to(model.mean.device)
            self._cache[key] = F.normalize(model.encode_image(refs).mean(0), dim=-1)
        return self._cache[key]

    score_name = "clip_i"

    def targets(self, model: ClipModel, ctx: LossContext, batch_size: int) -> Tensor:
        index = list(self.models).index(model)
        out = []
        for i in range(batch_size):
            paths = self.reference_images or ctx.field(self.item_field, i)
            if isinstance(paths, str):
                paths = [paths]
            if not paths:
                raise ValueError(
                    "CLIPImageLoss needs reference images: set `reference_images` "
                    f"or give each item its `{self.item_field}`"
                )
            out.append(self._reference(model, index, tuple(paths), ctx.field("seed", i)))
        return torch.stack(out)
