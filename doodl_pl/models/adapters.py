"""Small adapters that give diffusers UNets the ``eps(x, t, cond)`` protocol."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .condition import TextCondition
from .protocol import freeze

__all__ = ["PREDICTION_TYPES", "LatentUNetEps", "PixelUNetEps", "to_eps"]

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def to_eps(out: Tensor, x: Tensor, alpha_bar: float, prediction_type: str) -> Tensor:
    """A UNet output of any diffusers prediction type → ε, with x_t = √ᾱ x₀ + √(1−ᾱ) ε.

    v_prediction: v = √ᾱ ε − √(1−ᾱ) x₀  ⇒  ε = √ᾱ v + √(1−ᾱ) x_t (Salimans & Ho 2022).
    sample:       x̂₀                     ⇒  ε = (x_t − √ᾱ x̂₀) / √(1−ᾱ).
    """
    if prediction_type == "epsilon":
        return out
    if prediction_type == "v_prediction":
        return alpha_bar**0.5 * out + (1 - alpha_bar) ** 0.5 * x
    if prediction_type == "sample":
        return (x - alpha_bar**0.5 * out) / (1 - alpha_bar) ** 0.5
    raise ValueError(
        f"`prediction_type` must be one of {PREDICTION_TYPES}, got {prediction_type!r}"
    )


def _timestep(t: Tensor | int, device: torch.device) -> Tensor:
    return torch.as_tensor(t, device=device).reshape(())


class LatentUNetEps(nn.Module):
    """``UNet2DConditionModel`` → ε, with classifier-free guidance batched in one UNet call.

    Args:
        unet: a diffusers ``UNet2DConditionModel``.
        compile: run the UNet through ``torch.compile`` (the first calls pay for compilation).
        prediction_type: what the UNet predicts (``epsilon``, ``v_prediction`` or ``sample``, as
            in the scheduler config); converted to ε, so samplers only ever see ε.
        alphas_cumprod: ᾱ per training timestep, needed for the other prediction types.
    """

    def __init__(
        self,
        unet: nn.Module,
        compile: bool = False,
        prediction_type: str = "epsilon",
        alphas_cumprod: Tensor | None = None,
    ) -> None:
        super().__init__()
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"`prediction_type` must be one of {PREDICTION_TYPES}, got {prediction_type!r}"
            )
        if prediction_type != "epsilon" and alphas_cumprod is None:
            raise ValueError(f"`alphas_cumprod` is needed for prediction_type {prediction_type!r}")
        self.unet = freeze(unet)
        self.prediction_type = prediction_type
        self.alphas_cumprod = (
            None if alphas_cumprod is None else alphas_cumprod.detach().double().cpu()
        )
        # Kept out of the module tree so state dicts hold the UNet's weights once.
        forward = torch.compile(self.unet, dynamic=False) if compile else self.unet
        object.__setattr__(self, "_forward", forward)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def eps(self, x: Tensor, t: Tensor | int, cond: TextCondition) -> Tensor:
        dtype = self.dtype
        h = x.to(dtype)
        t = _timestep(t, x.device)
        embeds = cond.embeds.to(device=x.device, dtype=dtype)
        cfg = cond.guidance_scale != 1.0
        extra = cond.unet_kwargs(x.shape[0], x.device, dtype, cfg)
        if not cfg:
            out = self._forward(h, t, encoder_hidden_states=embeds, **extra).sample
        else:
            null = cond.null_embeds.to(device=x.device, dtype=dtype).expand_as(embeds)
            out = self._forward(
                torch.cat([h, h]), t, encoder_hidden_states=torch.cat([null, embeds]), **extra
            ).sample
            e_null, e_cond = out.chunk(2)
            # CFG before the conversion: it is affine with weights summing to one in the output.
            out = e_null + cond.guidance_scale * (e_cond - e_null)
        out = out.to(x.dtype)
        if self.prediction_type == "epsilon":
            return out
        alpha_bar = float(self.alphas_cumprod[int(t)])
        return to_eps(out, x, alpha_bar, self.prediction_type)


class PixelUNetEps(nn.Module):
    """Unconditional (or class-conditional) pixel-space ``UNet2DModel`` → ε.

    ``cond`` is ignored unless the UNet has class embeddings, in which case it holds class labels.
    """

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = freeze(unet)

    def eps(self, x: Tensor, t: Tensor | int, cond: Any = None) -> Tensor:
        dtype = next(self.unet.parameters()).dtype
        labels = cond if isinstance(cond, Tensor) else None
        out = self.unet(x.to(dtype), _timestep(t, x.device), class_labels=labels).sample
        return out.to(x.dtype)
