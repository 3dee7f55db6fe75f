"""Per-item stopping (``accept``): best-of-N as rejection sampling, DOODL that stops when an
iterate is accepted, the hybrid, and the calls each item actually spent."""

import json

import pytest
import torch
from helpers import backbone, fit, items

from doodl_pl.losses import ColorLoss
from doodl_pl.modules import BestOfNModule, DoodlModule, VanillaModule
from doodl_pl.optim import DoodlSGD

T = 4
KW = dict(num_inference_steps=T, guidance_scale=3.0)


def best_of_n(assets, out, **kw):
    kw = {"loss": ColorLoss((1.0, 0.0, 0.0)), **kw}
    return BestOfNModule(
        backbone(assets), n_candidates=6, candidate_batch=1, output_dir=str(out), **KW, **kw
    )


def test_best_of_n_with_accept_is_rejection_sampling(tiny_assets, tmp_path):
    """It stops at the first draw that meets the rule and pays only for the draws it made; with
    a rule nothing meets it draws all N and keeps the best."""
    its = items(1)
    (full,) = fit(best_of_n(tiny_assets, tmp_path / "all"), its).values()
    s = full["losses"]
    j = min(range(1, 4), key=lambda k: s[k])  # accept exactly the first draw at or below s[j]
    assert all(s[k] > s[j] for k in range(j)), s
    (r,) = fit(best_of_n(tiny_assets, tmp_path / "rs", accept={"loss": s[j]}), its).values()
    assert r["accepted"] is True and r["chosen_candidate"] == j
    assert r["candidates_drawn"] == j + 1 and r["losses"] == pytest.approx(s[: j + 1])
    assert r["unet_calls"] == 2 * T * (j + 1)  # EDICT: 2T per draw
    (never,) = fit(best_of_n(tiny_assets, tmp_path / "no", accept={"loss": -1.0}), its).values()
    assert never["accepted"] is False and never["candidates_drawn"] == 6
    assert never["chosen_candidate"] == full["chosen_candidate"]
    assert never["unet_calls"] == 2 * T * 6
    metrics = json.loads((tmp_path / "rs" / "run_metrics.json").read_text())
    assert metrics["accepted"] == 1 and metrics["unet_calls"] == 2 * T * (j + 1)
    assert metrics["accepted_per_1000_calls"] == pytest.approx(1000 / (2 * T * (j + 1)))


class Offset(ColorLoss):
    """The red color loss, plus 1 for items prompted "far": those never meet a rule that the
    others can."""

    def forward(self, images, ctx):
        far = torch.tensor([float(p == "far") for p in ctx.batch["prompt"]])
        return super().forward(images, ctx) + far.to(images.device)


def doodl(assets, out, **kw):
    kw = {"opt_steps": 4, "loss": Offset((1.0, 0.0, 0.0)), **kw}
    return DoodlModule(
        backbone(assets), output_dir=str(out), keep_best=False, perturb_std=0.0,
        optimizer=lambda p: DoodlSGD(p, lr=50.0, clip=0.05, momentum=0.0), **KW, **kw,
    )  # fmt: skip


def test_doodl_stops_an_item_when_accepted_and_the_rest_go_on_as_before(tiny_assets, tmp_path):
    """The rule accepts one item's iterate 2: that image is its output, it took 3 steps and paid
    6T calls for each (EDICT: 2T forward, 2T rebuild, 2T VJPs), and left the chain; the other
    item's run is the same as without any rule, final generation included."""
    its = items(1) + [{"id": "it1", "prompt": "far", "seed": 4_211}]
    free = fit(doodl(tiny_assets, tmp_path / "free"), its, batch_size=2)
    a, b = free["it0"]["losses"], free["it1"]["losses"]
    assert all(x > y for x, y in zip(a[:-1], a[1:], strict=True)), a  # it0's loss falls
    thr = a[2]
    assert min(b) > thr, (b, thr)  # so only it0 is accepted
    rows = fit(doodl(tiny_assets, tmp_path / "stop", accept={"loss": thr}), its, batch_size=2)
    r0, r1 = rows["it0"], rows["it1"]
    assert r0["accepted"] is True and r0["output"] == "accepted" and r0["output_step"] == 2
    assert r0["losses"] == pytest.approx(a[:3], rel=1e-6) and r0["loss_end"] == r0["losses"][2]
    assert r0["steps_taken"] == 3 and r0["unet_calls"] == 3 * 6 * T
    assert r1["accepted"] is False and r1["steps_taken"] == 4
    assert r1["losses"] == pytest.approx(b, rel=1e-5)
    assert r1["unet_calls"] == (4 * 6 + 2) * T
    metrics = json.loads((tmp_path / "stop" / "run_metrics.json").read_text())
    assert metrics["accepted"] == 1 and metrics["unet_calls"] == (3 * 6 + 4 * 6 + 2) * T


def test_hybrid_draws_until_accepted_then_optimises_the_rest(tiny_assets, tmp_path):
    """``init_candidates: k`` under a rule: an item whose draw is accepted is done without a
    step (output at iterate 0, only its draws paid); one never accepted is optimised from its
    best draw and pays for all k draws and the m steps."""
    its = items(1) + [{"id": "it1", "prompt": "far", "seed": 4_211}]
    probe = fit(best_of_n(tiny_assets, tmp_path / "probe", loss=Offset((1.0, 0.0, 0.0))), its)
    s0 = probe["it0"]["losses"]
    j = min(range(3), key=lambda k: s0[k])  # it0's first draw at or below its best of three
    rows = fit(
        doodl(tiny_assets, tmp_path / "h", init_candidates=3, candidate_batch=1,
              accept={"loss": s0[j]}, opt_steps=2),
        its, batch_size=2,
    )  # fmt: skip
    r0, r1 = rows["it0"], rows["it1"]
    assert r0["accepted"] is True and r0["output_step"] == 0 and r0["steps_taken"] == 0
    assert r0["unet_calls"] == 2 * T * (j + 1) and r0["loss_end"] == pytest.approx(s0[j])
    assert r1["accepted"] is False and r1["steps_taken"] == 2
    assert r1["unet_calls"] == 3 * 2 * T + (2 * 6 + 2) * T


def test_accept_names_a_score_a_loss_gives(tiny_assets, tmp_path):
    with pytest.raises(ValueError, match="`accept` names 'clip_score'"):
        VanillaModule(backbone(tiny_assets), loss=ColorLoss(), accept={"clip_score": 30.0})
    van = VanillaModule(backbone(tiny_assets), loss=ColorLoss(), accept={"loss": 10.0},
                        output_dir=str(tmp_path), **KW)  # fmt: skip
    rows = fit(van, items(2), batch_size=2)
    assert all(r["accepted"] is True for r in rows.values())
    assert torch.tensor([r["loss_end"] for r in rows.values()]).max() <= 10.0
