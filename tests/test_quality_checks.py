"""The Shapes-64 model checks against hand-counted cases: fake guides and VAEs whose answers are
known, so each figure can be worked out by hand."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from doodl_pl.shapes64 import Obj, Scene
from doodl_pl.shapes64.negatives import OPPOSITE, describe
from doodl_pl.shapes64.quality import clip_relation_sensitivity, clip_swap_accuracy


class OneHotClip:
    """Every distinct text gets its own axis; image i is embedded as the text ``answers[i]``
    (the pixel at (0, 0) carries i)."""

    def __init__(self, answers: list[str] | None = None, dim: int = 64) -> None:
        self.axes: dict[str, int] = {}
        self.answers, self.dim = answers or [], dim

    def _axis(self, text: str) -> torch.Tensor:
        k = self.axes.setdefault(text, len(self.axes))
        return F.one_hot(torch.tensor(k), self.dim).float()

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return torch.stack([self._axis(t) for t in texts])

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        index = (images[:, 0, 0, 0] * 255).round().long().tolist()
        return torch.stack([self._axis(self.answers[i]) for i in index])


def scene(a_color, a_shape, rel, b_color, b_shape) -> Scene:
    a = Obj(a_shape, a_color, None, 8.0, 20.0, 20.0)
    b = Obj(b_shape, b_color, None, 8.0, 44.0, 44.0)
    return Scene("white", [a, b], rel)


def test_clip_swap_accuracy_counts_wins_per_kind():
    scenes = [
        scene("red", "square", "above", "blue", "star"),
        scene("green", "circle", "to the left of", "yellow", "cross"),
        scene("purple", "triangle", "below", "orange", "square"),
    ]
    records = [s.record() for s in scenes]
    # images 0 and 1 look like their true captions; image 2 like its reversed relation
    answers = [describe(s.objects[0], s.relation, s.objects[1]) for s in scenes[:2]]
    s2 = scenes[2]
    answers.append(describe(s2.objects[0], OPPOSITE[s2.relation], s2.objects[1]))
    images = np.zeros((3, 4, 4, 3), np.uint8)
    images[:, 0, 0, 0] = [0, 1, 2]
    acc = clip_swap_accuracy(OneHotClip(answers), images, records)
    # image 2 scores its true caption 0 and the reversed relation 1: it loses "relation", and
    # ties (0 against 0) count as losses on the other two kinds
    assert {k: (e.value, e.n) for k, e in acc.items()} == {
        "colors": (pytest.approx(2 / 3), 3),
        "shapes": (pytest.approx(2 / 3), 3),
        "relation": (pytest.approx(2 / 3), 3),
    }


class BagOfWords(OneHotClip):
    """Text as the set of its words without the relation: blind to relations by construction.
    Images by their mean colour: blind to positions."""

    def encode_text(self, texts):
        rel_words = {"above", "below", "left", "right", "to", "the", "of"}
        out = []
        for t in texts:
            words = sorted(w for w in t.split() if w not in rel_words)
            out.append(self._axis(" ".join(words)))
        return torch.stack(out)

    def encode_image(self, images):
        return F.pad(F.normalize(images.mean(dim=(2, 3)), dim=-1), (0, self.dim - 3))


class OrderAware(OneHotClip):
    """Each caption its own axis; images by their pixels, so moving objects changes them."""

    def encode_image(self, images):
        proj = torch.randn(images[0].numel(), self.dim, generator=torch.Generator().manual_seed(0))
        return F.normalize(images.flatten(1) @ proj, dim=-1)


def test_clip_relation_sensitivity_separates_blind_and_seeing_guides():
    records = [
        scene("red", "square", "above", "blue", "star").record(),
        scene("green", "circle", "to the left of", "yellow", "cross").record(),
        scene("red", "pentagon", "above", "red", "hexagon").record(),  # two red polygons: skipped
    ]
    blind = clip_relation_sensitivity(BagOfWords(), records)
    assert blind["n"] == 2
    assert blind["text_cos"] == pytest.approx(1.0) and blind["image_cos"] == pytest.approx(1.0)
    assert blind["score_gap"] == pytest.approx(0.0, abs=1e-6)
    seeing = clip_relation_sensitivity(OrderAware(), records)
    assert seeing["n"] == 2 and seeing["text_cos"] == 0.0 and seeing["image_cos"] < 0.99


class _Vae:
    """A stand-in VAE: ``encode`` keeps the image, ``decode`` applies ``damage`` to it."""

    def __init__(self, damage):
        self.damage = damage

    def encode(self, x):
        return x

    def decode(self, z, clamp=True):
        return self.damage(z)


@pytest.mark.skipif(
    not __import__("doodl_pl.shapes64.assets", fromlist=["available"]).available()["classifier"],
    reason="shipped Shapes-64 weights missing",
)
def test_vae_content_kept_is_all_for_a_lossless_vae_and_none_for_a_blank_one(tmp_path):
    import json

    from doodl_pl.evaluation.validity import Validity
    from doodl_pl.shapes64.assets import EVAL_CLASSIFIER
    from doodl_pl.shapes64.checks import Shapes64Checks
    from doodl_pl.shapes64.items import build_items
    from doodl_pl.shapes64.quality import vae_content_kept

    path = build_items("aesthetic", 6, "tune", tmp_path)
    items = [json.loads(line) for line in path.read_text().splitlines()]
    checks = Shapes64Checks(Validity(**EVAL_CLASSIFIER, num_classes=9, input_size=64))
    kept = vae_content_kept(_Vae(lambda z: z), checks, items)
    assert kept["content_kept"].n == 6 and kept["content_kept"].value == 1.0
    assert kept.pop("pixels_past_range").value == 0.0  # renders lie in [0, 1]
    assert vae_content_kept(None, checks, items) == kept  # the renders themselves
    blank = vae_content_kept(_Vae(torch.ones_like), checks, items)
    assert blank["content_kept"].value == 0.0 and blank["shape"].value == 0.0
