"""Entity discrimination (issue 28 #2): the cases change one thing each, and the measure counts
what a guide tells apart."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch

from doodl_pl.shapes64.entity import KINDS, discrimination, entity_cases, feature_guide
from doodl_pl.shapes64.world import COLORS


def test_each_near_miss_changes_one_thing():
    for case in entity_cases(12, 123):
        ref = case["reference"].objects[0]
        pos = case["positive"].objects[0]
        assert ref.outline is not None
        assert case["positive"].background != case["reference"].background
        assert (pos.shape, pos.color, pos.outline, pos.r) == (
            ref.shape,
            ref.color,
            ref.outline,
            ref.r,
        )
        for kind in KINDS:
            diff = {k for k, v in asdict(case[kind].objects[0]).items() if asdict(pos)[k] != v}
            want = {"outline": {"outline"}, "fill": {"color"}, "no_outline": {"outline"},
                    "shape": {"shape"}}[kind]  # fmt: skip
            assert diff == want, (kind, diff)
            assert case[kind].background == case["positive"].background
        assert case["fill"].objects[0].color != ref.outline
        assert case["outline"].objects[0].outline != ref.color
    assert entity_cases(3, 5)[2]["shape"].objects[0] == entity_cases(3, 5)[2]["shape"].objects[0]


def _palette_counts(images: np.ndarray) -> np.ndarray:
    """Per image, how many pixels have each object colour exactly (backgrounds not counted)."""
    return np.stack(
        [[(im == np.array(rgb, dtype=np.uint8)).all(-1).sum() for rgb in COLORS.values()]
         for im in images]
    ).astype(np.float64)  # fmt: skip


def test_a_colour_counting_guide_tells_the_colour_kinds_apart_and_a_blind_one_nothing():
    cases = entity_cases(24, 77)

    def colours(refs, images):  # independent of place and background, blind to shape
        return np.abs(_palette_counts(refs) - _palette_counts(images)).sum(1)

    d = discrimination(colours, cases)
    for kind in ("outline", "fill", "no_outline"):
        assert d[kind].value >= 0.9, (kind, d[kind])
    blind = discrimination(lambda refs, images: np.zeros(len(images)), cases)
    assert all(e.value == 0.0 and e.n == 24 for e in blind.values())  # ties are failures


def test_feature_guide_is_a_cosine_distance():
    g = feature_guide(lambda x: x.flatten(1))
    a = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    a[0, 0, 0] = 255
    a[1, 1, 1] = 255
    d = g(a, a[::-1].copy())
    assert torch.allclose(d, torch.ones(2, dtype=torch.float64))
    assert torch.allclose(g(a, a), torch.zeros(2, dtype=torch.float64))
