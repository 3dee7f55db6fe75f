import pytest
import torch
from helpers import backbone, edit_round_trip

from doodl_pl.backbones import DecoderInversion
from doodl_pl.data import load_image


def _photos(n: int, size: int = 16) -> torch.Tensor:
    """Smooth random photos: what a decoder can be asked to give back."""
    g = torch.Generator().manual_seed(3)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    return torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


def _error(sd, z, x):
    with torch.no_grad():
        return (sd.decode(z) - x).square().flatten(1).sum(1)


def test_decoder_inversion_gives_each_photo_back_closer_than_the_encoder(tiny_assets):
    """Every item's reconstruction error falls well below the encoder's, and an item's refined
    latent is the same alone as in a batch (its error is summed, Adam's steps per element)."""
    sd = backbone(tiny_assets)
    x = _photos(3)
    z0 = sd.encode(x)
    refine = DecoderInversion(steps=40, lr=0.05)
    z = refine(sd, x, z0)
    assert z.shape == z0.shape and not z.requires_grad
    before, after = _error(sd, z0, x), _error(sd, z, x)
    assert (after < 0.7 * before).all(), (before, after)
    alone = refine(sd, x[1:2], z0[1:2])
    torch.testing.assert_close(alone, z[1:2], rtol=1e-4, atol=1e-5)


def test_decoder_inversion_arguments():
    assert DecoderInversion(steps=0)(None, torch.zeros(2, 3), torch.ones(2, 3)).sum() == 6
    with pytest.raises(ValueError, match="`steps` must be >= 0, got -1"):
        DecoderInversion(steps=-1)
    with pytest.raises(ValueError, match="`lr` must be > 0, got 0"):
        DecoderInversion(lr=0)
    with pytest.raises(ValueError, match="same items, got 2 and 1"):
        DecoderInversion()(None, torch.zeros(2, 3), torch.zeros(1, 3))


class _Identity:
    """A decoder that is the identity: the latent is the image (clamped unless told not to)."""

    def __init__(self, always_clamp: bool = False) -> None:
        self.always_clamp = always_clamp

    def decode(self, z, clamp=True):
        return z.clamp(0, 1) if clamp or self.always_clamp else z


def test_the_fit_does_not_push_the_decoder_past_saturated_pixels():
    """A photo at exactly 1: the fit lands on 1 (the unclamped error holds it there); through a
    clamp it would run past 1, where the clamp passes an edit's guide no gradient."""
    photo, start = torch.ones(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    z = DecoderInversion(steps=100, lr=0.05)(_Identity(), photo, start)
    assert (z - 1).abs().max() < 0.01
    clamped = DecoderInversion(steps=100, lr=0.05)(_Identity(always_clamp=True), photo, start)
    assert clamped.min() > 1.1  # what the unclamped fit prevents


def test_an_edit_starts_from_the_refined_latent(tiny_assets, tmp_path):
    """With ``encode_refine`` the chain inverts the refined latent: sampling forward from the
    inverted pair gives it back, and it decodes closer to the photo than the
    encoder's latent."""
    refine = DecoderInversion(steps=30, lr=0.05)
    module, _, x0 = edit_round_trip(tiny_assets, tmp_path, encode_refine=refine)
    photo = load_image(tiny_assets["image"], 16)[None].to(x0.dtype)
    z_enc = module.backbone.encode(photo)
    z_ref = refine(module.backbone, photo, z_enc)
    assert float((x0 - z_ref).norm() / z_ref.norm()) < 1e-5  # the refinement runs in float32
    assert float((z_ref - z_enc).norm() / z_enc.norm()) > 1e-3
    assert _error(module.backbone, x0, photo) < 0.9 * _error(module.backbone, z_enc, photo)
