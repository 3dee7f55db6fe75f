"""SDXL backbone: a tiny random SDXL built from configs, against diffusers' own pipeline."""

import pytest
import torch
from helpers import fit, items

from doodl_pl.backbones import StableDiffusionXL
from doodl_pl.losses import ColorLoss
from doodl_pl.modules import DoodlModule, VanillaModule


@pytest.fixture(scope="module")
def sdxl_dir(tiny_assets):
    return tiny_assets["sdxl"]


@pytest.mark.parametrize("negative", [None, "a blue square"])
def test_vanilla_ddim_matches_sdxl_pipeline(sdxl_dir, tmp_path, negative):
    """Two text encoders, pooled embeddings, time ids and zeroed empty negatives all reach the UNet
    as StableDiffusionXLPipeline sends them: same noise, same image."""
    from diffusers import StableDiffusionXLPipeline

    van = VanillaModule(
        StableDiffusionXL(sdxl_dir), sampler="ddim", num_inference_steps=4, guidance_scale=3.0,
        output_dir=str(tmp_path),
    )  # fmt: skip
    it = [{"id": "a", "prompt": "a red circle", "seed": 0, "negative_prompt": negative}]
    x = van.noise(0)[None]
    ours = van.backbone.decode(van.generate(x, x, van.condition(it)).float())
    pipe = StableDiffusionXLPipeline.from_pretrained(sdxl_dir)
    pipe.scheduler = van.backbone.scheduler
    ref = pipe(
        "a red circle", negative_prompt=negative, latents=x, num_inference_steps=4,
        guidance_scale=3.0, output_type="pt",
    ).images  # fmt: skip
    assert torch.allclose(ours, ref, atol=1e-4)


@pytest.mark.parametrize("sampler", ["edict", "bdia"])
def test_doodl_runs_on_sdxl(sdxl_dir, tmp_path, sampler):
    """The same module, engine, losses and callbacks on SDXL: the loss falls, the gradient is the
    reversible engine's (drift at round-off)."""
    from doodl_pl.optim import DoodlSGD

    module = DoodlModule(
        StableDiffusionXL(sdxl_dir), loss=ColorLoss((1.0, 0.0, 0.0)), sampler=sampler,
        num_inference_steps=3, opt_steps=3, guidance_scale=3.0, output_dir=str(tmp_path),
        optimizer=lambda p: DoodlSGD(p, lr=50.0, clip=0.05, momentum=0.0), keep_best=False,
    )  # fmt: skip
    rows = fit(module, items(2), batch_size=2)
    for r in rows.values():
        assert r["status"] == "ok" and r["loss_end"] < r["loss_start"]
        assert r["max_drift"] < 1e-12  # float64 state: round-off
    assert (tmp_path / "images" / "it0.png").is_file()


def test_fp16_vae_is_upcast(sdxl_dir):
    sd = StableDiffusionXL(sdxl_dir, dtype="float16")
    assert sd.unet.dtype == torch.float16 and sd.vae.dtype == torch.float32
    assert (
        StableDiffusionXL(sdxl_dir, dtype="float16", vae_dtype="float16").vae.dtype == torch.float16
    )


def test_mixed_negatives_in_a_batch_equal_each_item_alone(sdxl_dir, tmp_path):
    """An item's empty negative is zeroed (SDXL's ``force_zeros_for_empty_prompt``) whatever its
    batch-mates have: a batch mixing empty and set negatives samples each item as it would alone,
    and the empty one as diffusers' pipeline does."""
    van = VanillaModule(
        StableDiffusionXL(sdxl_dir), sampler="ddim", num_inference_steps=3, guidance_scale=3.0,
        output_dir=str(tmp_path),
    )  # fmt: skip
    its = [
        {"id": "plain", "prompt": "a red circle", "seed": 91, "negative_prompt": None},
        {"id": "neg", "prompt": "a green star", "seed": 17, "negative_prompt": "a blue square"},
    ]
    x = torch.stack([van.noise(it["seed"]) for it in its])
    together = van.generate(x, x, van.condition(its))
    for i, it in enumerate(its):
        alone = van.generate(x[i : i + 1], x[i : i + 1], van.condition([it]))
        assert torch.allclose(together[i : i + 1], alone, atol=1e-5), it["id"]
    cond = van.condition(its)
    assert cond.null_embeds[0].abs().max() == 0 and cond.null_embeds[1].abs().max() > 0
