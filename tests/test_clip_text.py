"""An open_clip text tower converted to ``CLIPTextModel`` computes what open_clip computes."""

import pytest
import torch

from doodl_pl.models.clip_text import clip_text_model
from doodl_pl.models.tokenizer import build_clip_tokenizer

TEXTS = ["a red circle", "a blue triangle to the left of a yellow cross", ""]


def tiny_clip(quick_gelu=False, **text_cfg):
    """A random open_clip CLIP small enough to build in a test."""
    import open_clip

    vision = {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16}
    text = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2}
    return open_clip.CLIP(
        embed_dim=24, quick_gelu=quick_gelu, vision_cfg=vision, text_cfg={**text, **text_cfg}
    )


@pytest.mark.parametrize("quick_gelu", [False, True])
def test_converted_tower_matches_open_clip_encode_text(tmp_path, quick_gelu):
    import open_clip

    torch.manual_seed(0)
    model = tiny_clip(quick_gelu).eval()
    with torch.no_grad():  # non-trivial norms and biases, so a missed copy shows
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    text = clip_text_model(model)
    assert text.config.hidden_act == ("quick_gelu" if quick_gelu else "gelu")

    ids = build_clip_tokenizer(tmp_path, model_max_length=16)(
        TEXTS, padding="max_length", max_length=16, truncation=True, return_tensors="pt"
    ).input_ids
    reference = open_clip.tokenize(TEXTS, context_length=16)
    eot = ids.eq(49407).int().argmax(-1)
    assert torch.equal(ids[torch.arange(3), eot], reference[torch.arange(3), eot])
    with torch.no_grad():
        hidden = text(ids).last_hidden_state
        ours = hidden[torch.arange(3), eot] @ model.text_projection
        theirs = model.encode_text(reference)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


def test_unsupported_tower_is_refused():
    with pytest.raises(ValueError, match="layer scale"):
        clip_text_model(tiny_clip(ls_init_value=0.1))
