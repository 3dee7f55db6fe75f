"""Recipe: a timm classifier over the nine Shapes-64 shape classes (guide and judge)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ...hub import resolve
from ...utils.weights import load_weights, save_weights
from ..world import SHAPES
from .base import Recipe, to01
from .views import RoundTrip, perturb

__all__ = ["ClassifierRecipe"]


class ClassifierRecipe(Recipe):
    """A timm classifier over the nine shape classes on one-object renders.

    Args:
        model_name: timm architecture.
        augment: blur, noise and small shifts (for the evaluation classifier; the guide
            classifier is trained on clean renders only, as the spec requires).
        noise: largest standard deviation of the pixel noise ``augment`` adds (0: none).
        roundtrip: share of each batch first passed through the VAE in ``vae_dir`` (encode,
            decode), so the classifier sees renders as the generator's decoder draws them.
        vae_dir: the VAE for ``roundtrip``.
        adversarial_eps: L∞ radius of adversarial training (one signed-gradient step from a
            random start, Wong et al. 2020), in [0, 1] pixel units; 0: off.
        init_from: start from this exported classifier (a safetensors file or package alias of
            the same architecture), e.g. to fine-tune the robust guide adversarially.
        export_name: file name of the exported safetensors.
    """

    def __init__(
        self,
        model_name: str = "resnet10t",
        augment: bool = False,
        noise: float = 0.05,
        roundtrip: float = 0.0,
        vae_dir: str = "pkg:shapes64/sd/vae",
        adversarial_eps: float = 0.0,
        init_from: str | None = None,
        lr: float = 2e-3,
        export_dir: str = "pkg:shapes64",
        export_name: str = "classifier.safetensors",
    ) -> None:
        super().__init__(lr, export_dir, warmup=100)
        import timm
        from timm.data import resolve_data_config

        self.model = timm.create_model(model_name, pretrained=False, num_classes=len(SHAPES))
        if init_from is not None:
            state = load_weights(resolve(init_from))
            state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
            self.model.load_state_dict(state)
        cfg = resolve_data_config({}, model=self.model)
        self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg["std"]).view(1, 3, 1, 1), persistent=False)
        if not 0 <= adversarial_eps < 1 or not noise >= 0:
            raise ValueError(
                f"`adversarial_eps` must be in [0, 1) and `noise` >= 0, got {adversarial_eps}, "
                f"{noise}"
            )
        self.roundtrip = RoundTrip(roundtrip, vae_dir)
        self.augment, self.noise = augment, noise
        self.adversarial_eps, self.export_name = adversarial_eps, export_name

    def labels(self, idx: Tensor) -> Tensor:
        return torch.tensor(
            [SHAPES.index(self.records[j]["objects"][0]["shape"]) for j in idx.tolist()],
            device=self.device,
        )

    def forward(self, x01: Tensor) -> Tensor:
        return self.model((x01 - self.mean) / self.std)

    def adversarial(self, x: Tensor, labels: Tensor) -> Tensor:
        """One signed-gradient ascent step of size 1.25·eps from a uniform start, kept in the
        eps-ball and in [0, 1]."""
        eps = self.adversarial_eps
        delta = torch.empty_like(x).uniform_(-eps, eps).requires_grad_(True)
        loss = F.cross_entropy(self(x + delta), labels)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta + 1.25 * eps * grad.sign()).clamp(-eps, eps)
        return (x + delta.detach()).clamp(0, 1)

    def training_step(self, batch, _):
        x = self.roundtrip(to01(batch[0]))
        if self.augment:
            x = perturb(x, self.noise)
        labels = self.labels(batch[1])
        if self.adversarial_eps > 0:
            x = self.adversarial(x, labels)
        loss = F.cross_entropy(self(x), labels)
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
