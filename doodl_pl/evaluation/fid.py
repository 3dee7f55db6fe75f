"""FID and per-class FID through torchmetrics, with a small feature extractor of your choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..data.images import load_image
from ..losses.crops import resize_to
from .stats import Estimate, bootstrap

__all__ = [
    "ClassifierFeatures",
    "ClipFeatures",
    "fid",
    "frechet_distance",
    "load_folder",
    "reference_images",
]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


class ClassifierFeatures(nn.Module):
    """Pooled pre-logit features of a timm classifier (``forward_head(pre_logits=True)``);
    takes float images in [0, 1] as torchmetrics' ``normalize=True`` passes them."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier  # a ClassifierLoss: resize + normalisation + timm model
        self.num_features = int(classifier.model.num_features)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        c = self.classifier
        x = (resize_to(images.float(), c.input_size) - c.mean) / c.std
        return c.model.forward_head(c.model.forward_features(x), pre_logits=True).double()


class ClipFeatures(nn.Module):
    """Unit CLIP image embeddings."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.clip = clip
        self.num_features = int(clip.model.visual.output_dim)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        return self.clip.encode_image(images.float()).double()


def reference_images(folder: str | Path) -> dict[str, list[Path]]:
    """Image files of a reference folder: ``{"": all}``, plus one entry per sub-folder (a class:
    its name is matched to items' ``class_index``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: FID reference folder not found (`--fid-reference`)")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    out: dict[str, list[Path]] = {"": files}
    for p in files:
        if p.parent != folder:
            out.setdefault(p.relative_to(folder).parts[0], []).append(p)
    return out


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """‖μa − μb‖² + tr(Σa + Σb − 2(Σa Σb)^½), the trace term from the eigenvalues of Σa Σb."""
    mu = a.mean(0) - b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    eig = np.linalg.eigvals(ca @ cb)
    return float(mu @ mu + np.trace(ca) + np.trace(cb) - 2 * np.sqrt(np.abs(eig.real)).sum())


def features(extractor: nn.Module, images: Tensor, batch: int = 128) -> Tensor:
    return torch.cat([extractor(images[i : i + batch]) for i in range(0, len(images), batch)])


class _Precomputed(nn.Module):
    """Hands torchmetrics features that are already computed, so each image is embedded once."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, feats: Tensor) -> Tensor:
        return feats


def fid(extractor: nn.Module, fake: Tensor, real: Tensor, reps: int = 200) -> Estimate:
    """torchmetrics ``FrechetInceptionDistance`` on ``extractor``'s features; 95 % interval by
    bootstrap of the generated set (the reference set held fixed)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    if len(fake) < 2 or len(real) < 2:
        return Estimate(float("nan"), float("nan"), float("nan"), len(fake), "fid")
    ff, rf = features(extractor, fake.float()), features(extractor, real.float())
    metric = FrechetInceptionDistance(feature=_Precomputed(ff.shape[1]), normalize=True)
    metric.update(rf, real=True)
    metric.update(ff, real=False)
    value = float(metric.compute())
    ff_np, rf_np = ff.numpy(), rf.numpy()
    lo, hi = bootstrap(lambda idx: frechet_distance(ff_np[idx], rf_np), len(ff_np), reps=reps)
    return Estimate(value, lo, hi, len(fake), "fid (bootstrap)")


def load_folder(paths: list[Path], size: int | None) -> Tensor:
    return torch.stack([load_image(p, size) for p in paths])
