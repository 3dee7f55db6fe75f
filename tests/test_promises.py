"""What the README promises, each test written to fail when its feature breaks: negative prompts,
weighted losses, ``retry_failed``, edits neither tied nor renormalised, the non-finite-gradient
path, one-step guidance's sign, ``metrics.csv`` and the trajectory images."""

import csv

import numpy as np
import pytest
import torch
from doodl_pl.callbacks import ImageLogger, StepMetrics
from helpers import backbone, fit, items
from PIL import Image

from doodl_pl.losses import ColorLoss, ImageLoss
from doodl_pl.modules import DoodlModule, OneStepGuidanceModule, VanillaModule
from doodl_pl.optim import DoodlSGD

KW = dict(num_inference_steps=4, guidance_scale=3.0)


def test_negative_prompt_matches_diffusers_and_changes_the_image(tiny_assets, tmp_path):
    from diffusers import StableDiffusionPipeline

    van = VanillaModule(backbone(tiny_assets), sampler="ddim", output_dir=str(tmp_path), **KW)
    item = {"id": "n", "prompt": "a blue star", "seed": 4, "negative_prompt": "a red circle"}
    x = van.noise(item["seed"])[None]
    ours = van.backbone.decode(van.generate(x, x, van.condition([item])).float())
    plain = van.backbone.decode(
        van.generate(x, x, van.condition([{**item, "negative_prompt": None}]))
    )
    pipe = StableDiffusionPipeline.from_pretrained(tiny_assets["sd"])
    pipe.scheduler = van.backbone.scheduler
    ref = pipe(
        "a blue star", negative_prompt="a red circle", latents=x, num_inference_steps=4,
        guidance_scale=3.0, output_type="pt",
    ).images  # fmt: skip
    assert torch.allclose(ours, ref, atol=1e-4)
    assert (ours - plain.float()).abs().max() > 1e-3


def test_several_losses_sum_with_their_weights(tiny_assets, tmp_path):
    red, green = ColorLoss((1.0, 0.0, 0.0), weight=2.0), ColorLoss((0.0, 1.0, 0.0), weight=0.5)
    van = VanillaModule(backbone(tiny_assets), loss=[red, green], output_dir=str(tmp_path), **KW)
    rows = fit(van, items(2), batch_size=2)
    images = van.final_images
    ctx = van.score_context(items(2))
    expect = 2.0 * red(images, ctx) + 0.5 * green(images, ctx)
    got = torch.tensor([rows["it0"]["loss_end"], rows["it1"]["loss_end"]])
    torch.testing.assert_close(got, expect.float(), rtol=1e-5, atol=1e-7)
    assert not torch.allclose(expect, red(images, ctx) + green(images, ctx))


class NanFor(ImageLoss):
    """NaN for items prompted "bad" while ``broken`` is set, finite otherwise."""

    broken = True

    def forward(self, images, ctx):
        value = images.mean(dim=(1, 2, 3))
        bad = torch.tensor([p == "bad" and self.broken for p in ctx.batch["prompt"]])
        return torch.where(bad, value * float("nan"), value)


def test_retry_failed_reruns_only_failed_items(tiny_assets, tmp_path):
    its = [{"id": "good", "prompt": "fine", "seed": 0}, {"id": "bad", "prompt": "bad", "seed": 1}]
    loss = NanFor()
    first = fit(
        VanillaModule(backbone(tiny_assets), loss=loss, output_dir=str(tmp_path), **KW), its
    )
    assert first["bad"]["status"] == "failed" and first["good"]["status"] == "ok"
    loss.broken = False
    again = VanillaModule(backbone(tiny_assets), loss=loss, output_dir=str(tmp_path), **KW)
    fit(again, its)
    assert again.eps.calls == 0 and again.run_records == []  # failed items count as done
    retry = VanillaModule(
        backbone(tiny_assets), loss=loss, output_dir=str(tmp_path), retry_failed=True, **KW
    )
    rows = fit(retry, its)
    assert [r["id"] for r in retry.run_records] == ["bad"]  # the good item is not redone
    assert rows["bad"]["status"] == "ok" and (tmp_path / "images" / "bad.png").is_file()


def test_edits_are_neither_tied_nor_renormalised(tiny_assets, tmp_path):
    """In one batch, the generated item's x and y stay equal and keep their norm; the edit's
    (inverted, so x ≠ y) stay apart and drift in norm."""
    module = DoodlModule(
        backbone(tiny_assets), loss=ColorLoss(), opt_steps=3, output_dir=str(tmp_path),
        optimizer=lambda p: DoodlSGD(p, lr=200.0, clip=0.2, momentum=0.0), perturb_std=0.0,
        **KW,
    )  # fmt: skip
    its = [
        {"id": "gen", "prompt": "a", "seed": 0},
        {"id": "edit", "prompt": "a", "seed": 1, "image": tiny_assets["image"]},
    ]
    x0, y0, edit = module.initial_latents(its)
    assert edit.tolist() == [False, True]
    rows = fit(module, its, batch_size=2)
    assert {r["status"] for r in rows.values()} == {"ok"}
    bank = module.latents
    assert bank.tie.tolist() == [True, False] and bank.renorm.tolist() == [True, False]
    x, y = bank.live()
    assert torch.equal(x[0], y[0]) and not torch.allclose(x[1], y[1])
    assert torch.allclose(x[0].norm(), x0[0].norm(), rtol=1e-9)
    assert abs(float(x[1].norm() / x0[1].norm()) - 1) > 1e-6


class _NanGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v):
        return v.clone()

    @staticmethod
    def backward(ctx, g):
        return g * float("nan")


class NanGradFor(ColorLoss):
    """A finite loss whose gradient is NaN for items prompted "bad"."""

    def forward(self, images, ctx):
        out = super().forward(images, ctx)
        rows = [
            _NanGrad.apply(v) if p == "bad" else v
            for v, p in zip(out, ctx.batch["prompt"], strict=True)
        ]
        return torch.stack(rows)


def test_non_finite_gradient_fails_only_its_item(tiny_assets, tmp_path):
    its = [{"id": "good", "prompt": "fine", "seed": 0}, {"id": "bad", "prompt": "bad", "seed": 1}]
    opt = dict(optimizer=lambda p: DoodlSGD(p, lr=50.0, clip=0.05, momentum=0.9), opt_steps=3)
    mod = DoodlModule(
        backbone(tiny_assets), loss=NanGradFor(), output_dir=str(tmp_path), **opt, **KW
    )
    rows = fit(mod, its, batch_size=2)
    assert rows["bad"]["status"] == "failed"
    assert rows["bad"]["reason"] == "non-finite gradient at optimisation step 0"
    assert rows["good"]["status"] == "ok" and mod.failed_ids == {"bad"}
    alone = DoodlModule(
        backbone(tiny_assets), loss=NanGradFor(), output_dir=str(tmp_path / "a"), **opt, **KW
    )
    ref = fit(alone, its[:1])
    assert rows["good"]["losses"] == pytest.approx(ref["good"]["losses"], rel=1e-5)
    assert rows["good"]["losses"][-1] != rows["good"]["losses"][0]  # it was optimised


def test_one_step_guidance_descends_the_loss(tiny_assets, tmp_path):
    """Guidance lowers the loss against vanilla on the same seeds, more with a larger scale."""
    loss = ColorLoss((1.0, 0.0, 0.0))
    ends = {}
    for scale in (0.0, 30.0, 300.0):
        mod = OneStepGuidanceModule(
            backbone(tiny_assets), loss=loss, loss_scale=scale, output_dir=str(tmp_path / str(scale)),
            **KW,
        )  # fmt: skip
        rows = fit(mod, items(3), batch_size=3)
        ends[scale] = np.array([rows[k]["loss_end"] for k in sorted(rows)])
    assert (ends[30.0] < ends[0.0]).all() and (ends[300.0] < ends[30.0]).all(), ends


def test_metrics_csv_and_trajectories_hold_every_step(tiny_assets, tmp_path):
    m, n_items = 3, 2
    mod = DoodlModule(
        backbone(tiny_assets), loss=ColorLoss(), opt_steps=m, output_dir=str(tmp_path), **KW
    )
    rows = fit(
        mod, items(n_items), batch_size=2, callbacks=[StepMetrics(), ImageLogger(every_n_steps=1)]
    )
    with open(tmp_path / "metrics.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == m * n_items
    for key, r in rows.items():
        mine = [t for t in table if t["id"] == key]
        assert [int(t["step"]) for t in mine] == list(range(m))
        assert [float(t["loss"]) for t in mine] == pytest.approx(r["losses"][:m], rel=1e-6)
        assert all(float(t["seconds"]) > 0 for t in mine)
        grid = np.asarray(Image.open(tmp_path / "trajectories" / f"{key}.png").convert("RGB"))
        side, pad = 16, 2
        assert grid.shape == (side + 2 * pad, (m + 1) * (side + pad) + pad, 3)  # m steps + output
        last = grid[pad : pad + side, m * (side + pad) + pad : m * (side + pad) + pad + side]
        out = np.asarray(Image.open(tmp_path / "images" / f"{key}.png").convert("RGB"))
        assert np.abs(last.astype(int) - out.astype(int)).max() <= 1  # the last frame is the output
