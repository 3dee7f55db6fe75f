"""Recipe: the Shapes-64 CLIP (open_clip), trained contrastively on (render, caption) pairs."""

from __future__ import annotations

import json

import numpy as np
import torch
import torch.nn.functional as F

from ...utils.weights import save_weights
from ..dataset import scene_from_record
from ..world import caption
from .base import MAX_TOKENS, Recipe, to01

__all__ = ["CLIP_CONFIG", "ClipRecipe"]

CLIP_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {
        "image_size": 64,
        "layers": 4,
        "width": 128,
        "patch_size": 8,
        "head_width": 32,
        "mlp_ratio": 2.0,
    },
    "text_cfg": {
        "context_length": MAX_TOKENS,
        "vocab_size": 49408,
        "width": 64,
        "heads": 4,
        "layers": 3,
        "mlp_ratio": 2.0,
    },
}


class ClipRecipe(Recipe):
    """A small open_clip model trained contrastively on (render, caption) pairs.

    Exports ``shapes64-clip.json`` (the open_clip model config) and ``shapes64-clip.safetensors``.
    """

    def __init__(
        self,
        model_cfg: dict | None = None,
        lr: float = 5e-4,
        export_dir: str = "pkg:shapes64/clip",
        name: str = "shapes64-clip",
    ) -> None:
        super().__init__(lr, export_dir)
        import open_clip

        self.name, self.cfg = name, model_cfg or CLIP_CONFIG
        self.export_dir.mkdir(parents=True, exist_ok=True)
        cfg_path = self.export_dir / f"{name}.json"
        cfg_path.write_text(json.dumps(self.cfg, indent=1))
        open_clip.add_model_config(str(cfg_path))
        self.model = open_clip.create_model(name, pretrained=None)
        self.tokenizer = open_clip.get_tokenizer(name)
        from ...losses.clip_models import OPENAI_MEAN, OPENAI_STD

        self.register_buffer("mean", torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(OPENAI_STD).view(1, 3, 1, 1), persistent=False)

    def training_step(self, batch, _):
        idx = batch[1].tolist()
        texts = [
            caption(
                scene_from_record(self.records[j]), np.random.default_rng([j, self.global_step])
            )
            for j in idx
        ]
        img = F.normalize(self.model.encode_image((to01(batch[0]) - self.mean) / self.std), dim=-1)
        txt = F.normalize(self.model.encode_text(self.tokenizer(texts).to(self.device)), dim=-1)
        logits = self.model.logit_scale.exp().clamp(max=100) * img @ txt.T
        # identical captions in a batch are positives too
        same = torch.tensor([[a == b for b in texts] for a in texts], device=self.device).float()
        target = same / same.sum(1, keepdim=True)
        loss = (
            -(target * logits.log_softmax(1)).sum(1).mean()
            - (target * logits.T.log_softmax(1)).sum(1).mean()
        )
        self.log("train/loss", loss / 2, prog_bar=True)
        return loss / 2

    def export(self) -> None:
        save_weights(
            {k: v.half() for k, v in self.model.state_dict().items()},
            self.export_dir / f"{self.name}.safetensors",
        )
