"""The line probe: score change along the loss gradient against a random direction."""

import pytest
import torch
from helpers import backbone, items

from doodl_pl.diagnostics.landscape import line_probe
from doodl_pl.losses import ColorLoss
from doodl_pl.modules import DoodlModule
from doodl_pl.utils.seeding import STREAM_PROBE, item_generator


def _module(tiny_assets, sampler="edict"):
    return DoodlModule(
        backbone(tiny_assets), loss=ColorLoss((1.0, 0.0, 0.0)), num_inference_steps=4,
        sampler=sampler, opt_steps=1, guidance_scale=1.0,
    )  # fmt: skip


@pytest.mark.parametrize("sampler", ["edict", "bdia"])
def test_small_gradient_steps_lower_a_smooth_loss_more_than_random_steps(tiny_assets, sampler):
    torch.manual_seed(0)
    module = _module(tiny_assets, sampler)
    its = items(3)
    rows = line_probe(module, its, [1e-3, 1e-2], ["gradient", "sign", "random"])
    by = {(r["direction"], r["step"]): r for r in rows}
    assert len(rows) == 6
    for kind in ("gradient", "sign"):
        assert by[(kind, 1e-3)]["improved"] == 1.0, by[(kind, 1e-3)]
        assert by[(kind, 1e-2)]["change"] < by[(kind, 1e-3)]["change"] < 0
    # The gradient is the steepest direction: a random move of the same size changes less.
    assert abs(by[("random", 1e-2)]["change"]) < abs(by[("gradient", 1e-2)]["change"])
    assert len({r["start"] for r in rows}) == 1


def test_bad_arguments_name_themselves(tiny_assets):
    module = _module(tiny_assets)
    with pytest.raises(ValueError, match="`directions`"):
        line_probe(module, items(1), [0.01], ["uphill"])
    with pytest.raises(ValueError, match="`steps`"):
        line_probe(module, items(1), [0.0])


def test_judge_scores_the_moved_starts_through_its_own_chain(tiny_assets):
    module = _module(tiny_assets)
    judge = DoodlModule(
        module.backbone, loss=ColorLoss((1.0, 0.0, 0.0)), num_inference_steps=8, opt_steps=1,
        guidance_scale=1.0,
    )  # fmt: skip
    its = items(2)
    rows = line_probe(module, its, [1e-3], ["gradient"], judge=judge)
    x = torch.stack([judge.noise(it["seed"]) for it in its]).to(judge.state_dtype)
    _, own = judge.evaluate(judge.generate(x, x.clone(), judge.condition(its)), its)
    assert rows[0]["start"] == pytest.approx(float(own.mean()))
    alone = line_probe(module, its, [1e-3], ["gradient"])
    assert alone[0]["start"] != pytest.approx(rows[0]["start"])
    # The moved starts themselves are scored by the judge: rebuild a random move by hand (its
    # direction comes from each item's seed) and score it through the judge's chain.
    a = 0.05
    (row,) = line_probe(module, its, [a], ["random"], judge=judge)
    d = torch.stack(
        [torch.randn(x.shape[1:], generator=item_generator(it["seed"], STREAM_PROBE)) for it in its]
    ).to(x.dtype)
    d = d / d.flatten(1).abs().mean(1).view(-1, 1, 1, 1)  # a mean per-element move of 1
    moved = x - a * d
    moved = moved * (x.flatten(1).norm(dim=1) / moved.flatten(1).norm(dim=1)).view(-1, 1, 1, 1)
    _, score = judge.evaluate(judge.generate(moved, moved.clone(), judge.condition(its)), its)
    assert row["per_item"] == pytest.approx((score - own).tolist(), rel=1e-6, abs=1e-9)
    assert max(abs(c) for c in row["per_item"]) > 0
