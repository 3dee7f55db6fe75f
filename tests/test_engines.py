import pytest
import torch
from helpers import cond, latents, make_schedule

from doodl_pl.engines import AutogradEngine, CheckpointEngine, ReversibleEngine, make_engine
from doodl_pl.models import AnalyticEps
from doodl_pl.sampling import DdimChain, EdictChain
from doodl_pl.utils import SavedTensorMeter


def loss_fn(x0, y0):
    w = torch.linspace(-1, 1, x0.numel(), dtype=x0.dtype).view_as(x0)
    return (torch.sin(3 * x0) * w).sum() + (y0**2 * w.flip(0)).sum() + (x0 * y0).mean()


def grads(engine, chain, x, y):
    x = x.clone().requires_grad_(True)
    y = y.clone().requires_grad_(True)
    x0, y0 = engine(chain, (x, y))
    loss_fn(x0, y0).backward()
    return torch.cat([x.grad.flatten(), y.grad.flatten()]).double()


def rel(a, b):
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


@pytest.mark.parametrize("engine", [ReversibleEngine(), CheckpointEngine()], ids=lambda e: e.name)
def test_gradient_float64_vs_autograd(unet64, engine):
    chain = EdictChain(unet64, make_schedule(20), cond(2), mix=0.93)
    x, y = latents(2, 0), latents(2, 1)
    ref = grads(AutogradEngine(), chain, x, y)
    got = grads(engine, chain, x, y)
    assert rel(got, ref) <= 1e-8
    if isinstance(engine, ReversibleEngine):
        assert engine.last_drift is not None and engine.last_drift < 1e-10


@pytest.mark.parametrize("engine", [ReversibleEngine(), CheckpointEngine()], ids=lambda e: e.name)
def test_gradient_float32_cosine(unet32, engine):
    chain = EdictChain(unet32, make_schedule(20), cond(2, torch.float32), state_dtype=torch.float32)
    x, y = latents(2, 0, torch.float32), latents(2, 1, torch.float32)
    ref = grads(AutogradEngine(), chain, x, y)
    got = grads(engine, chain, x, y)
    assert torch.nn.functional.cosine_similarity(got, ref, dim=0) >= 0.9999


def test_float32_model_float64_state(unet32):
    """The default mix of dtypes: UNet in float32, state in float64; the drift is reported."""
    engine = ReversibleEngine()
    chain = EdictChain(unet32, make_schedule(10), cond(1, torch.float32))
    x = latents(1, 0, torch.float32)
    ref = grads(AutogradEngine(), chain, x, x)
    got = grads(engine, chain, x, x)
    assert torch.nn.functional.cosine_similarity(got, ref, dim=0) >= 0.9999
    assert 0 <= engine.last_drift < 1e-12, engine.last_drift  # float64 state: round-off


@pytest.mark.parametrize("steps,strength", [(7, 1.0), (10, 0.5)])
def test_reversible_partial_and_odd(unet64, steps, strength):
    chain = EdictChain(unet64, make_schedule(steps, strength), cond(1))
    x, y = latents(1, 0), latents(1, 1)
    ref = grads(AutogradEngine(), chain, x, y)
    assert rel(grads(ReversibleEngine(), chain, x, y), ref) <= 1e-8


def test_finite_differences(unet64):
    chain = EdictChain(unet64, make_schedule(8), cond(1))
    x, y = latents(1, 0), latents(1, 1)
    g = grads(ReversibleEngine(), chain, x, y)
    gen = torch.Generator().manual_seed(7)
    h = 1e-5
    for _ in range(3):
        vx = torch.randn(x.shape, generator=gen, dtype=torch.float64)
        vy = torch.randn(y.shape, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            plus = loss_fn(*chain.sample(x + h * vx, y + h * vy))
            minus = loss_fn(*chain.sample(x - h * vx, y - h * vy))
        fd = float(plus - minus) / (2 * h)
        analytic = float(g @ torch.cat([vx.flatten(), vy.flatten()]))
        assert analytic == pytest.approx(fd, rel=1e-5, abs=1e-8)


def test_weights_get_no_gradient(unet32):
    chain = EdictChain(unet32, make_schedule(3), cond(1, torch.float32))
    x = latents(1, 0, torch.float32)
    for engine in (ReversibleEngine(), CheckpointEngine(), AutogradEngine()):
        grads(engine, chain, x, x)
        assert all(p.grad is None for p in unet32.unet.parameters())


def test_checkpoint_serves_ddim():
    model = AnalyticEps(4, seed=1)
    chain = DdimChain(model, make_schedule(6))
    x = latents(1)

    def g(engine):
        xx = x.clone().requires_grad_(True)
        (x0,) = engine(chain, (xx,))
        (torch.sin(x0).sum()).backward()
        return xx.grad

    assert rel(g(CheckpointEngine()), g(AutogradEngine())) < 1e-12
    with pytest.raises(TypeError, match="invertible chain"):
        ReversibleEngine()(chain, (x,))


def test_make_engine():
    assert make_engine("reversible").name == "reversible"
    with pytest.raises(ValueError, match="`engine` must be one of"):
        make_engine("magic")


def _peak(engine, unet, steps):
    chain = EdictChain(unet, make_schedule(steps), cond(1, torch.float32))
    x = latents(1, 0, torch.float32).requires_grad_(True)
    with SavedTensorMeter() as meter:
        x0, y0 = engine(chain, (x, x))
        loss_fn(x0, y0).backward()
    return meter.peak


def test_memory_flat_in_T(unet32):
    rev10, rev50 = _peak(ReversibleEngine(), unet32, 10), _peak(ReversibleEngine(), unet32, 50)
    ag10, ag50 = _peak(AutogradEngine(), unet32, 10), _peak(AutogradEngine(), unet32, 50)
    assert rev10 > 0
    assert rev50 <= 1.05 * rev10
    assert ag50 >= 3 * ag10
    assert rev50 < ag50 / 10
