"""The staged backward gives autograd's gradient and frees each part's graph before the next."""

from __future__ import annotations

import torch

from doodl_pl.engines.staged import staged
from doodl_pl.utils.memory import SavedTensorMeter


def _loss(net: torch.nn.Module):
    def fn(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.tanh(net(z.float()))
        return (images**2).flatten(1).mean(1) + images.flatten(1)[:, 0], images

    return fn


def test_staged_gradient_equals_autograd_with_upstream_weights():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.SiLU(),
                              torch.nn.Conv2d(8, 3, 3, padding=1))  # fmt: skip
    x = torch.randn(3, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    w = torch.tensor([0.5, 0.0, -2.0])

    def outs():  # two final latents of one chain, as EDICT's
        return (x * 1.3, torch.sin(x))

    ref = sum(_loss(net)(o)[0] for o in outs())
    (g_ref,) = torch.autograd.grad((w * ref).sum(), x)
    values = [staged(o, _loss(net)) for o in outs()]
    total = sum(v for v, _ in values)
    (g,) = torch.autograd.grad((w * total).sum(), x)

    assert torch.allclose(total.detach(), ref.detach(), rtol=1e-6)
    assert torch.allclose(g, g_ref, rtol=1e-5, atol=1e-8)
    assert g[1].abs().max() == 0 and g[0].abs().max() > 0  # row 1's weight is 0: no leakage
    assert not values[0][1].requires_grad


def test_staged_parts_hold_one_graph_at_a_time():
    net = torch.nn.Sequential(torch.nn.Conv2d(4, 16, 3, padding=1), torch.nn.SiLU(),
                              torch.nn.Conv2d(16, 3, 3, padding=1))  # fmt: skip
    x = torch.randn(2, 4, 16, 16, requires_grad=True)
    ignore = list(net.parameters())
    plain, stage = SavedTensorMeter(ignore=ignore), SavedTensorMeter(ignore=ignore)
    with plain:
        kept = [_loss(net)(x * k) for k in (2, 3)]  # both graphs alive until the backward
    with stage:
        parts = [staged(x * k, _loss(net)) for k in (2, 3)]
    assert stage.current < plain.current / 2  # what stays: the latents' gradients
    assert stage.peak < plain.peak  # the second part's graph is built after the first is freed
    del kept, parts


def test_without_grad_staged_is_the_plain_loss():
    net = torch.nn.Conv2d(4, 3, 3, padding=1)
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        v, im = staged(x, _loss(net))
        v2, im2 = _loss(net)(x)
    assert torch.equal(v, v2) and torch.equal(im, im2)
