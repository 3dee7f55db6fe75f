"""Recipe: the Shapes-64 aesthetic head, an MLP on the frozen CLIP image embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Recipe, to01

__all__ = ["AestheticRecipe"]


class AestheticRecipe(Recipe):
    """An MLP head on the (frozen, normalised) Shapes-64 CLIP image embedding → aesthetic score.

    Saved in LAION's layout (``layers.0``, ``layers.2``) with the activation in the metadata.
    """

    def __init__(
        self,
        clip_name: str = "pkg:shapes64/clip/shapes64-clip.json",
        clip_weights: str = "pkg:shapes64/clip/shapes64-clip.safetensors",
        hidden: int = 128,
        lr: float = 2e-3,
        export_dir: str = "pkg:shapes64",
        export_name: str = "aesthetic_head.safetensors",
    ):
        super().__init__(lr, export_dir, warmup=50)
        from ...losses.clip_models import ClipModel, ClipSpec

        self.clip = ClipModel(ClipSpec(clip_name, clip_weights))
        dim = (
            self.clip.model.text_projection.shape[1]
            if hasattr(self.clip.model, "text_projection")
            else 64
        )
        self.head = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, 1))
        self.export_name = export_name

    def trainable(self):
        return list(self.head.parameters())

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()
        return self

    def step(self, batch) -> Tensor:
        with torch.no_grad():
            emb = self.clip.encode_image(to01(batch[0]))
        target = torch.tensor(
            [self.records[j]["aesthetic"] for j in batch[1].tolist()], device=self.device
        )
        return self.head(emb).squeeze(-1), target

    def training_step(self, batch, _):
        pred, target = self.step(batch)
        loss = F.mse_loss(pred, target)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    @torch.no_grad()
    def validation_step(self, batch, _):
        pred, target = self.step(batch)
        self.log("val/mae", (pred - target).abs().mean(), prog_bar=True)

    def export(self) -> None:
        from safetensors.torch import save_file

        state = {
            f"layers.{k}": v.detach().half().contiguous() for k, v in self.head.state_dict().items()
        }
        save_file(state, str(self.export_dir / self.export_name), metadata={"activation": "gelu"})
