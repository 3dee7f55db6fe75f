"""Recipe: a timm classifier over the nine Shapes-64 shape classes (guide and judge)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ...utils.weights import save_weights
from ..world import SHAPES
from .base import Recipe, to01

__all__ = ["ClassifierRecipe"]


class ClassifierRecipe(Recipe):
    """A timm classifier over the nine shape classes on one-object renders.

    Args:
        model_name: timm architecture.
        augment: blur, noise and small shifts (for the evaluation classifier; the guide
            classifier is trained on clean renders only, as the spec requires).
        export_name: file name of the exported safetensors.
    """

    def __init__(
        self,
        model_name: str = "resnet10t",
        augment: bool = False,
        lr: float = 2e-3,
        export_dir: str = "pkg:shapes64",
        export_name: str = "classifier.safetensors",
    ) -> None:
        super().__init__(lr, export_dir, warmup=100)
        import timm
        from timm.data import resolve_data_config

        self.model = timm.create_model(model_name, pretrained=False, num_classes=len(SHAPES))
        cfg = resolve_data_config({}, model=self.model)
        self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg["std"]).view(1, 3, 1, 1), persistent=False)
        self.augment, self.export_name = augment, export_name

    def labels(self, idx: Tensor) -> Tensor:
        return torch.tensor(
            [SHAPES.index(self.records[j]["objects"][0]["shape"]) for j in idx.tolist()],
            device=self.device,
        )

    def perturb(self, x: Tensor) -> Tensor:
        """Random blur, Gaussian noise and shifts of up to 2 px, per image."""
        from torchvision.transforms.functional import gaussian_blur

        out = []
        for im in x:
            if torch.rand(()) < 0.5:
                im = gaussian_blur(im, 5, float(torch.empty(()).uniform_(0.3, 1.0)))
            dy, dx = torch.randint(-2, 3, (2,)).tolist()
            im = torch.roll(im, (dy, dx), dims=(1, 2))
            im = im + torch.randn_like(im) * float(torch.empty(()).uniform_(0, 0.05))
            out.append(im.clamp(0, 1))
        return torch.stack(out)

    def forward(self, x01: Tensor) -> Tensor:
        return self.model((x01 - self.mean) / self.std)

    def training_step(self, batch, _):
        x = to01(batch[0])
        if self.augment:
            x = self.perturb(x)
        loss = F.cross_entropy(self(x), self.labels(batch[1]))
        self.log("train/loss", loss, prog_bar=True)
        return loss

    @torch.no_grad()
    def validation_step(self, batch, _):
        acc = (self(to01(batch[0])).argmax(1) == self.labels(batch[1])).float().mean()
        self.log("val/acc", acc, prog_bar=True)

    def export(self) -> None:
        save_weights(
            {
                k: v.half() if v.is_floating_point() else v
                for k, v in self.model.state_dict().items()
            },
            self.export_dir / self.export_name,
        )
