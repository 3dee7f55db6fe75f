import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from doodl_pl.callbacks import PerturbLatents, RenormalizeLatents, TieLatents
from helpers import backbone, clip_loss, edit_round_trip, fit, items, manifest
from PIL import Image

from doodl_pl.engines import AutogradEngine
from doodl_pl.losses import ColorLoss, ImageLoss, multi_crop
from doodl_pl.modules import DoodlModule, LatentBank, VanillaModule
from doodl_pl.optim import DoodlSGD


def doodl(assets, out, **kw):
    kw.setdefault("loss", ColorLoss((1.0, 0.0, 0.0)))
    kw.setdefault("num_inference_steps", 4)
    kw.setdefault("opt_steps", 3)
    kw.setdefault("guidance_scale", 3.0)
    return DoodlModule(backbone(assets), output_dir=str(out), **kw)


def png(root, item_id):
    return np.asarray(Image.open(root / "images" / f"{item_id}.png"), dtype=np.int16)


def test_optimizer_matches_reference_update():
    """DoodlSGD against the reference code's hand-written loop, on a fixed gradient sequence."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 4, 3, 3, generator=g)
    y0 = x0.clone()
    grads = [
        (torch.randn(2, 4, 3, 3, generator=g) * 1e-2, torch.randn(2, 4, 3, 3, generator=g) * 1e-2)
        for _ in range(4)
    ]
    x, y = torch.nn.Parameter(x0.clone()), torch.nn.Parameter(y0.clone())
    opt = DoodlSGD([{"params": [x, y], "pair": True}], lr=0.5, clip=1e-3, momentum=0.9)
    opt.param_groups[0]["tie_mask"] = torch.tensor([True, False])
    rx, ry = x0.clone(), y0.clone()
    bufs = [None, None]
    for gx, gy in grads:
        x.grad, y.grad = gx.clone(), gy.clone()
        opt.step()
        # reference: grad = -0.5 * grad_scale * grad, tied rows averaged, clip, momentum, add
        new = []
        for k, (gr, lat) in enumerate(((gx, rx), (gy, ry))):
            step = -0.5 * gr
            mean = -0.5 * (gx + gy) / 2
            step = torch.cat([mean[:1], step[1:]])
            step = step.clip(-1e-3, 1e-3)
            bufs[k] = step if bufs[k] is None else 0.9 * bufs[k] + step
            new.append(lat + bufs[k])
        rx, ry = new
    assert torch.allclose(x.data, rx, atol=1e-7) and torch.allclose(y.data, ry, atol=1e-7)


def test_post_update_callbacks():
    bank = LatentBank(3, (4, 2, 2), torch.float64)
    x = torch.randn(2, 4, 2, 2, dtype=torch.float64)
    bank.load(x, x + 1, torch.tensor([True, False]), torch.tensor([True, False]), [5, 6])

    class M:
        latent_bank = bank

    PerturbLatents(0.5).on_train_batch_end(None, M, None, None, 0)
    lx, ly = bank.live()
    assert torch.allclose(ly - lx, torch.ones_like(lx))  # the same draw went to x and y
    assert not torch.allclose(lx, x)
    TieLatents().on_train_batch_end(None, M, None, None, 0)
    assert torch.equal(lx[0], ly[0]) and not torch.equal(lx[1], ly[1])
    before = lx[1].clone()
    RenormalizeLatents().on_train_batch_end(None, M, None, None, 0)
    assert torch.allclose(lx[0].norm(), x[0].norm()) and torch.equal(lx[1], before)
    assert bank.x[2].abs().sum() == 0  # rows past the batch stay untouched


def test_toy_loss_falls(tiny_assets, tmp_path):
    module = doodl(
        tiny_assets,
        tmp_path,
        opt_steps=8,
        optimizer=lambda p: DoodlSGD(p, lr=50.0, clip=0.05, momentum=0.9),
        keep_best=False,
    )
    rows = fit(module, items(2))
    for r in rows.values():  # the last image against the first, scored alike
        assert r["output"] == "last" and r["loss_end"] == r["losses"][-1]
        assert r["loss_end"] < 0.9 * r["loss_start"], r["losses"]


def test_noise_depends_only_on_seed(tiny_assets, tmp_path):
    module = doodl(tiny_assets, tmp_path)
    expected = torch.randn((4, 8, 8), generator=torch.Generator().manual_seed(123))
    assert torch.equal(module.noise(123), expected)


def test_batch_size_invariance(tiny_assets, tmp_path):
    """Each item's result depends on its own prompt and seed alone: batch size 1 against 4 with
    the items in the opposite order (seeds unlike their positions, prompts all different)."""
    its = [
        {"id": f"it{i}", "prompt": p, "seed": s}
        for i, (p, s) in enumerate(
            zip(["a red circle", "a blue star", "two", "a"], [7, 3, 11, 5], strict=True)
        )
    ]
    a, b = tmp_path / "bs1", tmp_path / "bs4"
    # CLIP with real random cuts: its optimised and scored cuts must follow each item's seed.
    loss = [ColorLoss((1.0, 0.0, 0.0)), clip_loss(tiny_assets)]
    ra = fit(doodl(tiny_assets, a, loss=loss), its, batch_size=1)
    rb = fit(doodl(tiny_assets, b, loss=loss), its[::-1], batch_size=4)
    assert len({r["loss_start"] for r in ra.values()}) == 4
    for k in ra:
        assert ra[k]["losses"] == pytest.approx(rb[k]["losses"], rel=1e-4)
        assert np.abs(png(a, k) - png(b, k)).max() <= 1


def test_an_unchanged_image_scores_the_same_at_every_iterate(tiny_assets, tmp_path):
    """With no step (λ = 1e-30, below float64 round-off; no perturbation) every iterate is the same image; scored with one
    fixed draw of cuts per item, its score must not move, even though the optimised objective
    redraws its cuts every step."""
    module = doodl(
        tiny_assets, tmp_path, loss=clip_loss(tiny_assets), opt_steps=3, perturb_std=0.0,
        optimizer=lambda p: DoodlSGD(p, lr=1e-30, clip=1.0, momentum=0.0),  # x + 1e-30·g == x
    )  # fmt: skip
    rows = fit(module, items(2), batch_size=2)
    for r in rows.values():
        assert len(r["losses"]) == 4 and len(set(r["losses"])) == 1, r["losses"]
        assert len(set(r["objective"])) > 1, r["objective"]  # cuts redrawn per step


def test_rerun_skips_finished_items(tiny_assets, tmp_path):
    rows = fit(doodl(tiny_assets, tmp_path), items(3))
    assert len(rows) == 3
    module = doodl(tiny_assets, tmp_path)
    fit(module, items(3))
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 3 and module.eps.calls == 0
    fit(doodl(tiny_assets, tmp_path), items(4))
    assert len((tmp_path / "manifest.jsonl").read_text().splitlines()) == 4


def test_vanilla_ddim_matches_diffusers_pipeline(tiny_assets, tmp_path):
    """Our DDIM sampling + decode equals diffusers' own StableDiffusionPipeline."""
    from diffusers import StableDiffusionPipeline

    van = VanillaModule(
        backbone(tiny_assets),
        sampler="ddim",
        num_inference_steps=4,
        guidance_scale=3.0,
        output_dir=str(tmp_path),
    )
    it = items(1, prompt="a blue star")
    x = van.noise(it[0]["seed"])[None]
    ours = van.backbone.decode(van.generate(x, x, van.condition(it)).float())
    pipe = StableDiffusionPipeline.from_pretrained(tiny_assets["sd"])
    pipe.scheduler = van.backbone.scheduler
    ref = pipe(
        "a blue star", latents=x, num_inference_steps=4, guidance_scale=3.0, output_type="pt"
    ).images
    assert torch.allclose(ours, ref, atol=1e-4)


def test_engines_agree_in_module(tiny_assets, tmp_path):
    ra = fit(doodl(tiny_assets, tmp_path / "r"), items(1))
    rb = fit(doodl(tiny_assets, tmp_path / "a", engine=AutogradEngine()), items(1))
    assert ra["it0"]["losses"] == pytest.approx(rb["it0"]["losses"], rel=1e-5)
    assert ra["it0"]["max_drift"] < 1e-12  # float64 state: round-off


def test_sequential_decode_leaves_the_run_unchanged(tiny_assets, tmp_path):
    """EDICT's two final latents scored one at a time (the memory lever): the same losses at every
    step, two items in one batch (rows must not leak) and CLIP cuts drawn per latent."""
    kw = dict(loss=clip_loss(tiny_assets), opt_steps=2)
    ra = fit(doodl(tiny_assets, tmp_path / "a", **kw), items(2), batch_size=2)
    rb = fit(doodl(tiny_assets, tmp_path / "b", sequential_decode=True, **kw), items(2),
             batch_size=2)  # fmt: skip
    for i in ("it0", "it1"):
        assert rb[i]["status"] == "ok"
        assert rb[i]["losses"] == pytest.approx(ra[i]["losses"], rel=1e-5)
        assert ra[i]["losses"][0] != ra[i]["losses"][-1]  # the steps moved the latents


class Climb(ColorLoss):
    """The color loss f on one random cut per image (drawn from the item's generator, like CLIP's
    cuts), but with gradient −∇f: the optimizer makes f worse."""

    def forward(self, images, ctx):
        cuts = torch.stack(
            [multi_crop(im, 1, 8, 1.0, ctx.generator(i), 0.3)[0] for i, im in enumerate(images)]
        )
        f = super().forward(cuts, ctx)
        return 2 * f.detach() - f


def test_best_iterate_never_worse_than_vanilla(tiny_assets, tmp_path):
    """On a run where the loss goes up, the default output is the starting (vanilla) image with
    its own score; the last-iterate option outputs the worse last image. Scores of all iterates
    are taken with one fixed draw of cuts, so they compare like with like."""
    opt = dict(optimizer=lambda p: DoodlSGD(p, lr=50.0, clip=0.05, momentum=0.9), opt_steps=4)
    last = fit(
        doodl(tiny_assets, tmp_path / "last", loss=Climb(), keep_best=False, **opt), items(2)
    )
    best = fit(doodl(tiny_assets, tmp_path / "best", loss=Climb(), **opt), items(2))
    van = VanillaModule(
        backbone(tiny_assets), loss=Climb(), num_inference_steps=4,
        guidance_scale=3.0, output_dir=str(tmp_path / "van"),
    )  # fmt: skip
    vanilla = fit(van, items(2))
    for k in last:
        lr, br = last[k], best[k]
        assert len(lr["losses"]) == len(lr["objective"]) + 1 == 5
        assert lr["losses"] == pytest.approx(br["losses"])  # same run up to the output choice
        assert lr["loss_end"] == lr["losses"][-1] > 1.05 * lr["loss_start"]
        # iterate 0 is the vanilla image, scored with the same cuts as vanilla's own run
        assert lr["output"] == "last" and lr["loss_start"] == pytest.approx(vanilla[k]["loss_end"])
        assert br["output"] == "best" and br["output_step"] == 0
        assert br["loss_end"] == br["loss_start"] == min(br["losses"])
        assert np.abs(png(tmp_path / "best", k) - png(tmp_path / "van", k)).max() <= 1
        assert np.abs(png(tmp_path / "last", k) - png(tmp_path / "van", k)).max() > 5


def test_best_iterate_is_the_last_when_the_loss_falls(tiny_assets, tmp_path):
    opt = dict(optimizer=lambda p: DoodlSGD(p, lr=50.0, clip=0.05, momentum=0.0), opt_steps=3)
    rows = fit(doodl(tiny_assets, tmp_path, **opt), items(2), batch_size=2)
    for r in rows.values():
        assert all(b < a for a, b in zip(r["losses"][:-1], r["losses"][1:], strict=True)), r[
            "losses"
        ]
        assert r["output"] == "last" and r["output_step"] == 3  # so the last iterate is output
        assert r["loss_end"] == r["losses"][-1] == min(r["losses"])


class NanFor(ImageLoss):
    """Finite for every item but those prompted "bad", whose loss (and only theirs) is NaN."""

    def forward(self, images, ctx):
        out = []
        for image, prompt in zip(images, ctx.batch["prompt"], strict=True):
            value = image.mean()
            out.append(value * float("nan") if prompt == "bad" else value)
        return torch.stack(out)


def test_nan_loss_fails_only_its_item(tiny_assets, tmp_path):
    its = [{"id": "good", "prompt": "fine", "seed": 0}, {"id": "bad", "prompt": "bad", "seed": 1}]
    module = doodl(tiny_assets, tmp_path, loss=NanFor())
    rows = fit(module, its, batch_size=2)
    assert rows["good"]["status"] == "ok" and rows["bad"]["status"] == "failed"
    assert "non-finite" in rows["bad"]["reason"]
    assert (tmp_path / "images" / "good.png").exists()
    assert not (tmp_path / "images" / "bad.png").exists()
    assert module.failed_ids == {"bad"}
    # the good item was optimised as if alone
    alone = fit(doodl(tiny_assets, tmp_path / "alone", loss=NanFor()), its[:1])
    assert alone["good"]["losses"] == pytest.approx(rows["good"]["losses"], rel=1e-4)


def test_edit_inversion_reproduces_image_latent(tiny_assets, tmp_path):
    """Inverting a real image then sampling forward gives back its VAE latent (float64)."""
    module, (x, y, edit), x0 = edit_round_trip(tiny_assets, tmp_path)
    assert bool(edit[0]) and not torch.equal(x, y)
    from doodl_pl.data import load_image

    z0 = module.backbone.encode(load_image(tiny_assets["image"], 16)[None])
    rel = float((x0 - z0).norm() / z0.norm())
    assert rel < 1e-10


def test_validation_messages(tiny_assets, tmp_path):
    sd = backbone(tiny_assets)
    with pytest.raises(ValueError, match=r"`mix` must be in \(0, 1\], got 1.3"):
        DoodlModule(sd, loss=ColorLoss(), mix=1.3)
    with pytest.raises(ValueError, match="`opt_steps` must be >= 1"):
        DoodlModule(sd, loss=ColorLoss(), opt_steps=0)
    with pytest.raises(ValueError, match="`guidance_scale` must be >= 0"):
        DoodlModule(sd, loss=ColorLoss(), guidance_scale=-1)
    with pytest.raises(ValueError, match="`num_inference_steps` must be >= 1"):
        DoodlModule(sd, loss=ColorLoss(), num_inference_steps=0)
    with pytest.raises(ValueError, match="needs a `loss`"):
        DoodlModule(sd)


def test_manifest_helper_empty(tmp_path):
    assert manifest(tmp_path) == {}


def test_best_of_n_costs_what_doodl_costs_per_item(tiny_assets, tmp_path):
    """(6m + 2)·T UNet evaluations per item for both (EDICT's two per step included), at any
    batch size, counted per latent."""
    from doodl_pl.modules import BestOfNModule

    T, m = 4, 3
    d = fit(doodl(tiny_assets, tmp_path / "d", opt_steps=m), items(3), batch_size=3)
    b = fit(
        BestOfNModule(
            backbone(tiny_assets), loss=ColorLoss((1.0, 0.0, 0.0)), num_inference_steps=T,
            guidance_scale=3.0, match_opt_steps=m, candidate_batch=4, output_dir=str(tmp_path / "b"),
        ),
        items(3),
        batch_size=2,
    )  # fmt: skip
    v = fit(
        VanillaModule(backbone(tiny_assets), num_inference_steps=T, output_dir=str(tmp_path / "v")),
        items(2),
        batch_size=2,
    )
    expected = (6 * m + 2) * T
    for rows in (d, b):
        assert {r["unet_calls"] for r in rows.values()} == {expected}
    assert {r["unet_calls"] for r in v.values()} == {2 * T}


def test_best_of_k_start_is_best_of_n_then_optimised(tiny_assets, tmp_path):
    """``init_candidates: k`` starts from the candidate best-of-N(k) would pick (same seeds, same
    scores), costs k generations more, and the optimised output is never worse than that start."""
    from doodl_pl.modules import BestOfNModule

    T, m, k = 4, 2, 5
    loss = [ColorLoss((0.0, 0.0, 1.0)), clip_loss(tiny_assets, weight=0.2)]  # real random cuts
    kw = dict(num_inference_steps=T, guidance_scale=3.0, loss=loss)
    its = items(3)
    best = fit(
        BestOfNModule(backbone(tiny_assets), n_candidates=k, output_dir=str(tmp_path / "b"), **kw),
        its,
    )
    rows = fit(
        DoodlModule(
            backbone(tiny_assets), opt_steps=m, init_candidates=k, output_dir=str(tmp_path / "d"),
            **kw,
        ),
        its,
        batch_size=3,
    )  # fmt: skip
    assert {b["chosen_candidate"] for b in best.values()} != {0}  # the choice matters here
    for key, r in rows.items():
        assert r["init_seed"] == best[key]["chosen_seed"]
        assert r["loss_start"] == pytest.approx(best[key]["loss_end"], rel=1e-5)
        assert r["loss_end"] <= r["loss_start"]
        assert r["unet_calls"] == (6 * m + 2) * T + 2 * T * k
    with pytest.raises(ValueError, match="`init_candidates` must be >= 1, got 0"):
        DoodlModule(backbone(tiny_assets), init_candidates=0, **kw)


class _StepSizes(pl.Callback):
    """Records the (lr, clip) the optimizer steps with, and the size of each update."""

    def __init__(self):
        self.seen, self.moves = [], []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        group = optimizer.param_groups[0]
        self.seen.append((group["lr"], group["clip"]))
        self._before = pl_module.latents.x.detach().clone()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if hasattr(self, "_before"):
            self.moves.append(float((pl_module.latents.x.detach() - self._before).abs().max()))


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_step_schedule_scales_the_steps_actually_taken(tiny_assets, tmp_path, schedule):
    rec = _StepSizes()
    module = doodl(
        tiny_assets, tmp_path / schedule, opt_steps=3, step_schedule=schedule, final_step=0.25,
        optimizer=lambda p: DoodlSGD(p, lr=1e4, clip=0.02, momentum=0.0), renormalize=False,
        perturb_std=0.0,
    )  # fmt: skip
    fit(module, items(1), callbacks=[rec])
    factors = [1.0, 0.625, 0.25] if schedule == "cosine" else [1.0, 1.0, 1.0]
    assert [s for s in rec.seen] == [pytest.approx((1e4 * f, 0.02 * f)) for f in factors]
    # A huge λ makes the clip bind on the largest element: the move is the scheduled bound.
    assert rec.moves == pytest.approx([0.02 * f for f in factors], rel=1e-6)


@pytest.mark.parametrize(
    ("kw", "needle"),
    [({"step_schedule": "linear"}, "`step_schedule`"), ({"final_step": 0.0}, "`final_step`")],
)
def test_step_schedule_checks_its_arguments(tiny_assets, tmp_path, kw, needle):
    with pytest.raises(ValueError, match=needle):
        doodl(tiny_assets, tmp_path, **kw)


def test_best_of_n_fails_only_the_item_whose_candidates_are_all_non_finite(tiny_assets, tmp_path):
    """Every candidate of "bad" has a NaN loss: that item fails with a reason, its batch-mate is
    written as it would be alone."""
    from doodl_pl.modules import BestOfNModule

    def best_of_n(out):
        return BestOfNModule(
            backbone(tiny_assets), loss=NanFor(), num_inference_steps=3, guidance_scale=3.0,
            n_candidates=3, candidate_batch=2, output_dir=str(out),
        )  # fmt: skip

    its = [
        {"id": "good", "prompt": "fine", "seed": 4021},
        {"id": "bad", "prompt": "bad", "seed": 77},
    ]
    rows = fit(best_of_n(tmp_path / "both"), its, batch_size=2)
    assert rows["good"]["status"] == "ok" and rows["bad"]["status"] == "failed"
    assert "all 3 candidates" in rows["bad"]["reason"]
    assert not (tmp_path / "both" / "images" / "bad.png").exists()
    alone = fit(best_of_n(tmp_path / "alone"), its[:1])
    assert alone["good"]["losses"] == pytest.approx(rows["good"]["losses"], rel=1e-6)
    assert alone["good"]["chosen_candidate"] == rows["good"]["chosen_candidate"]


def test_best_of_k_start_draws_in_candidate_batches_and_skips_pads(
    tiny_assets, tmp_path, monkeypatch
):
    """``init_candidates: 5`` with ``candidate_batch: 2`` samples 2 + 2 + 1 candidates per real
    item, none for a pad (a rank's filler item), and picks what one batch of 5 would pick."""
    import doodl_pl.data.datamodule as dm

    def with_pad(items, rank, world, batch_size):  # the real item, then a pad repeating it
        return [(items[:1], [False]), (items[:1], [True])]

    seen = []
    module = doodl(
        tiny_assets, tmp_path / "chunked", opt_steps=1, init_candidates=5, candidate_batch=2
    )
    orig = module.sample_candidates

    def spy(item, js):
        seen.append(list(js))
        return orig(item, js)

    monkeypatch.setattr(module, "sample_candidates", spy)
    monkeypatch.setattr(dm, "shard", with_pad)
    its = [{"id": "only", "prompt": "a blue star", "seed": 90210}]
    rows = fit(module, its)
    assert seen == [[0, 1], [2, 3], [4]]  # the pad batch drew nothing
    monkeypatch.undo()
    whole = fit(
        doodl(tiny_assets, tmp_path / "whole", opt_steps=1, init_candidates=5, candidate_batch=5),
        its,
    )
    assert rows["only"]["init_seed"] == whole["only"]["init_seed"]
    assert rows["only"]["loss_start"] == pytest.approx(whole["only"]["loss_start"], rel=1e-5)


def test_ddim_refuses_edits_before_any_work(tiny_assets, tmp_path):
    """DDIM cannot give a photo back from its inversion: an edit item with ``sampler: ddim`` is
    refused at setup, naming the sampler and the item, and nothing is written."""
    van = VanillaModule(
        backbone(tiny_assets), sampler="ddim", num_inference_steps=3, output_dir=str(tmp_path)
    )
    its = [
        {"id": "gen", "prompt": "a red circle", "seed": 5},
        {"id": "photo", "prompt": "", "seed": 6, "image": tiny_assets["image"]},
    ]
    with pytest.raises(ValueError, match=r"`sampler` 'ddim' cannot invert.*'photo'.*edict"):
        fit(van, its)
    assert manifest(tmp_path) == {} and van.eps.calls == 0
