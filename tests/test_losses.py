import math

import pytest
import torch
import torch.nn.functional as F

from doodl_pl.losses import (
    AestheticHead,
    AestheticLoss,
    CallableLoss,
    ClassifierLoss,
    CLIPImageLoss,
    ClipSpec,
    CLIPTextLoss,
    LossContext,
    multi_crop,
    spherical_distance,
)
from doodl_pl.utils import item_generator


def unit(n, d, seed):
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_spherical_distance_is_half_squared_angle():
    a, b = unit(8, 5, 0), unit(8, 5, 1)
    angle = torch.arccos((a * b).sum(-1).clamp(-1, 1))
    assert torch.allclose(spherical_distance(a, b), angle**2 / 2, atol=1e-6)


def test_multi_crop_sizes_and_determinism():
    img = torch.rand(3, 40, 30)
    a = multi_crop(img, 16, 24, 0.3, torch.Generator().manual_seed(0))
    b = multi_crop(img, 16, 24, 0.3, torch.Generator().manual_seed(0))
    assert a.shape == (16, 3, 24, 24) and torch.equal(a, b)
    # u^0.3 leans to large cuts: a cut equal to the whole (resized) image must be rare but the
    # mean cut must be large; check through the content: cuts differ from each other.
    assert not torch.equal(a[0], a[1])


def test_min_cut_leaves_large_images_to_the_papers_cuts():
    """Images larger than the model input keep the paper's cut sizes, in [size, S], whatever
    ``min_cut`` says; only images no larger than the input use it."""
    img = torch.rand(3, 64, 64)
    plain = multi_crop(img, 8, 16, 0.3, torch.Generator().manual_seed(3))
    with_min = multi_crop(img, 8, 16, 0.3, torch.Generator().manual_seed(3), 0.1)
    assert torch.equal(plain, with_min)
    small = torch.rand(3, 16, 16)
    whole = multi_crop(small, 8, 16, 0.3, torch.Generator().manual_seed(3))
    assert all(torch.equal(c, small) for c in whole)
    varied = multi_crop(small, 8, 16, 0.3, torch.Generator().manual_seed(3), 0.5)
    assert not all(torch.equal(c, small) for c in varied)


def clip_spec(tiny_assets, weight=1.0):
    return ClipSpec(tiny_assets["clip_cfg"], tiny_assets["clip_w"], weight)


def test_clip_text_loss_reduction_and_ensemble(tiny_assets):
    images = torch.rand(2, 3, 32, 32)  # larger than the model's 16 px input, so cuts differ

    def ctx():
        return LossContext(
            {"prompt": ["a red circle", "a blue square"]}, [item_generator(s, 1) for s in (0, 1)]
        )

    mean = CLIPTextLoss([clip_spec(tiny_assets)], n_cuts=4, reduction="mean")(images, ctx())
    low = CLIPTextLoss([clip_spec(tiny_assets)], n_cuts=4, reduction="min")(images, ctx())
    assert mean.shape == (2,) and torch.all(low <= mean + 1e-7) and torch.all(low < mean)
    one = CLIPTextLoss([clip_spec(tiny_assets)], n_cuts=0)(images, ctx())
    both = CLIPTextLoss([clip_spec(tiny_assets, 0.5), clip_spec(tiny_assets, 0.25)], n_cuts=0)
    assert torch.allclose(both(images, ctx()), 0.75 * one, atol=1e-6)


def test_min_cut_reaches_the_loss(tiny_assets):
    """Images no larger than the CLIP input: without ``min_cut`` every cut is the whole image
    (the loss ignores the seed); with it the loss sees real, seed-dependent cuts whose sides stay
    within [min_cut·S, S]."""
    images = torch.rand(1, 3, 16, 16)  # the tiny CLIP's input size

    def value(loss, seed):
        return float(loss(images, LossContext({"prompt": ["a star"]}, [item_generator(seed, 1)])))

    whole = CLIPTextLoss([clip_spec(tiny_assets)], n_cuts=4)
    assert value(whole, 0) == value(whole, 1)
    cut = CLIPTextLoss([clip_spec(tiny_assets)], n_cuts=4, min_cut=0.5)
    assert value(cut, 0) != value(cut, 1)
    sides = []
    real = multi_crop

    def spy(image, n, size, power, gen, min_cut):
        sides.append(min_cut)
        return real(image, n, size, power, gen, min_cut)

    import doodl_pl.losses.clip as clip_module

    clip_module.multi_crop = spy
    try:
        value(cut, 2)
    finally:
        clip_module.multi_crop = real
    assert sides == [0.5]
    u = torch.Generator().manual_seed(0)
    crops = multi_crop(torch.arange(3 * 16 * 16.0).view(3, 16, 16), 32, 16, 0.3, u, 0.5)
    assert len({float(c[0, 0, 8] - c[0, 0, 7]) for c in crops}) > 1  # cut sides differ
    for c in crops:  # a side s resized to 16 px steps the ramp by s/16 per pixel, s in [8, 16]
        step = float(c[0, 0, 8] - c[0, 0, 7])
        assert 8 / 16 - 1e-4 <= step <= 1 + 1e-4


def test_cuts_of_all_items_in_one_batch_match_one_by_one(tiny_assets):
    loss = CLIPTextLoss([clip_spec(tiny_assets)], n_cuts=3)
    images = torch.rand(3, 3, 24, 24)
    prompts = ["a red circle", "a blue square", "a star"]
    together = loss(
        images, LossContext({"prompt": prompts}, [item_generator(s, 1) for s in range(3)])
    )
    alone = [
        loss(images[i : i + 1], LossContext({"prompt": [prompts[i]]}, [item_generator(i, 1)]))
        for i in range(3)
    ]
    assert torch.allclose(together, torch.cat(alone), atol=1e-5)


def test_clip_text_loss_matches_direct_computation(tiny_assets):
    loss = CLIPTextLoss([clip_spec(tiny_assets)], n_cuts=0)
    images = torch.rand(1, 3, 16, 16)
    clip = loss.models[0]
    tokens = clip.tokenizer(["a star"])
    with torch.no_grad():
        t = F.normalize(clip.model.encode_text(tokens), dim=-1)
        x = (images - clip.mean) / clip.std
        i = F.normalize(clip.model.encode_image(x), dim=-1)
    expected = 2 * torch.arcsin((i - t).norm(dim=-1) / 2) ** 2
    got = loss(images, LossContext({"prompt": ["a star"]}))
    assert torch.allclose(got, expected, atol=1e-6)


def test_guide_scores(tiny_assets):
    """Each guide's readable score: CLIP score of the whole image, target-class probability."""
    images = torch.rand(2, 3, 16, 16)
    clip_loss = CLIPTextLoss([clip_spec(tiny_assets)], n_cuts=2)
    ctx = LossContext({"prompt": ["a star", "a red circle"], "class_index": [1, 3]})
    clip = clip_loss.models[0]
    with torch.no_grad():
        t = F.normalize(clip.model.encode_text(clip.tokenizer(["a star", "a red circle"])), dim=-1)
        i = F.normalize(clip.model.encode_image((images - clip.mean) / clip.std), dim=-1)
        got = clip_loss.guide_score(images, ctx)
    assert clip_loss.score_name == "clip_score"
    assert torch.allclose(got, 100 * (i * t).sum(-1).clamp_min(0), atol=1e-4)
    cls = ClassifierLoss("resnet10t", tiny_assets["classifier"], num_classes=5, input_size=32)
    with torch.no_grad():
        probs = cls.logits(images).softmax(-1)
        assert torch.allclose(cls.guide_score(images, ctx), probs[[0, 1], [1, 3]])


def test_clip_image_loss_zero_for_its_reference(tiny_assets):
    from doodl_pl.data import load_image

    loss = CLIPImageLoss(
        [clip_spec(tiny_assets)], reference_images=[tiny_assets["image"]], n_cuts=0
    )
    ref = load_image(tiny_assets["image"], 16)[None]
    assert float(loss(ref, LossContext())) < 1e-6
    assert float(loss(torch.rand(1, 3, 16, 16), LossContext())) > 1e-4


def test_clip_image_loss_can_keep_an_edit_near_its_photo(tiny_assets, tmp_path):
    """``item_field="image"``: each item's own photo (the ``image`` an edit starts from) is its
    reference, as if given in ``reference_images``; items with different photos are not mixed."""
    import numpy as np
    from PIL import Image

    from doodl_pl.data import load_image

    other = tmp_path / "other.png"
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(other)
    photos = [str(other), tiny_assets["image"]]
    spec = [clip_spec(tiny_assets)]
    keep = CLIPImageLoss(spec, n_cuts=0, item_field="image")
    images = torch.stack([load_image(p, 16) for p in photos])
    own = keep(images, LossContext({"image": photos}))
    swapped = keep(images, LossContext({"image": photos[::-1]}))
    assert float(own.max()) < 1e-6 and float(swapped.min()) > 1e-4
    fixed = CLIPImageLoss(spec, reference_images=[photos[1]], n_cuts=0)
    torch.testing.assert_close(swapped[0], fixed(images[:1], LossContext())[0])
    with pytest.raises(ValueError, match="`image`"):
        keep(images, LossContext())
    with pytest.raises(ValueError, match="item_field"):
        CLIPImageLoss(spec, item_field="photo")


def test_clip_image_loss_reference_views_are_keyed_by_the_item_seed(tiny_assets):
    """``reference_views``: the target is the mean embedding of the reference and k shifted
    copies of it (computed here by hand from the same seeded draws); the same seed gives the
    same target, another seed another; 0 views is the reference alone."""
    from doodl_pl.data import load_image
    from doodl_pl.losses.transforms import RandomViews
    from doodl_pl.utils.seeding import STREAM_REFERENCE, item_generator

    spec, ref_path = [clip_spec(tiny_assets)], tiny_assets["image"]
    plain = CLIPImageLoss(spec, reference_images=[ref_path], n_cuts=0)
    views = CLIPImageLoss(spec, reference_images=[ref_path], n_cuts=0, reference_views=3)
    model = views.models[0]
    ref = load_image(ref_path, model.image_size)
    by_hand = RandomViews(3, 0.35, blur=0.0, noise=0.0)(ref, item_generator(7, STREAM_REFERENCE))
    with torch.no_grad():
        want = torch.nn.functional.normalize(
            model.encode_image(torch.cat([ref[None], by_hand])).mean(0), dim=-1
        )
    ctx = LossContext({"seed": [7, 7, 8]})
    got = views.targets(model, ctx, 3)
    torch.testing.assert_close(got[0], want)
    torch.testing.assert_close(got[1], got[0])
    assert not torch.allclose(got[2], got[0])
    assert not torch.allclose(plain.targets(plain.models[0], ctx, 1)[0], got[0])
    assert float(plain(ref[None], ctx)[0]) < 1e-6
    with pytest.raises(ValueError, match="reference_views"):
        CLIPImageLoss(spec, reference_views=-1)
    with pytest.raises(ValueError, match="reference_shift"):
        CLIPImageLoss(spec, reference_views=2, reference_shift=0.5)


def test_classifier_loss_ce_and_bce(tiny_assets):
    kw = dict(
        model_name="resnet10t",
        checkpoint_path=tiny_assets["classifier"],
        num_classes=5,
        input_size=32,
    )
    images = torch.rand(2, 3, 16, 16)
    ce = ClassifierLoss(target=3, **kw)
    logits = ce.logits(images)
    assert torch.allclose(
        ce(images, LossContext()), F.cross_entropy(logits, torch.tensor([3, 3]), reduction="none")
    )
    bce = ClassifierLoss(loss="bce", **kw)
    got = bce(images, LossContext({"class_index": [1, 4]}))
    onehot = F.one_hot(torch.tensor([1, 4]), 5).float()
    manual = -(onehot * F.logsigmoid(logits) + (1 - onehot) * F.logsigmoid(-logits)).mean(1)
    assert torch.allclose(got, manual, atol=1e-6)
    with pytest.raises(ValueError, match="class_index"):
        ce.target = None
        ce(images, LossContext({"class_index": [None, 9]}))


def test_classifier_keep_loss_is_the_kl_from_the_photos_reading(tiny_assets, tmp_path):
    """``ClassifierKeepLoss``: KL(p(photo) ‖ p(edit)) per item, against ``F.kl_div`` on the
    classifier's own logits; 0 for the photo itself; each item reads its own photo; its score is
    the edit's probability of the photo's top class; a missing photo names the field."""
    import numpy as np
    from PIL import Image

    from doodl_pl.data import load_image
    from doodl_pl.losses import ClassifierKeepLoss

    other = tmp_path / "other.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (20, 24, 3), np.uint8)).save(other)
    photos = [tiny_assets["image"], str(other)]
    kw = dict(checkpoint_path=tiny_assets["classifier"], num_classes=5, input_size=32)
    keep = ClassifierKeepLoss("resnet10t", temperature=2.0, **kw)
    ctx = LossContext({"image": photos})
    own = torch.stack([load_image(p) for p in photos[:1]] * 2)
    edits = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = keep(edits, ctx)
        p = torch.stack([keep.logits(load_image(x)[None])[0] for x in photos]) / 2.0
        q = keep.logits(edits) / 2.0
        want = F.kl_div(q.log_softmax(-1), p.log_softmax(-1), log_target=True, reduction="none")
        torch.testing.assert_close(got, want.sum(-1))
        assert float(got.min()) > 1e-6
        assert float(keep(own, LossContext({"image": photos[:1] * 2})).max()) < 1e-6
        top = p.argmax(-1)
        probs = keep.logits(edits).softmax(-1)
        torch.testing.assert_close(keep.guide_score(edits, ctx), probs[[0, 1], top])
    assert keep.score_name == "class_kept"
    with pytest.raises(ValueError, match="`image`"):
        keep(edits, LossContext({"image": [photos[0], None]}))
    # Several references: the target is their mean class distribution.
    refs = ClassifierKeepLoss("resnet10t", temperature=2.0, item_field="reference_images", **kw)
    with torch.no_grad():
        got = refs(edits, LossContext({"reference_images": [photos, photos[1:]]}))
        mean = p.softmax(-1).mean(0)
        want0 = (mean * (mean.log() - q[0].log_softmax(-1))).sum()
        torch.testing.assert_close(got[0], want0)
        torch.testing.assert_close(got[1], want.sum(-1)[1])
    with pytest.raises(ValueError, match="`reference_images`"):
        refs(edits, LossContext({"reference_images": [photos, []]}))
    with pytest.raises(ValueError, match="temperature"):
        ClassifierKeepLoss("resnet10t", temperature=0.0, **kw)


def test_classifier_loss_warns_when_its_checkpoint_is_read_at_timms_default_side(tiny_assets):
    """A checkpoint of one's own without ``input_size`` is read at timm's default side for the
    architecture: the warning names the argument, the side and the file; an explicit side is
    silent."""
    import warnings

    import timm
    from timm.data import resolve_data_config

    side = resolve_data_config({}, model=timm.create_model("resnet10t"))["input_size"][-1]
    kw = dict(checkpoint_path=tiny_assets["classifier"], num_classes=5)
    with pytest.warns(UserWarning, match=rf"`input_size` is not set.* {side} px.*cls\.safetensors"):
        loss = ClassifierLoss("resnet10t", **kw)
    assert loss.input_size == side
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ClassifierLoss("resnet10t", input_size=32, **kw).input_size == 32


def test_aesthetic_loss(tiny_assets):
    loss = AestheticLoss(clip_spec(tiny_assets), tiny_assets["head"], target=None)
    images = torch.rand(2, 3, 16, 16)
    score = loss.score(images)
    got = loss(images, LossContext({"aesthetic_target": [7.0, None]}))
    assert torch.allclose(got, (score - torch.tensor([7.0, 10.0])).abs())


def test_laion_mlp_head_layout():
    dims = [(1024, 768), (128, 1024), (64, 128), (16, 64), (1, 16)]
    keys = [0, 2, 4, 6, 7]
    state = {}
    for k, (o, i) in zip(keys, dims, strict=True):
        state[f"layers.{k}.weight"] = torch.randn(o, i) * 0.01
        state[f"layers.{k}.bias"] = torch.zeros(o)
    head = AestheticHead(state)
    x = torch.randn(3, 768)
    ref = x
    for k in keys:
        ref = ref @ state[f"layers.{k}.weight"].T + state[f"layers.{k}.bias"]
    assert torch.allclose(head(x), ref.squeeze(-1), atol=1e-6)


def _redness(images):
    return (1 - images[:, 0]).mean(dim=(1, 2))


def test_callable_loss():
    loss = CallableLoss("test_losses._redness")
    images = torch.rand(2, 3, 4, 4)
    assert torch.allclose(loss(images, LossContext()), _redness(images))
    with pytest.raises(ValueError, match="`function`"):
        CallableLoss("no.such.module.fn")
    assert math.isfinite(float(loss(images, LossContext()).sum()))
