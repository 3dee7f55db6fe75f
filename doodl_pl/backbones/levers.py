"""Memory levers of a diffusers backbone: the attention kernel and gradient checkpointing.

Each leaves the gradient unchanged up to round-off (checkpointing recomputes the same forward;
fused attention computes the same softmax without storing it); ``docs/benchmarks.md`` measures
what each saves at real sizes and the gradient's cosine to the lever off.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

__all__ = ["ATTENTIONS", "Attention", "check_attention", "set_attention", "set_checkpointing"]

Attention = Literal["sdpa", "math"]
ATTENTIONS = ("sdpa", "math")


def check_attention(attention: str) -> Attention:
    if attention not in ATTENTIONS:
        raise ValueError(f"`attention` must be one of {ATTENTIONS}, got {attention!r}")
    return attention


def set_attention(model: nn.Module, attention: Attention) -> None:
    """``sdpa``: PyTorch's fused ``scaled_dot_product_attention`` (flash / memory-efficient
    kernels keep O(tokens) per head for backward; diffusers' default on torch 2); ``math``: the
    classic processor, which stores each softmax (O(tokens²))."""
    if check_attention(attention) == "math":
        from diffusers.models.attention_processor import AttnProcessor

        model.set_attn_processor(AttnProcessor())


def set_checkpointing(model: nn.Module, enabled: bool) -> None:
    """Recompute each block's activations in the backward pass instead of storing them.

    The UNet uses diffusers' own checkpointing (one resnet or transformer at a time). A VAE's
    decoder is checkpointed per layer (each resnet, attention and upsampler) rather than
    diffusers' per-up-block unit, whose backward holds a whole full-resolution block.
    """
    if not enabled:
        return
    decoder = getattr(model, "decoder", None)
    if decoder is None:
        model.enable_gradient_checkpointing()
        return
    from diffusers.models.attention_processor import Attention as AttentionLayer
    from diffusers.models.resnet import ResnetBlock2D
    from diffusers.models.upsampling import Upsample2D

    for layer in decoder.modules():
        if isinstance(layer, (ResnetBlock2D, AttentionLayer, Upsample2D)):
            _checkpoint_forward(layer)


def _checkpoint_forward(layer: nn.Module) -> None:
    """Make ``layer`` recompute its forward in the backward pass (its weights keep their
    names, so state dicts are unchanged)."""
    import torch
    from torch.utils.checkpoint import checkpoint

    forward = layer.forward

    def checkpointed(*args, **kwargs):
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    layer.forward = checkpointed
