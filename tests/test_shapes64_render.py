import math
import re

import numpy as np
import pytest

from doodl_pl.shapes64 import (
    COLORS,
    SHAPES,
    Obj,
    Scene,
    aesthetic_score,
    relation,
    render,
    render_seed,
    sample_scene,
    shape_area,
)


def one(shape, r, cx=32.0, cy=32.0, color="blue", outline=None, bg="white"):
    return Scene(bg, [Obj(shape, color, outline, r, cx, cy)])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("r", [7.0, 11.3, 15.0])
def test_pixel_area_matches_analytic(shape, r):
    img = render(one(shape, r, cx=31.7, cy=32.4)).astype(float)
    # red channel: white background 255, blue fill 40 -> coverage is linear in the value
    coverage = (255 - img[..., 0]) / (255 - COLORS["blue"][0])
    assert coverage.sum() == pytest.approx(shape_area(shape, r), rel=0.03)


def test_fill_and_outline_colors():
    img = render(one("square", 12, color="green", outline="orange", bg="cream"))
    assert tuple(img[32, 32]) == COLORS["green"]
    half = 1.1 * 12 / math.sqrt(2)  # half side of the square
    inner_edge = int(32 - half + 1)  # a pixel fully inside the 2 px outline band
    assert tuple(img[32, inner_edge]) == COLORS["orange"]
    assert tuple(img[2, 2]) == (245, 240, 225)


def test_orientation_up_and_axis_aligned():
    tri = render(one("triangle", 14)).astype(int)
    rows = np.nonzero((tri[..., 0] < 200).any(axis=1))[0]
    top_width = (tri[rows[0] + 1, :, 0] < 200).sum()
    bottom_width = (tri[rows[-1] - 1, :, 0] < 200).sum()
    assert top_width < bottom_width  # points up
    sq = render(one("square", 14))
    cols = (sq[..., 0] < 128).sum(axis=0)
    assert cols[cols > 0].std() < 1.0  # axis-aligned edges: every covered column equally tall


def test_aesthetic_formula():
    assert aesthetic_score(Obj("circle", "red", None, 15, 32, 32)) == pytest.approx(10.0)
    assert aesthetic_score(Obj("circle", "red", None, 7, 32, 8)) == pytest.approx(1.0)
    o = Obj("circle", "red", None, 11, 38, 40)  # s = 0.5, d = 10
    assert aesthetic_score(o) == pytest.approx(1 + 9 * (0.25 + 0.5 * (1 - 10 / 24)))


def test_relation_rules():
    a = Obj("circle", "red", None, 8, 10, 30)
    assert relation(a, Obj("star", "blue", None, 8, 40, 35)) == "to the left of"
    assert relation(a, Obj("star", "blue", None, 8, 12, 60)) == "above"
    assert relation(Obj("star", "blue", None, 8, 12, 60), a) == "below"
    assert relation(Obj("star", "blue", None, 8, 40, 35), a) == "to the right of"


ONE = re.compile(
    r"^(a|an) (small |large )?((red|orange|yellow|green|blue|purple) )?"
    r"(circle|square|diamond|triangle|star|cross|polygon)"
    r"( (in the (top|bottom) (left|right) corner|at the (top|bottom)|on the (left|right)"
    r"|in the center))?$"
)
TWO = re.compile(
    r"^(a|an) (red|orange|yellow|green|blue|purple) (\w+) (to the left of|to the right of|above"
    r"|below) (a|an) (red|orange|yellow|green|blue|purple) (\w+)$"
)


def test_scenes_and_captions_follow_the_spec():
    counts = {"two": 0, "color": 0, "outline": 0, "n1": 0}
    for seed in range(2000):
        s = sample_scene(seed)
        words = s.caption.split()
        assert words[0] == ("an" if words[1][0] in "aeiou" else "a")
        for o in s.objects:
            assert 1 + 1.15 * o.r - 1e-9 <= o.cx <= 63 - 1.15 * o.r + 1e-9
            assert o.outline != o.color
            counts["outline"] += o.outline is not None
            assert (o.word == "polygon") == (o.shape in ("pentagon", "hexagon", "octagon"))
        if len(s.objects) == 2:
            counts["two"] += 1
            a, b = s.objects
            m = TWO.match(s.caption)
            assert m and m.group(2) == a.color and m.group(6) == b.color
            assert m.group(3) == a.word and m.group(7) == b.word and m.group(4) == s.relation
            assert a.color != b.color and 7 <= a.r <= 11 and 7 <= b.r <= 11
            dx, dy = b.cx - a.cx, b.cy - a.cy
            dom, other = max(abs(dx), abs(dy)), min(abs(dx), abs(dy))
            assert math.hypot(dx, dy) >= 1.15 * (a.r + b.r) + 3 and dom >= 14
            assert dom >= 1.5 * other
            assert s.aesthetic is None
        else:
            counts["n1"] += 1
            (o,) = s.objects
            assert ONE.match(s.caption), s.caption
            assert 7 <= o.r <= 15 and s.aesthetic == pytest.approx(aesthetic_score(o))
            counts["color"] += o.color in words
            if "small" in words:
                assert o.r < 9.5
            if "large" in words:
                assert o.r > 12.5
    assert counts["two"] / 2000 == pytest.approx(0.4, abs=0.04)
    assert counts["color"] / counts["n1"] == pytest.approx(0.9, abs=0.03)
    assert counts["outline"] / (counts["n1"] + 2 * counts["two"]) == pytest.approx(0.25, abs=0.03)


def test_seed_determines_image_and_record():
    a, sa = render_seed(123)
    b, sb = render_seed(123)
    assert np.array_equal(a, b) and sa.record() == sb.record()
    assert sa.record()["objects"][0]["word"] in (
        "circle",
        "square",
        "diamond",
        "triangle",
        "star",
        "cross",
        "polygon",
    )


def test_analysis_recovers_ground_truth_on_exact_renders():
    from doodl_pl.shapes64.analysis import find_objects, relation_of

    n = colors = relations = twos = outlines = 0
    for seed in range(200):
        img, scene = render_seed(seed)
        found = find_objects(img)
        n += 1
        by = {f.color: f for f in found}
        if len(found) != len(scene.objects) or any(o.color not in by for o in scene.objects):
            continue
        colors += 1
        outlines += all(by[o.color].outline == o.outline for o in scene.objects)
        if len(found) == 2:
            twos += 1
            a, b = scene.objects
            relations += relation_of(by[a.color], by[b.color]) == scene.relation
    assert colors / n >= 0.98 and outlines / n >= 0.97 and relations == twos


def test_a_split_never_reads_another_splits_cache(tmp_path):
    """``train_*`` also matches ``train_one_<n>``: the cache of split ``train`` must not be
    taken from split ``train_one`` (one-object scenes only)."""
    from doodl_pl.shapes64.dataset import load_split

    one, _ = load_split("train_one", 30, workers=1, root=tmp_path)
    images, records = load_split("train", 24, workers=1, root=tmp_path)
    assert any(len(r["objects"]) == 2 for r in records)
    assert not np.array_equal(images, one[:24])
    again, _ = load_split("train", 12, workers=1, root=tmp_path)  # a larger cache of its own
    assert np.array_equal(again, images[:12])
