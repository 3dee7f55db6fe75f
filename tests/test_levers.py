"""Memory levers leave the gradient unchanged; the memory meters and the real-size table agree
with independent counts."""

from __future__ import annotations

import pytest
import torch
from helpers import make_schedule

from doodl_pl.backbones import StableDiffusion, StableDiffusionXL
from doodl_pl.engines import ReversibleEngine
from doodl_pl.losses import CLIPTextLoss
from doodl_pl.losses.base import LossContext
from doodl_pl.losses.clip_models import ClipSpec
from doodl_pl.sampling.edict import EdictChain
from doodl_pl.utils.memory import LiveTensorMeter, SavedTensorMeter


def _doodl_gradient(backbone: StableDiffusion, seed: int = 3) -> torch.Tensor:
    """∂ loss(decode(EDICT chain(x_T))) / ∂x_T through the reversible engine (CFG, T = 3)."""
    cond = backbone.condition(["a red square", "two blue stars"], None, 5.0)
    chain = EdictChain(backbone.eps_model, make_schedule(3), cond, mix=0.93)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, *backbone.latent_shape(), generator=g, dtype=torch.float64)
    x.requires_grad_(True)
    final = chain.outputs(ReversibleEngine().run(chain, (x, x.clone())))[0]
    image = backbone.decode(final.float())
    weights = torch.randn(image.shape, generator=g)
    (image * weights).sum().backward()
    return x.grad.flatten()


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0))


@pytest.mark.parametrize(
    "lever",
    [
        {"attention": "math"},
        {"unet_checkpointing": True},
        {"vae_checkpointing": True},
        {"offload_text_encoders": True},
    ],
)
@pytest.mark.parametrize("kind", ["sd", "sdxl"])
def test_each_backbone_lever_leaves_the_doodl_gradient_unchanged(tiny_assets, kind, lever):
    cls = StableDiffusionXL if kind == "sdxl" else StableDiffusion
    off = _doodl_gradient(cls(tiny_assets[kind]))
    on_backbone = cls(tiny_assets[kind], **lever)
    on = _doodl_gradient(on_backbone)
    print(f"\n{kind} {lever}: gradient cosine to the lever off {_cos(on, off):.8f}")
    assert _cos(on, off) >= 0.9999
    assert torch.isfinite(on).all() and on.abs().sum() > 0
    if "offload_text_encoders" in lever:  # the encoders left the module tree: `.to()` skips them
        names = {n.split(".")[0] for n, _ in on_backbone.named_parameters()}
        assert not names & {"text_encoder", "text_encoder_2"}


def test_checkpointing_is_on_where_the_levers_say(tiny_assets):
    plain = StableDiffusion(tiny_assets["sd"])
    levers = StableDiffusion(tiny_assets["sd"], unet_checkpointing=True, vae_checkpointing=True)
    assert levers.unet.is_gradient_checkpointing and not plain.unet.is_gradient_checkpointing
    x = torch.randn(1, 4, 8, 8, requires_grad=True)
    saved = []
    for backbone in (plain, levers):
        with SavedTensorMeter(ignore=list(backbone.vae.parameters())) as meter:
            backbone.decode(x).sum().backward()
        saved.append(meter.peak)
    assert saved[1] < saved[0] / 2, saved  # the decoder's layers keep only their inputs


def test_half_precision_guide_keeps_the_gradient_direction(tiny_assets):
    def grad(dtype: str) -> torch.Tensor:
        spec = ClipSpec(tiny_assets["clip_cfg"], tiny_assets["clip_w"], dtype=dtype)
        loss = CLIPTextLoss([spec], n_cuts=4, min_cut=0.5)
        images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        images.requires_grad_(True)
        gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
        ctx = LossContext({"prompt": ["a red square", "two stars"]}, gens)
        loss(images, ctx).sum().backward()
        return images.grad.flatten()

    full, half = grad("float32"), grad("bfloat16")
    print(f"\nguide bfloat16: gradient cosine to float32 {_cos(full, half):.6f}")
    # Half precision is a lever with a cost: bfloat16 keeps 8 bits of mantissa.
    assert 0.99 <= _cos(full, half) < 1.0
    with pytest.raises(ValueError, match="dtype"):
        CLIPTextLoss([ClipSpec(tiny_assets["clip_cfg"], tiny_assets["clip_w"], dtype="int8")])


def test_live_meter_counts_the_same_on_meta_as_on_cpu():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 8))
    peaks = []
    for device in ("cpu", "meta"):
        model = net.to_empty(device=device) if device == "meta" else net
        x = torch.zeros(32, 64, device=device, requires_grad=True)
        with LiveTensorMeter() as meter:
            model(x).sum().backward()
        peaks.append(meter.peak)
    # CPU kernels may copy a transposed operand that meta's shape functions do not.
    assert peaks[1] == pytest.approx(peaks[0], rel=0.1)
    # by hand: the activations (two of 32·256 floats, one of 32·8) are alive together, and the
    # weight gradients (64·256 + 256 + 256·8 + 8) all exist at the end
    assert peaks[1] >= 4 * max(2 * 32 * 256 + 32 * 8, 64 * 256 + 256 + 256 * 8 + 8)


def test_real_size_table_orders_engines_and_levers():
    from doodl_pl.real_size import BACKBONES, PARAMETERS
    from doodl_pl.sizing import Setting, measure_step

    with torch.device("meta"):
        unet = BACKBONES["sd15"].build_unet()
    assert sum(p.numel() for p in unet.parameters()) / 1e6 == pytest.approx(
        PARAMETERS["sd15"]["unet"], abs=0.1
    )
    base = dict(backbone="sd15", n_cuts=0, steps=4)
    rev = measure_step(Setting(**base))
    auto = measure_step(Setting(**base, engine="autograd"))
    ckpt = measure_step(Setting(**base, unet_checkpointing=True, vae_checkpointing=True))
    assert rev["unet_calls"] == 8 and auto["graph_gb"] > rev["graph_gb"]
    assert ckpt["eps_vjp_gb"] < rev["eps_vjp_gb"] / 2
    assert ckpt["decode_guide_gb"] < rev["decode_guide_gb"]
    # EDICT's two final latents decoded one at a time: one image's graph, the same FLOPs
    seq = measure_step(Setting(**base, sequential_decode=True))
    assert seq["decode_guide_gb"] == pytest.approx(rev["decode_guide_gb"] / 2, rel=0.1)
    assert seq["step_tflop"] == pytest.approx(rev["step_tflop"], rel=1e-3)
    # weights: 16-bit UNet + VAE + text encoder, counted from the published parameter counts
    want = 2 * sum(PARAMETERS["sd15"].values()) * 1e6 / 2**30
    assert rev["weights_gb"] == pytest.approx(want, rel=0.01)


def test_guide_checkpointing_leaves_the_gradient_unchanged(tiny_assets):
    from doodl_pl.losses import ClassifierLoss

    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    gens = lambda: [torch.Generator().manual_seed(s) for s in (1, 2)]  # noqa: E731
    ctx = lambda: LossContext({"prompt": ["a red square", "two stars"], "class_index": [1, 3]},  # noqa: E731
                              gens())  # fmt: skip

    def grad(loss) -> torch.Tensor:
        x = images.clone().requires_grad_(True)
        loss(x, ctx()).sum().backward()
        return x.grad.flatten()

    for on in (False, True):
        spec = ClipSpec(tiny_assets["clip_cfg"], tiny_assets["clip_w"], checkpointing=on)
        clip = grad(CLIPTextLoss([spec], n_cuts=4, min_cut=0.5))
        net = grad(ClassifierLoss("resnet10t", tiny_assets["classifier"], num_classes=5,
                                  checkpointing=on))  # fmt: skip
        if not on:
            clip_off, net_off = clip, net
    print(f"\nguide checkpointing: cosine CLIP {_cos(clip, clip_off):.8f}, "
          f"classifier {_cos(net, net_off):.8f}")  # fmt: skip
    assert _cos(clip, clip_off) >= 0.9999 and _cos(net, net_off) >= 0.9999
    assert clip.abs().sum() > 0 and net.abs().sum() > 0


def test_the_gpu_step_script_runs_a_real_architecture_on_the_cpu():
    """`scripts/size_step.py --device cuda` times this on a lent GPU; here the SD 1.5
    architecture at a 64² image (8² latent) with 2 cuts, so the code path is checked first."""
    from doodl_pl.real_step import time_step
    from doodl_pl.sizing import Setting

    for seq in (False, True):
        s = Setting("sd15", "float32", steps=1, n_cuts=2, image_size=64, vae_checkpointing=True,
                    sequential_decode=seq)  # fmt: skip
        out = time_step(s, "cpu", repeat=1)
        assert out["step_s"] > 0 and out["measured_peak_gb"] is None
