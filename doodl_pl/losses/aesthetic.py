"""Aesthetic guidance: a linear or MLP head on CLIP image embeddings, as LAION's predictor."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..hub import load_or_explain, resolve
from ..utils.weights import load_metadata, load_weights
from .base import ImageLoss, LossContext
from .clip_models import ClipModel, ClipSpec

__all__ = ["AestheticHead", "AestheticLoss"]


class AestheticHead(nn.Module):
    """Score = head(normalised CLIP embedding). The layout is read from the weights.

    A state dict with ``weight``/``bias`` is a linear head; ``layers.{i}.weight`` keys build
    LAION's MLP layout: those linears in order, identity (dropout at eval) in the other slots,
    no activations. ``activation`` (``gelu`` or ``relu``, from the file's metadata) fills the
    empty slots between linears instead.
    """

    def __init__(self, state: dict[str, Tensor], activation: str | None = None) -> None:
        super().__init__()
        if "weight" in state:
            self.layers = nn.Sequential(
                nn.Linear(state["weight"].shape[1], state["weight"].shape[0])
            )
            self.layers[0].load_state_dict(
                {"weight": state["weight"].float(), "bias": state["bias"].float()}
            )
            return
        idx = sorted({int(k.split(".")[1]) for k in state if k.startswith("layers.")})
        if not idx:
            raise ValueError("aesthetic head weights need `weight`/`bias` or `layers.N.*` keys")
        acts = {None: nn.Identity, "gelu": nn.GELU, "relu": nn.ReLU}
        if activation not in acts:
            raise ValueError(f"unknown aesthetic head activation {activation!r}")
        mods: list[nn.Module] = [acts[activation]() for _ in range(idx[-1] + 1)]
        for i in idx:
            w = state[f"layers.{i}.weight"]
            mods[i] = nn.Linear(w.shape[1], w.shape[0])
        self.layers = nn.Sequential(*mods)
        self.layers.load_state_dict({k[len("layers.") :]: v for k, v in state.items()})

    def forward(self, emb: Tensor) -> Tensor:
        return self.layers(emb).squeeze(-1)


class AestheticLoss(ImageLoss):
    """|score − target| of an aesthetic head on a CLIP image embedding.

    Args:
        clip: the CLIP model the head was trained on.
        head_path: head weights (safetensors or a pickle-free torch file).
        target: the score to reach; ``None`` uses each item's ``aesthetic_target``.
        weight: weight when several losses are summed.
    """

    def __init__(
        self,
        clip: ClipSpec | None = None,
        head_path: str = "shapes64/aesthetic_head.safetensors",
        target: float | None = 10.0,
        weight: float = 1.0,
    ) -> None:
        super().__init__(weight)
        self.clip = ClipModel(clip or ClipSpec("ViT-L-14", "openai"), key="clip")
        path = resolve(head_path)
        state = load_or_explain("head_path", head_path, lambda: load_weights(path))
        activation = load_metadata(path).get("activation")
        self.head = AestheticHead(state, activation).requires_grad_(False).eval()
        self.target = target

    score_name = "aesthetic"

    def score(self, images: Tensor) -> Tensor:
        return self.head(self.clip.encode_image(images))

    def guide_score(self, images: Tensor, ctx: LossContext) -> Tensor:
        """The predicted aesthetic score."""
        return self.score(images)

    def forward(self, images: Tensor, ctx: LossContext) -> Tensor:
        targets = [
            self.target if self.target is not None else ctx.field("aesthetic_target", i, 10.0)
            for i in range(images.shape[0])
        ]
        target = torch.tensor(targets, device=images.device, dtype=torch.float32)
        return (self.score(images) - target).abs()
