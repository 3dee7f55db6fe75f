"""v-prediction and x0-prediction UNets (SD 2.x) are converted to ε inside the adapter."""

import json
import shutil

import pytest
import torch
from helpers import backbone

from doodl_pl.backbones import StableDiffusion
from doodl_pl.models import LatentUNetEps
from doodl_pl.sampling import DdimChain, Schedule
from doodl_pl.sampling.schedule import sd1_scheduler
from doodl_pl.testing import tiny_text_condition, tiny_unet


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample", "epsilon"])
@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_ddim_steps_match_diffusers_scheduler(prediction_type, scale):
    """Our DDIM step on the adapter's ε equals diffusers' own DDIMScheduler.step on the raw UNet
    output with that prediction type (CFG applied to the raw outputs, as diffusers' pipelines do)."""
    unet = tiny_unet(seed=3)
    sched = sd1_scheduler(prediction_type=prediction_type)
    model = LatentUNetEps(
        unet, prediction_type=prediction_type, alphas_cumprod=sched.alphas_cumprod
    )
    cond = tiny_text_condition(2, scale=scale)
    schedule = Schedule.from_scheduler(sched, 6)
    chain = DdimChain(model, schedule, cond, state_dtype=torch.float32)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for k, t in enumerate(schedule.timesteps.tolist()):
            ours = chain.step(k, (x,))[0]
            if scale == 1.0:
                raw = unet(x, t, encoder_hidden_states=cond.embeds).sample
            else:
                null = cond.null_embeds.expand_as(cond.embeds)
                both = unet(
                    torch.cat([x, x]), t, encoder_hidden_states=torch.cat([null, cond.embeds])
                )
                n, c = both.sample.chunk(2)
                raw = n + scale * (c - n)
            ref = sched.step(raw, t, x, eta=0.0).prev_sample
            torch.testing.assert_close(ours, ref, atol=2e-5, rtol=1e-4)
            x = ref


def with_prediction_type(tiny_assets, tmp_path, value: str) -> str:
    """A copy of the tiny SD whose scheduler config says ``prediction_type: value``."""
    sd = tmp_path / "sd"
    shutil.copytree(tiny_assets["sd"], sd)
    cfg_path = sd / "scheduler" / "scheduler_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["prediction_type"] = value
    cfg_path.write_text(json.dumps(cfg))
    return str(sd)


def test_unknown_prediction_type_names_the_key(tiny_assets, tmp_path):
    sd = with_prediction_type(tiny_assets, tmp_path, "flow")
    with pytest.raises(ValueError, match=r"scheduler_config.json `prediction_type` must be one of"):
        StableDiffusion(sd)
    with pytest.raises(ValueError, match=r"`prediction_type` must be one of"):
        LatentUNetEps(tiny_unet(), prediction_type="flow")


def test_backbone_reads_v_prediction_from_the_scheduler(tiny_assets, tmp_path):
    v = StableDiffusion(with_prediction_type(tiny_assets, tmp_path, "v_prediction"))
    eps = backbone(tiny_assets)
    assert v.eps_model.prediction_type == "v_prediction"
    assert eps.eps_model.prediction_type == "epsilon"
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    cond = eps.condition(["a red circle"], None, 1.0)
    with torch.no_grad():
        raw = eps.eps_model.eps(x, 500, cond)  # the same UNet read as ε
        ab = float(v.scheduler.alphas_cumprod[500])
        expected = ab**0.5 * raw + (1 - ab) ** 0.5 * x
        torch.testing.assert_close(v.eps_model.eps(x, 500, cond), expected)
