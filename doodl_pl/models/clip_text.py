"""An open_clip text tower as a transformers ``CLIPTextModel``, the text encoder format of SD-1.

Stable Diffusion conditions its UNet on the per-token states of a frozen, contrastively trained
CLIP text tower; :func:`clip_text_model` gives a Shapes-64 pipeline the same encoder, taken from
the Shapes-64 CLIP instead of OpenAI's ViT-L/14.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["clip_text_model"]


@torch.no_grad()
def clip_text_model(model: nn.Module):
    """Copy the text tower of an open_clip ``CLIP`` into a new ``CLIPTextModel``.

    ``last_hidden_state`` equals open_clip's ``ln_final`` output, so its end-of-text state times
    ``model.text_projection`` is ``model.encode_text``. Only the text tower is read.

    Raises:
        ValueError: for towers this conversion does not cover (layer scale or extra attention
            norms, no causal mask, or an activation other than GELU / QuickGELU).
    """
    from transformers import CLIPTextConfig, CLIPTextModel

    blocks = model.transformer.resblocks
    first = blocks[0]
    extras = [getattr(first, n, nn.Identity()) for n in ("ls_1", "ls_2", "ln_attn")]
    if not all(isinstance(e, nn.Identity) for e in extras):
        raise ValueError("clip_text_model: layer scale / extra attention norms are not supported")
    act = type(first.mlp.gelu).__name__
    if act not in ("GELU", "QuickGELU"):
        raise ValueError(f"clip_text_model: unsupported activation {act}")
    if getattr(model, "attn_mask", None) is None:
        raise ValueError("clip_text_model: the text tower must use a causal mask, as CLIP's does")
    heads = first.attn.num_heads
    config = CLIPTextConfig(
        vocab_size=model.token_embedding.num_embeddings,
        hidden_size=model.token_embedding.embedding_dim,
        intermediate_size=first.mlp.c_fc.out_features,
        num_hidden_layers=len(blocks),
        num_attention_heads=heads,
        max_position_embeddings=model.positional_embedding.shape[0],
        projection_dim=model.text_projection.shape[1],
        hidden_act="gelu" if act == "GELU" else "quick_gelu",
        layer_norm_eps=first.ln_1.eps,
    )
    text = CLIPTextModel(config).eval()
    tm = getattr(text, "text_model", text)  # transformers < 5 nests the tower one level down
    tm.embeddings.token_embedding.weight.copy_(model.token_embedding.weight)
    tm.embeddings.position_embedding.weight.copy_(model.positional_embedding)
    for src, dst in zip(blocks, tm.encoder.layers, strict=True):
        q, k, v = src.attn.in_proj_weight.chunk(3)
        qb, kb, vb = src.attn.in_proj_bias.chunk(3)
        for lin, w, b in (
            (dst.self_attn.q_proj, q, qb),
            (dst.self_attn.k_proj, k, kb),
            (dst.self_attn.v_proj, v, vb),
            (dst.self_attn.out_proj, src.attn.out_proj.weight, src.attn.out_proj.bias),
            (dst.mlp.fc1, src.mlp.c_fc.weight, src.mlp.c_fc.bias),
            (dst.mlp.fc2, src.mlp.c_proj.weight, src.mlp.c_proj.bias),
        ):
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        for ln_dst, ln_src in ((dst.layer_norm1, src.ln_1), (dst.layer_norm2, src.ln_2)):
            ln_dst.weight.copy_(ln_src.weight)
            ln_dst.bias.copy_(ln_src.bias)
    tm.final_layer_norm.weight.copy_(model.ln_final.weight)
    tm.final_layer_norm.bias.copy_(model.ln_final.bias)
    return text
