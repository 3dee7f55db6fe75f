"""CLIP score (text and reference-image similarity) with a configurable CLIP."""

from __future__ import annotations

import torch

from ..data.images import load_image
from ..losses.clip_models import ClipModel, ClipSpec
from .run import RunOutputs

__all__ = ["ClipScore"]


class ClipScore:
    """``100 · max(cos(image, text), 0)`` per item (Hessel et al. 2021, w = 1 as torchmetrics'
    ``CLIPScore``), and ``clip_i``: the cosine to the mean of the item's reference images.

    Args:
        spec: the judging CLIP; pick one that is not the guide, or the score rewards the loss.
    """

    def __init__(self, spec: ClipSpec, batch: int = 64) -> None:
        self.spec, self.batch = spec, batch
        self.model = ClipModel(spec, key="evaluate --clip").eval()

    @torch.no_grad()
    def __call__(self, run: RunOutputs) -> dict[str, list[float]]:
        n = len(run.rows)
        chunks = [run.tensor(slice(i, i + self.batch)) for i in range(0, n, self.batch)]
        emb = torch.cat([self.model.encode_image(c) for c in chunks]) if n else torch.zeros(0, 1)
        out: dict[str, list[float]] = {}
        prompts = [r.get("prompt") or "" for r in run.rows]
        if any(prompts):
            text = self.model.encode_text(prompts)
            cos = (emb * text).sum(-1)
            out["clip_score"] = [
                float(100 * max(c, 0.0)) if p else float("nan")
                for c, p in zip(cos.tolist(), prompts, strict=True)
            ]
        refs = [r["item"].get("reference_images") or [] for r in run.rows]
        if any(refs):
            vals = []
            for e, paths in zip(emb, refs, strict=True):
                if not paths:
                    vals.append(float("nan"))
                    continue
                ref = torch.stack([load_image(p, None) for p in paths])
                target = torch.nn.functional.normalize(self.model.encode_image(ref).mean(0), dim=-1)
                vals.append(float(e @ target))
            out["clip_i"] = vals
        return out
