"""Robust gradients (issue 25): expectation over transformations, guide ensembles, the noise
prior."""

import json
import math

import pytest
import torch
from helpers import fit, items
from test_module import doodl

from doodl_pl.losses import (
    EOT,
    ClassifierLoss,
    ColorLoss,
    GuideEnsemble,
    ImageLoss,
    LossContext,
    RandomViews,
    Verified,
    chi_norm_nll,
)
from doodl_pl.optim import DoodlSGD
from doodl_pl.utils.seeding import STREAM_CROPS, item_generator


def gens(seeds, step=0):
    return [item_generator(s, STREAM_CROPS, step, 0) for s in seeds]


def test_views_are_keyed_by_the_item_seed_and_step():
    views = RandomViews(copies=3, shift=0.125, blur=1.5, noise=0.05)
    image = torch.rand(3, 16, 16)
    a = views(image, gens([11])[0])
    assert a.shape == (3, 3, 16, 16)
    assert torch.equal(a, views(image, gens([11])[0]))  # same seed and step: same views
    assert not torch.equal(a, views(image, gens([12])[0]))  # another item
    assert not torch.equal(a, views(image, gens([11], step=1)[0]))  # another step
    assert not torch.equal(a[0], a[1])  # the copies differ from each other
    assert a.min() >= 0 and a.max() <= 1


def test_views_of_an_item_do_not_depend_on_its_batch():
    loss = EOT(ColorLoss((1.0, 0.2, 0.0)), copies=4, noise=0.05)
    images = torch.rand(3, 3, 16, 16)
    seeds = [5, 90_017, 31]
    together = loss(images, LossContext({"seed": seeds}, gens(seeds)))
    alone = loss(images[2:], LossContext({"seed": seeds[2:]}, gens(seeds[2:])))
    assert torch.equal(together[2:], alone)


def test_eot_is_the_mean_of_the_loss_over_the_views():
    inner = ColorLoss((0.0, 0.0, 1.0), weight=3.0)
    loss = EOT(inner, copies=5, shift=0.1, blur=1.0, noise=0.03)
    images = torch.rand(2, 3, 12, 12)
    got = loss(images, LossContext({}, gens([1, 2])))
    views = RandomViews(copies=5, shift=0.1, blur=1.0, noise=0.03)
    want = torch.stack(
        [
            3.0 * inner(views(im, g), LossContext()).mean()
            for im, g in zip(images, gens([1, 2]), strict=True)
        ]
    )
    assert torch.allclose(got, want, atol=1e-6)


def test_eot_gradient_matches_finite_differences():
    """The views are differentiable (shift, blur and noise are linear in the image away from
    the clamp at 0 and 1): autograd against central differences, in float64."""
    loss = EOT(ColorLoss((0.9, 0.1, 0.5)), copies=3, shift=0.1, blur=1.2, noise=0.01)
    image = (0.3 + 0.4 * torch.rand(1, 3, 10, 10, dtype=torch.float64)).requires_grad_(True)

    def f(x):
        return loss(x, LossContext({}, gens([7])))[0]

    assert torch.autograd.gradcheck(f, (image,), eps=1e-6, atol=1e-6)


def test_eot_keeps_the_guide_score_of_the_image_itself(tiny_assets):
    clf = ClassifierLoss("resnet10t", tiny_assets["classifier"], num_classes=5, target=2)
    loss = EOT(clf, copies=2)
    images = torch.rand(2, 3, 16, 16)
    ctx = LossContext({"class_index": [2, 2]}, gens([3, 4]))
    assert loss.score_name == "class_prob"
    assert torch.equal(loss.guide_score(images, ctx), clf.guide_score(images, ctx))
    assert not torch.allclose(loss(images, ctx), clf(images, ctx))  # the views change the loss
    assert EOT(ColorLoss()).score_name is None


@pytest.mark.parametrize(
    ("kw", "needle"),
    [({"copies": 0}, "`copies`"), ({"shift": 0.5}, "`shift`"), ({"blur": -1.0}, "`blur`")],
)
def test_eot_checks_its_arguments(kw, needle):
    with pytest.raises(ValueError, match=needle):
        EOT(ColorLoss(), **kw)


def test_ensemble_reduces_the_members_and_scores_by_the_least(tiny_assets):
    images = torch.rand(3, 3, 16, 16)
    ctx = LossContext({"class_index": [1, 2, 4]})
    a, b = ColorLoss((1.0, 0.0, 0.0), weight=2.0), ColorLoss((0.0, 1.0, 0.0))
    la, lb = 2.0 * a(images, ctx), b(images, ctx)
    assert torch.allclose(GuideEnsemble([a, b])(images, ctx), (la + lb) / 2)
    assert torch.allclose(GuideEnsemble([a, b], "max")(images, ctx), torch.maximum(la, lb))
    assert GuideEnsemble([a, b]).guide_score(images, ctx) is None

    kw = dict(model_name="resnet10t", checkpoint_path=tiny_assets["classifier"], num_classes=5)
    c32, c16 = ClassifierLoss(input_size=32, **kw), ClassifierLoss(input_size=16, **kw)
    ensemble = GuideEnsemble([c32, c16])
    assert ensemble.score_name == "class_prob"
    s32, s16 = c32.guide_score(images, ctx), c16.guide_score(images, ctx)
    assert not torch.allclose(s32, s16)
    assert torch.equal(ensemble.guide_score(images, ctx), torch.minimum(s32, s16))
    assert GuideEnsemble([c32, a]).score_name is None  # mixed kinds: no shared score


def test_ensemble_checks_its_arguments():
    with pytest.raises(ValueError, match="`losses`"):
        GuideEnsemble([ColorLoss()])
    with pytest.raises(ValueError, match="`reduction`"):
        GuideEnsemble([ColorLoss(), ColorLoss()], reduction="min")


def test_verified_steers_with_the_guide_and_scores_by_the_lesser(tiny_assets):
    images = torch.rand(3, 3, 16, 16, requires_grad=True)
    ctx = LossContext({"class_index": [1, 2, 4]})
    kw = dict(model_name="resnet10t", checkpoint_path=tiny_assets["classifier"], num_classes=5)
    guide, verifier = ClassifierLoss(input_size=32, **kw), ClassifierLoss(input_size=16, **kw)
    guide.weight = 2.0
    verifier.requires_grad_(True)  # ClassifierLoss freezes itself; Verified must not rely on it
    loss = Verified(guide, verifier)
    assert loss.score_name == "class_prob"
    sg, sv = guide.guide_score(images, ctx), verifier.guide_score(images, ctx)
    assert not torch.allclose(sg, sv)
    assert torch.equal(loss.guide_score(images, ctx), torch.minimum(sg, sv))
    # Either order gives the lesser score (a wrapper that reads only `loss` would differ).
    assert torch.equal(Verified(verifier, guide).guide_score(images, ctx), torch.minimum(sg, sv))
    # The gradient is the guide's alone (weighted), the verifier's weights get none.
    (got,) = torch.autograd.grad(loss(images, ctx).sum(), images)
    (want,) = torch.autograd.grad(2.0 * guide(images, ctx).sum(), images)
    assert torch.allclose(got, want)
    assert not any(p.requires_grad for p in loss.verifier.parameters())


def test_verified_select_both_ranks_images_by_guide_and_verifier(tiny_assets, tmp_path):
    """``select="both"``: what the methods compare images by (``selection_loss``, summed with
    the loss weights by the module's ``item_scores``) is the steering loss plus the verifier's;
    the default ranks by the steering loss alone, and the gradient is the guide's either way."""
    images = torch.rand(3, 3, 16, 16)
    ctx = LossContext({"class_index": [1, 2, 4]})
    kw = dict(model_name="resnet10t", checkpoint_path=tiny_assets["classifier"], num_classes=5)
    guide, verifier = ClassifierLoss(input_size=32, **kw), ClassifierLoss(input_size=16, **kw)
    verifier.weight = 0.5
    plain, both = Verified(guide, verifier), Verified(guide, verifier, select="both")
    with torch.no_grad():
        g, v = guide(images, ctx), verifier(images, ctx)
        torch.testing.assert_close(plain.selection_loss(images, ctx), g)
        torch.testing.assert_close(both.selection_loss(images, ctx), g + 0.5 * v)
        torch.testing.assert_close(both(images, ctx), g)
    module = doodl(tiny_assets, tmp_path, loss=[Verified(guide, verifier, 3.0, "both")])
    torch.testing.assert_close(module.item_scores(images, ctx), 3.0 * (g + 0.5 * v))
    torch.testing.assert_close(module.item_losses(images, ctx), 3.0 * g)
    with pytest.raises(ValueError, match="`select`"):
        Verified(guide, verifier, select="verifier")


def test_verified_checks_its_arguments(tiny_assets):
    kw = dict(model_name="resnet10t", checkpoint_path=tiny_assets["classifier"], num_classes=5)
    with pytest.raises(ValueError, match="`verifier`"):
        Verified(ClassifierLoss(**kw), ColorLoss())
    with pytest.raises(TypeError, match="`verifier`"):
        Verified(ClassifierLoss(**kw), "judge")


def test_chi_norm_nll_minimum_and_gradient():
    d = 4 * 8 * 8
    z = torch.randn(3, 4, 8, 8, dtype=torch.float64)
    typical = z / z.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * math.sqrt(d - 1)
    assert torch.allclose(chi_norm_nll(typical), torch.zeros(3, dtype=torch.float64), atol=1e-9)
    for scale in (0.8, 0.99, 1.01, 1.3):
        assert (chi_norm_nll(typical * scale) > 0).all()
    # ≈ (d − 1)·δ² near the shell
    assert torch.allclose(
        chi_norm_nll(typical * 1.01), torch.full((3,), (d - 1) * 1e-4).double(), rtol=0.02
    )
    z.requires_grad_(True)
    (g,) = torch.autograd.grad(chi_norm_nll(z).sum(), z)
    r2 = z.detach().flatten(1).pow(2).sum(1).view(-1, 1, 1, 1)
    assert torch.allclose(g, z.detach() * (1 - (d - 1) / r2))


def test_noise_prior_is_part_of_the_objective_and_pulls_the_norm_to_the_shell(
    tiny_assets, tmp_path
):
    """With only the prior to follow (the guide's weight 0), the objective is the prior's
    value and falls step by step; without it the objective is 0."""
    sgd = lambda p: DoodlSGD(p, lr=0.05, clip=1.0, momentum=0.0)  # noqa: E731
    kw = dict(loss=ColorLoss(weight=0.0), renormalize=False, perturb_std=0.0, optimizer=sgd)
    rows = fit(doodl(tiny_assets, tmp_path / "p", prior=1.0, opt_steps=4, **kw), items(2))
    for row in rows.values():
        objective = row["objective"]
        assert objective[0] > 0 and all(
            b < a for a, b in zip(objective, objective[1:], strict=False)
        )
    rows = fit(doodl(tiny_assets, tmp_path / "n", opt_steps=2, **kw), items(2))
    assert all(v == 0 for row in rows.values() for v in row["objective"])
    with pytest.raises(ValueError, match="`prior`"):
        doodl(tiny_assets, tmp_path, prior=-1.0)


class _FixedGuide(ImageLoss):
    score_name = "class_prob"

    def __init__(self, probs):
        super().__init__()
        self.probs = torch.tensor(probs)
        self.seen = 0

    def guide_score(self, images, ctx):
        out = self.probs[self.seen : self.seen + images.shape[0]]
        self.seen += images.shape[0]
        return out


class _FixedJudge:
    def __init__(self, preds):
        self.preds = torch.tensor(preds)

    def predict(self, images):
        return self.preds


def test_agreement_against_a_hand_count():
    from doodl_pl.shapes64.agreement import agreement, markdown_rows

    targets = [6, 7, 8, 6, 7, 8]
    # accepted at 0.9: images 0, 2, 3, 5; the judge reads 2 and 5 wrong
    guide = _FixedGuide([0.95, 0.2, 0.91, 0.99, 0.5, 0.95])
    judge = _FixedJudge([6, 7, 0, 6, 1, 1])
    rows = agreement(torch.zeros(6, 3, 4, 4), targets, {"g": guide}, (0.9,), judge, batch=4)
    assert rows[0] == {"guide": "judge", "valid": pytest.approx(3 / 6), "n": 6}
    row = rows[1]
    assert row["accepted"] == pytest.approx(4 / 6)
    assert row["hacking"]["value"] == pytest.approx(0.5) and row["hacking"]["n"] == 4
    assert row["accepted_valid"] == pytest.approx(2 / 6)
    assert "| g | 0.9 | 0.667 | 0.50" in markdown_rows(rows)
    with pytest.raises(ValueError, match="class_prob"):
        agreement(torch.zeros(1, 3, 4, 4), [0], {"c": ColorLoss()}, (0.9,), judge)


def test_the_adversarially_trained_timm_guides_the_readme_names_exist():
    import re

    import timm
    from helpers import ROOT

    named = re.findall(r"`([\w.]+_adv_in1k)`", (ROOT / "README.md").read_text())
    assert len(named) >= 2
    assert set(named) <= set(timm.list_pretrained("*adv*"))


def test_base_rates_against_a_hand_count(tmp_path):
    from doodl_pl.shapes64.rarity import base_rates, word_items

    rates = base_rates(["circle", "circle", "polygon", "circle", "polygon"], [0, 8, 7, 8, 7])
    assert rates["circle"][0] == pytest.approx(1 / 3) and rates["circle"][8] == pytest.approx(2 / 3)
    assert rates["polygon"][7] == 1.0 and rates["polygon"].sum() == pytest.approx(1.0)
    a = word_items("tune", 3, tmp_path / "a.jsonl", words=("circle", "polygon")).read_text()
    b = word_items("tune", 3, tmp_path / "b.jsonl", words=("circle", "polygon")).read_text()
    rows = [json.loads(line) for line in a.splitlines()]
    assert a == b and len(rows) == 6 and len({r["seed"] for r in rows}) == 6
    assert rows[0]["prompt"].endswith("circle") and rows[3]["prompt"].endswith("polygon")
    e = word_items("eval", 3, tmp_path / "e.jsonl", words=("circle",)).read_text()
    assert not {r["seed"] for r in rows} & {json.loads(x)["seed"] for x in e.splitlines()}


def test_target_sets_name_their_pairs_and_keep_to_their_split(tmp_path):
    from doodl_pl.shapes64.dataset import SPLITS
    from doodl_pl.shapes64.rarity import parse_pairs, target_items
    from doodl_pl.shapes64.world import SHAPES

    pairs = parse_pairs("diamond:pentagon, cross:star")
    assert pairs == [("diamond", "pentagon"), ("cross", "star")]
    rows = [
        json.loads(x)
        for x in target_items(pairs, 5, "eval", tmp_path / "i.jsonl").read_text().splitlines()
    ]
    assert [r["class_index"] for r in rows] == [
        SHAPES.index(s) for s in ("pentagon", "star") * 2 + ("pentagon",)
    ]
    assert all(r["prompt"].endswith(r["word"]) for r in rows)
    first, nxt = SPLITS["eval_one"][0], SPLITS["eval_two"][0]
    assert all(first <= r["seed"] < nxt for r in rows)
    # per-class FID's references: one folder per target class, renders of that shape
    refs = tmp_path / "fid_reference"
    assert sorted(p.name for p in refs.iterdir()) == sorted(
        str(SHAPES.index(s)) for s in ("pentagon", "star")
    )
    assert len(list((refs / str(SHAPES.index("star"))).glob("*.png"))) == 64
    for bad in ("square:polygon", "hexagon:circle", "circle"):
        with pytest.raises(ValueError, match="WORD:CLASS"):
            parse_pairs(bad)


def test_sweep_point_reads_a_bins_base_rate_and_costs(tmp_path):
    from doodl_pl.shapes64.rarity import plot_sweep, sweep_point
    from doodl_pl.shapes64.world import SHAPES

    rows = [{"word": "polygon", "class_index": SHAPES.index("hexagon")},
            {"word": "cross", "class_index": SHAPES.index("star")}]  # fmt: skip
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    runs = [
        {"name": "rs", "cost": {"unet_calls_per_item": 500.0},
         "metrics": {"calls_per_valid": {"value": float("inf"), "lo": float("nan"),
                                         "hi": float("nan")}}},
        {"name": "doodl", "cost": {"unet_calls_per_item": 400.0},
         "metrics": {"calls_per_valid": {"value": 800.0, "lo": 500.0, "hi": 1500.0}}},
    ]  # fmt: skip
    (tmp_path / "evaluation" / "results.json").write_text(json.dumps(runs))
    rates = {w: [0.0] * len(SHAPES) for w in ("polygon", "cross")}
    rates["polygon"][SHAPES.index("hexagon")], rates["cross"][SHAPES.index("star")] = 0.5, 0.1
    p = sweep_point(tmp_path, rates)
    assert p["base_rate"] == pytest.approx(0.3)
    assert p["methods"]["rs"]["value"] == float("inf") and p["methods"]["rs"]["spent"] == 1000
    assert p["methods"]["doodl"]["lo"] == 500.0
    plot_sweep([p, dict(p, base_rate=0.05, bin="other")], tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 1000


def test_cost_ratios_join_items_by_id_and_count_a_failed_item_as_no_image(tmp_path):
    import json

    from doodl_pl.shapes64.rarity import cost_ratios

    def run(name, calls, hits):
        root = tmp_path / name
        root.mkdir()
        rows = [{"id": i, "unet_calls": c} for i, c in calls.items()]
        (root / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        ids = list(hits)
        per_item = {"id": ids, "accepted_valid": [hits[i] for i in ids]}
        return {"name": name, "root": str(root), "per_item": per_item}

    # rejection sampling: 600 calls for 2 valid images (300 each)
    rs = run("rejection_sampling", {"a": 100, "b": 200, "c": 300}, {"a": 1.0, "b": 1.0, "c": 0.0})
    # listed in another order, one item failed (NaN): 500 calls for 1 image, 500 each
    dd = run("doodl", {"c": 100, "b": 200, "a": 200}, {"c": 1.0, "b": float("nan"), "a": 0.0})
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation" / "results.json").write_text(json.dumps([rs, dd]))
    ratio = cost_ratios(tmp_path)["doodl"]
    assert ratio.value == pytest.approx(500 / 300) and ratio.n == 3
    with pytest.raises(ValueError, match="no column named 'best_of_n'"):
        cost_ratios(tmp_path, baseline="best_of_n")
