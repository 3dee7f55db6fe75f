"""The views a robust guide is trained on: the VAE round trip of a share of each batch and the
perturbations (`doodl_pl.shapes64.recipes.views`)."""

import pytest
import torch

from doodl_pl.shapes64.assets import available

needs_sd = pytest.mark.skipif(not available()["sd"], reason="shipped Shapes-64 VAE missing")


def _renders(split: str, n: int):
    from doodl_pl.shapes64.dataset import load_split

    images, records = load_split(split, n)
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255, images, records


@needs_sd
def test_round_trip_replaces_the_first_share_of_the_batch_by_its_decoding():
    from doodl_pl.shapes64.recipes.views import RoundTrip

    x, _, _ = _renders("tune_one", 8)
    view = RoundTrip(0.5)
    out = view(x)
    assert view.rows(8) == 4 and out.shape == x.shape
    torch.testing.assert_close(out[4:], x[4:], rtol=0, atol=0)
    torch.testing.assert_close(out[:4], view.decode(x[:4]))
    mse = (out[:4] - x[:4]).pow(2).mean()
    # the decoder draws the render closely (about 38 dB), but not bit for bit
    assert 0 < mse < 10 ** (-25 / 10)


def test_round_trip_off_and_bad_shares():
    from doodl_pl.shapes64.recipes.views import RoundTrip

    x = torch.rand(4, 3, 8, 8)
    off = RoundTrip(0.0)
    assert off.vae is None and off.rows(4) == 0 and off(x) is x
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"`roundtrip` must be in \[0, 1\]"):
            RoundTrip(bad)


def test_perturb_keeps_range_and_shape_and_moves_every_image():
    from doodl_pl.shapes64.recipes.views import perturb

    torch.manual_seed(0)
    x = torch.rand(6, 3, 16, 16)
    out = perturb(x, 0.05)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert ((out - x).abs().flatten(1).amax(1) > 0).all()


@needs_sd
def test_robust_clip_round_trips_the_twins_of_round_tripped_images(monkeypatch, tmp_path):
    """With ``roundtrip`` and the image-side relation term, the places-exchanged twin of a
    round-tripped image is round-tripped too (else the decoder's traces would tell the true
    scene from its twin), and no other twin is."""
    from doodl_pl.shapes64.dataset import scene_from_record
    from doodl_pl.shapes64.negatives import relation_matters
    from doodl_pl.shapes64.recipes import ClipRecipe

    _, images, records = _renders("tune_two", 16)
    monkeypatch.setattr(ClipRecipe, "records", property(lambda self: records))
    torch.manual_seed(0)
    recipe = ClipRecipe(export_dir=str(tmp_path), relation_images=1.0, roundtrip=0.5, augment=True)
    decoded = []
    inner = recipe.roundtrip.decode
    monkeypatch.setattr(recipe.roundtrip, "decode", lambda x: decoded.append(len(x)) or inner(x))
    logs = {}
    recipe.log = lambda name, value, **kw: logs.__setitem__(name, float(value))
    batch = (torch.from_numpy(images).permute(0, 3, 1, 2), torch.arange(16))
    with torch.no_grad():
        loss = recipe.training_step(batch, 0)
    twins = [k for k, r in enumerate(records) if relation_matters(scene_from_record(r))]
    # twins on both sides of the round-tripped half, so "all" and "none" would both fail
    assert any(k < 8 for k in twins) and any(k >= 8 for k in twins)
    assert decoded == [8, sum(k < 8 for k in twins)]
    assert torch.isfinite(loss) and "train/relation_images" in logs
    with pytest.raises(ValueError, match="noise"):
        ClipRecipe(export_dir=str(tmp_path), noise=-1.0)
