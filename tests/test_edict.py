import pytest
import torch
from diffusers import DDIMScheduler
from helpers import cond, latents, make_schedule

from doodl_pl.models import AnalyticEps
from doodl_pl.sampling import DdimChain, EdictChain, Schedule, official_edict_scheduler


def rel(a, b):
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def test_official_spacing():
    s = make_schedule(50)
    assert s.timesteps.tolist() == list(range(980, -1, -20))
    acp = official_edict_scheduler().alphas_cumprod.double()
    assert float(s.alpha_bar_prev[-1]) == pytest.approx(float(acp[0]), rel=1e-12)
    a, b = s.coefficients(49)  # t = 0 lands on ᾱ_0: the identity step
    assert a == pytest.approx(1.0) and b == pytest.approx(0.0, abs=1e-12)


def test_coefficients_match_diffusers_ddim_step():
    """a·x + b·ε equals diffusers' own DDIM (η = 0) update at every step: independent maths."""
    sched = DDIMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        set_alpha_to_one=False,
    )
    schedule = Schedule.from_scheduler(sched, 10)
    g = torch.Generator().manual_seed(1)
    for k, t in enumerate(schedule.timesteps):
        x = torch.randn(2, 4, 8, 8, generator=g, dtype=torch.float64)
        e = torch.randn(2, 4, 8, 8, generator=g, dtype=torch.float64)
        ref = sched.step(e, int(t), x, eta=0.0).prev_sample
        a, b = schedule.coefficients(k)
        assert rel(a * x + b * e, ref) < 1e-6


def test_partial_schedule_is_tail():
    full, part = make_schedule(10), make_schedule(10, strength=0.5)
    assert part.timesteps.tolist() == full.timesteps[5:].tolist()
    assert len(make_schedule(10, strength=0.75)) == 7


@pytest.mark.parametrize(
    "steps,strength", [(1, 1.0), (2, 1.0), (7, 1.0), (50, 1.0), (10, 0.5), (10, 0.6), (9, 0.35)]
)
def test_round_trip_float64_cfg(unet64, steps, strength):
    chain = EdictChain(unet64, make_schedule(steps, strength), cond(2), mix=0.93)
    x, y = latents(2, 0), latents(2, 1)
    x0, y0 = chain.sample(x, y)
    assert rel(x0, x) > 1e-3  # the chain really moved
    xr, yr = chain.invert(x0, y0)
    assert rel(xr, x) < 1e-10 and rel(yr, y) < 1e-10


def test_step_matches_paper_equations():
    """One step against Eq. 14 written out by hand, for both parities."""
    model = AnalyticEps(4, seed=3)
    schedule = make_schedule(4)
    chain = EdictChain(model, schedule, mix=0.8)
    x, y = latents(1, 0), latents(1, 1)
    for k in (0, 1):
        a, b = schedule.coefficients(k)
        t = schedule.timesteps[k]
        e = lambda z, t=t: model.eps(z, t, None)  # noqa: E731
        if k == 0:
            xi = a * x + b * e(y)
            yi = a * y + b * e(xi)
        else:
            yi = a * y + b * e(x)
            xi = a * x + b * e(yi)
        xn = 0.8 * xi + 0.2 * yi
        yn = 0.8 * yi + 0.2 * xn
        out = chain.step(k, (x, y))
        assert rel(out[0], xn) < 1e-14 and rel(out[1], yn) < 1e-14


def test_mix_validation():
    with pytest.raises(ValueError, match=r"`mix` must be in \(0, 1\], got 1.3"):
        EdictChain(AnalyticEps(), make_schedule(2), mix=1.3)
    with pytest.raises(ValueError, match="num_inference_steps"):
        make_schedule(0)


def test_ddim_chain_matches_diffusers_loop():
    model = AnalyticEps(4, seed=2)
    sched = official_edict_scheduler()
    schedule = Schedule.from_scheduler(sched, 6)
    x = latents(1)
    ours = DdimChain(model, schedule).sample(x)
    ref = x.clone()
    for t in sched.timesteps:
        ref = sched.step(model.eps(ref, t, None), int(t), ref, eta=0.0).prev_sample
    assert rel(ours, ref) < 1e-6
