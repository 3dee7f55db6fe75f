"""BDIA-DDIM: the step against the paper's update, exact inversion, the fused gradient."""

import pytest
import torch
from helpers import backbone, cond, fit, items, latents, make_schedule

from doodl_pl.engines import AutogradEngine, CheckpointEngine, ReversibleEngine
from doodl_pl.losses import ColorLoss
from doodl_pl.modules import BestOfNModule, DoodlModule, VanillaModule
from doodl_pl.sampling import BdiaChain, DdimChain, check_gamma
from doodl_pl.sampling.schedule import official_edict_scheduler
from doodl_pl.utils import SavedTensorMeter


def rel(a, b):
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def loss_fn(z0):
    w = torch.linspace(-1, 1, z0.numel(), dtype=z0.dtype).view_as(z0)
    return (torch.sin(3 * z0) * w).sum() + (z0**2).mean()


def grads(engine, chain, x, y):
    x = x.clone().requires_grad_(True)
    y = y.clone().requires_grad_(True)
    (z0,) = chain.outputs(engine(chain, (x, y)))
    loss_fn(z0).backward()
    return torch.cat([x.grad.flatten(), y.grad.flatten()]).double()


def _delta(acp, z, e, t_from, t_to):
    """Δ(t_from → t_to | z): one DDIM move written with x̂_0, as the paper writes it."""
    a_from, a_to = float(acp[t_from]), float(acp[t_to])
    x0_hat = (z - (1 - a_from) ** 0.5 * e) / a_from**0.5
    return a_to**0.5 * x0_hat + (1 - a_to) ** 0.5 * e - z


@pytest.mark.parametrize("gamma", [1.0, 0.7])
def test_steps_match_the_papers_update(unet64, gamma):
    """z_{i-1} = γ z_{i+1} + (1−γ) z_i − γ Δ(t_i→t_{i+1}|z_i) + Δ(t_i→t_{i-1}|z_i), from ᾱ alone;
    the first step is plain DDIM (``DdimChain``) for a tied pair."""
    schedule = make_schedule(6)
    c = cond(1)
    chain = BdiaChain(unet64, schedule, c, gamma=gamma)
    acp = official_edict_scheduler().alphas_cumprod.double()
    final = float(schedule.alpha_bar_prev[-1])
    x = latents(1, 3)
    states = [chain.prepare((x, x))]
    for k in range(len(chain)):
        states.append(chain.step(k, states[-1]))
    ddim1 = DdimChain(unet64, make_schedule(6), c).step(0, (x,))[0]
    assert rel(states[1][1], ddim1) < 1e-13
    ts = schedule.timesteps.tolist()
    for k in range(1, len(chain)):
        prev, cur = states[k]
        e = unet64.eps(cur, ts[k], c)
        if k + 1 < len(ts):
            forward = _delta(acp, cur, e, ts[k], ts[k + 1])
        else:  # the last step lands on the scheduler's final ᾱ
            a_t = float(acp[ts[k]])
            x0_hat = (cur - (1 - a_t) ** 0.5 * e) / a_t**0.5
            forward = final**0.5 * x0_hat + (1 - final) ** 0.5 * e - cur
        backward = _delta(acp, cur, e, ts[k], ts[k - 1])
        expected = gamma * prev + (1 - gamma) * cur - gamma * backward + forward
        assert torch.equal(states[k + 1][0], cur)
        assert rel(states[k + 1][1], expected) < 1e-12


@pytest.mark.parametrize(
    "steps,strength", [(1, 1.0), (2, 1.0), (7, 1.0), (50, 1.0), (10, 0.5), (9, 0.35)]
)
def test_round_trip_float64(unet64, steps, strength):
    chain = BdiaChain(unet64, make_schedule(steps, strength), cond(2))
    x, y = latents(2, 0), latents(2, 1)
    prev, z0 = chain.sample(x, y)
    assert rel(torch.cat([prev, z0]), torch.cat([x, y])) > 1e-3  # the chain really moved
    xr, yr = chain.invert(prev, z0)
    assert rel(xr, x) < 1e-10 and rel(yr, y) < 1e-10


def test_gamma_below_one_amplifies_inversion_error(unet64):
    """Each inverted step divides by γ: at T = 50 γ = 0.5 loses the round trip, γ = 1 keeps it."""
    x = latents(1, 0)
    drift = {}
    for gamma in (1.0, 0.5):
        chain = BdiaChain(unet64, make_schedule(50), cond(1), gamma=gamma)
        xr, _ = chain.invert(*chain.sample(x))
        drift[gamma] = rel(xr, x)
    assert drift[1.0] < 1e-10 and drift[0.5] > 1e-6


def test_invert_a_clean_latent_reproduces_it(unet64):
    chain = BdiaChain(unet64, make_schedule(8), cond(1))
    z0 = latents(1, 5) * 0.5
    x, y = chain.invert(z0)
    assert not torch.equal(x, y)
    assert rel(chain.outputs(chain.sample(x, y))[0], z0) < 1e-10


@pytest.mark.parametrize(
    "engine,steps,strength",
    [(ReversibleEngine(), 12, 1.0), (ReversibleEngine(), 7, 1.0), (ReversibleEngine(), 10, 0.5),
     (CheckpointEngine(), 7, 1.0)],
    ids=["reversible-12", "reversible-7", "reversible-10-half", "checkpoint-7"],
)  # fmt: skip
def test_gradient_float64_vs_autograd(unet64, engine, steps, strength):
    chain = BdiaChain(unet64, make_schedule(steps, strength), cond(2))
    x, y = latents(2, 0), latents(2, 1)
    ref = grads(AutogradEngine(), chain, x, y)
    assert rel(grads(engine, chain, x, y), ref) <= 1e-8
    if isinstance(engine, ReversibleEngine):
        assert engine.last_drift < 1e-10


def test_gradient_float32_cosine(unet32):
    chain = BdiaChain(unet32, make_schedule(12), cond(2, torch.float32), state_dtype=torch.float32)
    x, y = latents(2, 0, torch.float32), latents(2, 1, torch.float32)
    ref = grads(AutogradEngine(), chain, x, y)
    got = grads(ReversibleEngine(), chain, x, y)
    assert torch.nn.functional.cosine_similarity(got, ref, dim=0) >= 0.9999


def test_finite_differences(unet64):
    chain = BdiaChain(unet64, make_schedule(6), cond(1), gamma=0.9)
    x, y = latents(1, 0), latents(1, 1)
    g = grads(ReversibleEngine(), chain, x, y)
    gen = torch.Generator().manual_seed(3)
    h = 1e-5
    for _ in range(2):
        vx = torch.randn(x.shape, generator=gen, dtype=torch.float64)
        vy = torch.randn(y.shape, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            plus = loss_fn(chain.sample(x + h * vx, y + h * vy)[1])
            minus = loss_fn(chain.sample(x - h * vx, y - h * vy)[1])
        fd = float(plus - minus) / (2 * h)
        analytic = float(g @ torch.cat([vx.flatten(), vy.flatten()]))
        assert analytic == pytest.approx(fd, rel=1e-5, abs=1e-8)


def _peak(engine, unet, steps):
    chain = BdiaChain(unet, make_schedule(steps), cond(1, torch.float32))
    x = latents(1, 0, torch.float32).requires_grad_(True)
    with SavedTensorMeter() as meter:
        (z0,) = chain.outputs(engine(chain, (x, x)))
        loss_fn(z0).backward()
    return meter.peak


def test_memory_flat_in_T(unet32):
    rev10, rev50 = _peak(ReversibleEngine(), unet32, 10), _peak(ReversibleEngine(), unet32, 50)
    ag10, ag50 = _peak(AutogradEngine(), unet32, 10), _peak(AutogradEngine(), unet32, 50)
    assert 0 < rev10 and rev50 <= 1.05 * rev10
    assert ag50 >= 3 * ag10 and rev50 < ag50 / 10


def test_one_model_call_per_step(unet64):
    from doodl_pl.models.counting import CountingEps

    counted = CountingEps(unet64)
    chain = BdiaChain(counted, make_schedule(5), cond(1))
    x = latents(1).requires_grad_(True)
    (z0,) = chain.outputs(ReversibleEngine()(chain, (x, x)))
    loss_fn(z0).backward()
    assert (counted.calls, counted.vjps) == (10, 5)  # T forwards + (T forwards, T VJPs)


def test_check_gamma():
    assert check_gamma(1.0) == 1.0
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"`gamma` must be in \(0, 1\]"):
            check_gamma(bad)


# -- in the modules -------------------------------------------------------------------------------
def _doodl(assets, out, **kw):
    kw = {"loss": ColorLoss((1.0, 0.0, 0.0)), "num_inference_steps": 4, "opt_steps": 3, **kw}
    return DoodlModule(
        backbone(assets), sampler="bdia", guidance_scale=3.0, output_dir=str(out), **kw
    )


def test_doodl_bdia_costs_half_and_engines_agree(tiny_assets, tmp_path):
    T, m = 4, 3
    rows = fit(_doodl(tiny_assets, tmp_path / "r"), items(2), batch_size=2)
    ref = fit(_doodl(tiny_assets, tmp_path / "a", engine=AutogradEngine()), items(2))
    for k, r in rows.items():
        assert r["unet_calls"] == (3 * m + 1) * T
        assert r["max_drift"] < 1e-12  # float64 state: round-off
        assert r["losses"] == pytest.approx(ref[k]["losses"], rel=1e-5)
    best = fit(
        BestOfNModule(
            backbone(tiny_assets), loss=ColorLoss((1.0, 0.0, 0.0)), sampler="bdia",
            num_inference_steps=T, guidance_scale=3.0, match_opt_steps=m,
            output_dir=str(tmp_path / "b"),
        ),
        items(1),
    )  # fmt: skip
    assert best["it0"]["unet_calls"] == (3 * m + 1) * T


def test_vanilla_bdia_first_step_is_ddim_and_edit_round_trips(tiny_assets, tmp_path):
    """Vanilla BDIA's first step is DDIM's (equal to round-off with one step), later steps use
    the older latent (differs at 5 steps); an edit item's BDIA inversion regenerates its VAE
    latent (float64)."""
    from doodl_pl.data import load_image

    def pair(steps):
        kw = dict(num_inference_steps=steps, guidance_scale=3.0, output_dir=str(tmp_path))
        bdia = VanillaModule(backbone(tiny_assets, "float64"), sampler="bdia", **kw)
        ddim = VanillaModule(backbone(tiny_assets, "float64"), sampler="ddim", **kw)
        x = bdia.noise(it[0]["seed"])[None].double()
        return (
            bdia,
            bdia.generate(x, x, bdia.condition(it)),
            ddim.generate(x, x, ddim.condition(it)),
        )

    it = items(1)
    _, zb1, zd1 = pair(1)
    assert rel(zb1, zd1) < 1e-13  # the first step is plain DDIM
    bdia, zb, zd = pair(5)
    assert 1e-6 < rel(zb, zd)
    edit = [{"id": "e", "prompt": "", "seed": 0, "image": tiny_assets["image"]}]
    xe, ye, is_edit = bdia.initial_latents(edit)
    assert bool(is_edit[0])
    z0 = bdia.backbone.encode(load_image(tiny_assets["image"], 16)[None])
    chain = bdia.chain(bdia.condition(edit, bdia.inversion_guidance_scale, [""]))
    assert rel(chain.outputs(chain.sample(xe, ye))[0], z0) < 1e-10


def test_sampler_validation(tiny_assets, tmp_path):
    sd = backbone(tiny_assets)
    with pytest.raises(ValueError, match="`sampler` must be one of 'edict', 'bdia'"):
        DoodlModule(sd, loss=ColorLoss(), sampler="ddim")
    with pytest.raises(ValueError, match=r"`gamma` must be in \(0, 1\]"):
        DoodlModule(sd, loss=ColorLoss(), sampler="bdia", gamma=0)


def test_engine_bench_rows(unet32):
    """The benchmark's row format (kept from before BDIA, plus ``sampler``), with both chains."""
    from doodl_pl.engines.bench import BenchSetup, bench_engines, format_table, round_trip_drift

    setup = BenchSetup(unet32, cond(1, torch.float32), latents(1, 0, torch.float32))
    rows = bench_engines(setup, steps=[3], repeat=1, engines=["reversible", "autograd"])
    assert [(r["sampler"], r["engine"]) for r in rows] == [
        ("edict", "reversible"), ("edict", "autograd"), ("bdia", "reversible"), ("bdia", "autograd")
    ]  # fmt: skip
    keys = {"engine", "T", "step_s", "generate_s", "ratio", "peak_mem_mb", "grad_cos_vs_autograd"}
    for r in rows:
        assert keys <= set(r) and r["T"] == 3 and r["step_s"] > 0
        assert r["grad_cos_vs_autograd"] > 0.9999
    assert "bdia    reversible" in format_table(rows)
    chain = BdiaChain(unet32, make_schedule(5), cond(1, torch.float32), state_dtype=torch.float64)
    assert round_trip_drift(chain, latents(1, 0, torch.float32)) < 1e-10


def test_compile_unet_reaches_the_adapter(tiny_assets):
    from doodl_pl.backbones import StableDiffusion

    sd = StableDiffusion(tiny_assets["sd"], compile_unet=True)
    assert sd.eps_model._forward is not sd.unet
    plain = StableDiffusion(tiny_assets["sd"])
    assert plain.eps_model._forward is plain.unet


def test_compiled_adapter_keeps_one_copy_of_the_weights():
    from doodl_pl.models import LatentUNetEps
    from doodl_pl.testing import tiny_unet

    unet = tiny_unet()
    plain, compiled = LatentUNetEps(unet).state_dict(), LatentUNetEps(unet, compile=True)
    assert list(compiled.state_dict()) == list(plain) and compiled._forward is not unet


def test_drift_past_the_tolerance_fails_the_item_and_names_the_settings(tiny_assets, tmp_path):
    """BDIA with γ = 0.5 in float32 state at T = 20 rebuilds x_T far from where it started: the
    gradient belongs to another trajectory, so the item fails with the settings named and the
    checkpoint engine suggested; the checkpoint engine runs the same settings; γ = 1 in float64
    drifts at round-off."""
    its = [{"id": "far", "prompt": "a blue star", "seed": 31337}]
    bad = dict(gamma=0.5, state_dtype="float32", num_inference_steps=20, opt_steps=1)
    rows = fit(_doodl(tiny_assets, tmp_path / "rev", **bad), its)
    r = rows["far"]
    assert r["status"] == "failed" and r["max_drift"] > 1e-3
    for needle in ("`drift_tolerance`", "`gamma` 0.5", "`state_dtype` 'float32'",
                   "`num_inference_steps` 20", "CheckpointEngine"):  # fmt: skip
        assert needle in r["reason"], (needle, r["reason"])
    ok = fit(_doodl(tiny_assets, tmp_path / "ckpt", engine=CheckpointEngine(), **bad), its)
    assert ok["far"]["status"] == "ok"
    exact = fit(_doodl(tiny_assets, tmp_path / "exact", opt_steps=1), its)
    assert exact["far"]["status"] == "ok" and exact["far"]["max_drift"] < 1e-12
    loose = ReversibleEngine(drift_tolerance=None)
    assert (
        fit(_doodl(tiny_assets, tmp_path / "loose", engine=loose, **bad), its)["far"]["status"]
        == "ok"
    )
    with pytest.raises(ValueError, match="`drift_tolerance` must be > 0"):
        ReversibleEngine(drift_tolerance=0.0)
