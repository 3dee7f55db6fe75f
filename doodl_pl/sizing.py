"""What one DOODL optimisation step holds in memory, and how many FLOPs it costs, at a real size.

Every part is built from its published architecture (:mod:`doodl_pl.real_size`) on the ``meta``
device and run forward and backward there: shapes only, so SDXL at 1024² is measured in seconds
on any machine. Per part it reports the peak of all live tensors
(:class:`~doodl_pl.utils.memory.LiveTensorMeter`: activations, saved tensors, gradients,
temporaries), the bytes saved for backward and the FLOPs (``torch.utils.flop_counter``).

A step's peak is composed the way the engines run (``engines/``):

1. forward: the chain with no graph, then decode + guide with their graphs (EDICT's two final
   latents are both decoded and scored, as DOODL does; BDIA's one);
2. backward through guide and decoder (their peak: ``decode_guide``);
3. backward through the chain: ``reversible`` holds one ε VJP at a time, ``checkpoint`` adds one
   stored state per step, ``autograd`` holds every call's saved graph while decode + guide run.

Weights, the float64 latent pair, its gradient and the optimizer's momentum come on top. Kernel
workspaces (cuDNN, flash) and allocator fragmentation are not tensors and are not counted:
``docs/benchmarks.md`` compares the estimate with a real process's peak.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from .backbones.levers import Attention, set_attention, set_checkpointing
from .quiet import quiet_loading
from .real_size import BACKBONES, build_guides
from .sampling.samplers import make_sampler
from .utils.memory import LiveTensorMeter, SavedTensorMeter

__all__ = [
    "FITS_ON_GB",
    "Setting",
    "format_flops",
    "format_table",
    "measure_step",
    "plot_measured",
]

FITS_ON_GB = (8, 12, 16, 24, 40, 80)
GB = 2**30


@dataclass(frozen=True)
class Setting:
    """One row of the memory table.

    Attributes:
        backbone: ``sd15`` (512²), ``sd21`` (768²) or ``sdxl`` (1024²).
        dtype: UNet and text-encoder dtype (SDXL's VAE stays float32: ``force_upcast``).
        engine: ``reversible``, ``checkpoint`` or ``autograd``.
        sampler: ``edict`` or ``bdia``; ``steps``: denoising steps T.
        batch: images per step; ``guidance_scale`` != 1 doubles the UNet batch (CFG).
        n_cuts: CLIP ViT-L/14 cuts per image; ``classifier``: add a timm ResNet-50 guide.
        image_size: the image side; ``None``: the one the backbone was trained at.
        attention, unet_checkpointing, vae_checkpointing, offload_text_encoders: the backbone's
            levers; ``guide_dtype``, ``guide_checkpointing``: the guides' levers;
            ``sequential_decode``: the module's (final latents decoded and scored one at a time).
    """

    backbone: Literal["sd15", "sd21", "sdxl"] = "sd15"
    dtype: str = "float16"
    engine: Literal["reversible", "checkpoint", "autograd"] = "reversible"
    sampler: Literal["edict", "bdia"] = "edict"
    steps: int = 50
    batch: int = 1
    guidance_scale: float = 7.5
    n_cuts: int = 16
    classifier: bool = False
    attention: Attention = "sdpa"
    unet_checkpointing: bool = False
    vae_checkpointing: bool = False
    guide_dtype: str = "float32"
    guide_checkpointing: bool = False
    offload_text_encoders: bool = False
    sequential_decode: bool = False
    image_size: int | None = None

    def levers(self) -> str:
        on = [
            "math-attn" if self.attention == "math" else "",
            "unet-ckpt" if self.unet_checkpointing else "",
            "vae-ckpt" if self.vae_checkpointing else "",
            f"guide-{self.guide_dtype}" if self.guide_dtype != "float32" else "",
            "guide-ckpt" if self.guide_checkpointing else "",
            "offload-text" if self.offload_text_encoders else "",
            "seq-decode" if self.sequential_decode else "",
        ]
        return "+".join(x for x in on if x) or "none"


def _bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


@contextlib.contextmanager
def _fused_attention() -> Iterator[None]:
    """On ``meta`` PyTorch picks the math kernel; route unmasked attention to a fused kernel's
    meta implementation, which saves what CUDA's flash/efficient kernels save (q, k, v, out and
    the log-sum-exp)."""
    original = F.scaled_dot_product_attention

    def fused(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kw):
        if attn_mask is not None or dropout_p or kw:
            return original(q, k, v, attn_mask, dropout_p, is_causal, scale=scale, **kw)
        op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
        return op(q, k, v, dropout_p, is_causal, scale=scale)[0]

    F.scaled_dot_product_attention = fused
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


def _run(
    fn: Callable[[], torch.Tensor], weights: list[torch.Tensor], fused: bool
) -> dict[str, float]:
    """Forward + backward of ``fn``'s scalar: live peak, saved peak (bytes; ``weights`` not
    counted), forward and backward FLOPs. Memory is measured with fused attention when
    ``fused``; FLOPs are counted in a second pass through the math kernel, whose matrix
    products the counter sees (the fused kernel does the same products), and apart because
    the counter's module hooks keep tensors alive that checkpointing would free."""
    live, saved = LiveTensorMeter(), SavedTensorMeter(ignore=weights)
    with _fused_attention() if fused else contextlib.nullcontext(), live, saved:
        fn().backward()
    fwd, bwd = FlopCounterMode(display=False), FlopCounterMode(display=False)
    with fwd:
        out = fn()
    with bwd:
        out.backward()
    return dict(
        live=live.peak, saved=saved.peak,
        fwd_flops=fwd.get_total_flops(), bwd_flops=bwd.get_total_flops(),
    )  # fmt: skip


def build_parts(s: Setting) -> dict[str, Any]:
    """The setting's parts on ``meta``, in their dtypes, levers applied (what both the estimate
    and :func:`doodl_pl.real_step.time_step` run)."""
    spec = BACKBONES[s.backbone]
    if s.image_size:
        spec = replace(spec, image_size=s.image_size)
    dtype = getattr(torch, s.dtype)
    vae_dtype = torch.float32 if spec.vae.get("force_upcast") else dtype
    with torch.device("meta"), quiet_loading():
        unet = spec.build_unet().to(dtype)
        vae = spec.build_vae().to(vae_dtype)
        texts = [
            t.to(torch.float32 if s.offload_text_encoders else dtype) for t in spec.build_text()
        ]
    with quiet_loading():
        guides = build_guides(clip=s.n_cuts > 0, classifier=s.classifier, device="meta")
    for g in guides.values():
        g.to(getattr(torch, s.guide_dtype))
        if s.guide_checkpointing:
            g.set_grad_checkpointing(True)
    for m in (unet, vae, *texts, *guides.values()):
        m.requires_grad_(False)
    for m in (unet, vae):
        set_attention(m, s.attention)
    set_checkpointing(unet, s.unet_checkpointing)
    set_checkpointing(vae, s.vae_checkpointing)
    return dict(spec=spec, unet=unet, vae=vae, texts=texts, guides=guides, dtype=dtype)


def measure_step(s: Setting) -> dict[str, Any]:
    """Memory (GiB) and FLOPs of one DOODL step under ``s``; see the module docstring."""
    p = build_parts(s)
    spec, unet, vae, guides, dtype = p["spec"], p["unet"], p["vae"], p["guides"], p["dtype"]
    sampler = make_sampler(s.sampler)
    meta = dict(device="meta")
    h = spec.latent_size
    n = s.batch * (2 if s.guidance_scale != 1 else 1)
    ctx_dim = spec.context_dim()

    def eps_vjp():
        x = torch.zeros(n, 4, h, h, dtype=dtype, requires_grad=True, **meta)
        extra = {}
        if spec.kind == "sdxl":
            extra["added_cond_kwargs"] = {
                "text_embeds": torch.zeros(n, 1280, dtype=dtype, **meta),
                "time_ids": torch.zeros(n, 6, dtype=dtype, **meta),
            }
        cond = torch.zeros(n, 77, ctx_dim, dtype=dtype, **meta)
        out = unet(x, torch.tensor(500, **meta), encoder_hidden_states=cond, **extra).sample
        return out.float().sum()

    # Scored one final latent at a time, a step holds one image's graphs, and runs them once per
    # final latent.
    parts = sampler.images if s.sequential_decode else 1

    def decode_guide():
        images = s.batch * sampler.images // parts
        z = torch.zeros(images, 4, h, h, dtype=vae.dtype, requires_grad=True, **meta)
        image = (vae.decode(z).sample.float() / 2 + 0.5).clamp(0, 1)
        loss = image.sum() if not guides else image.new_zeros(())
        if "clip" in guides:
            clip = guides["clip"]
            cuts = F.interpolate(image, size=224, mode="bilinear", antialias=True)
            cuts = cuts.repeat_interleave(s.n_cuts, 0).to(next(clip.parameters()).dtype)
            loss = loss + clip.encode_image(cuts).float().sum()
        if "classifier" in guides:
            net = guides["classifier"]
            x = F.interpolate(image, size=224, mode="bilinear", antialias=True)
            loss = loss + net(x.to(next(net.parameters()).dtype)).float().sum()
        return loss

    fused = s.attention == "sdpa"
    eps = _run(eps_vjp, list(unet.parameters()), fused)
    dg = _run(decode_guide, [t for m in (vae, *guides.values()) for t in m.parameters()], fused)
    calls = sampler.calls_per_step * s.steps
    state = 2 * s.batch * 4 * h * h * 8  # the float64 (x, y) pair
    small = 4 * state  # initial + final pair, gradient, momentum
    if s.engine == "reversible":
        graph = max(eps["live"], dg["live"])
    elif s.engine == "checkpoint":
        graph = max(eps["live"], dg["live"]) + s.steps * state
    else:
        graph = calls * eps["saved"] + dg["live"]
    weights = {
        "unet": _bytes(unet),
        "vae": _bytes(vae),
        "text": 0 if s.offload_text_encoders else sum(_bytes(t) for t in p["texts"]),
        "guides": sum(_bytes(g) for g in guides.values()),
    }
    total = sum(weights.values()) + graph + small
    # A step: the forward chain (calls), decode + guide and their backward, then each call's
    # rebuild (reversible) or recompute (checkpoint) and VJP.
    eps_fwd, eps_bwd = eps["fwd_flops"], eps["bwd_flops"]
    flops = {
        "chain_forward": calls * eps_fwd,
        "decode_guide": parts * (dg["fwd_flops"] + dg["bwd_flops"]),
        "chain_rebuild": calls * eps_fwd if s.engine != "autograd" else 0,
        "chain_vjp": calls * eps_bwd,
    }
    step_flops = sum(flops.values())
    row = asdict(s)
    row.update(
        levers=s.levers(),
        weights_gb=sum(weights.values()) / GB,
        **{f"weights_{k}_gb": v / GB for k, v in weights.items()},
        eps_vjp_gb=eps["live"] / GB,
        eps_saved_gb=eps["saved"] / GB,
        decode_guide_gb=dg["live"] / GB,
        graph_gb=graph / GB,
        total_gb=total / GB,
        unet_calls=calls,
        eps_fwd_tflop=eps_fwd / 1e12,
        **{f"{k}_tflop": v / 1e12 for k, v in flops.items()},
        step_tflop=step_flops / 1e12,
        fits_on=[gb for gb in FITS_ON_GB if total / GB <= gb],
    )
    return row


def format_table(rows: list[dict[str, Any]]) -> str:
    """Rows as a Markdown table with a ✓/✗ column per card size."""
    head = (
        "| backbone | dtype | sampler | engine | levers | weights | ε VJP | decode+guide | step peak | "
        + " | ".join(f"{g} GB" for g in FITS_ON_GB)
        + " | TFLOP/step |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        fits = " | ".join("✓" if g in r["fits_on"] else "✗" for g in FITS_ON_GB)
        lines.append(
            f"| {r['backbone']} {r['image_size'] or BACKBONES[r['backbone']].image_size}² | "
            f"{r['dtype']} | {r['sampler']} | {r['engine']} | {r['levers']} | {r['weights_gb']:.2f} | {r['eps_vjp_gb']:.2f} | "
            f"{r['decode_guide_gb']:.2f} | **{r['total_gb']:.2f}** | {fits} | "
            f"{r['step_tflop']:.0f} |"
        )
    return "\n".join(lines)


def format_flops(rows: list[dict[str, Any]], tflops: tuple[float, ...] = (100, 300)) -> str:
    """Per row, the step's TFLOP by part and the seconds it would take at ``tflops`` sustained
    (a GPU's dense 16-bit peak times the utilisation it reaches: an assumption, not a
    measurement)."""
    head = (
        "| backbone | sampler | levers | UNet calls | chain fwd | decode+guide | rebuild | VJP | "
        "TFLOP/step | " + " | ".join(f"s/step at {t:g} TFLOP/s" for t in tflops) + " |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        secs = " | ".join(f"{r['step_tflop'] / t:.1f}" for t in tflops)
        lines.append(
            f"| {r['backbone']} | {r['sampler']} | {r['levers']} | {r['unet_calls']} | "
            f"{r['chain_forward_tflop']:.0f} | {r['decode_guide_tflop']:.1f} | "
            f"{r['chain_rebuild_tflop']:.0f} | {r['chain_vjp_tflop']:.0f} | "
            f"**{r['step_tflop']:.0f}** | {secs} |"
        )
    return "\n".join(lines)


def plot_measured(rows: list[dict[str, Any]], path: str) -> None:
    """Each measured row's allocator peak beside its estimate, with the card sizes as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = list(BACKBONES)
    rows = sorted((r for r in rows if r.get("measured_peak_gb") is not None),
                  key=lambda r: (order.index(r["backbone"]), -r["total_gb"]))  # fmt: skip
    labels = [
        f"{r['backbone']} {r['image_size'] or BACKBONES[r['backbone']].image_size}² "
        f"{r['sampler']}, {r['levers'].replace('+', ' + ')}"
        for r in rows
    ]
    y = range(len(rows))
    fig, ax = plt.subplots(figsize=(11, 0.45 * len(rows) + 1.5))
    ax.barh([i + 0.2 for i in y], [r["total_gb"] for r in rows], 0.4, label="estimate (meta)")
    ax.barh([i - 0.2 for i in y], [r["measured_peak_gb"] for r in rows], 0.4,
            label="allocator peak (GPU)")  # fmt: skip
    for gb in FITS_ON_GB:
        ax.axvline(gb, color="grey", lw=0.8, ls=":")
        ax.text(gb + 0.4, -0.75, f"{gb} GB", fontsize=7, color="grey")
    ax.set_yticks(list(y), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("GiB for one DOODL step (float16, CFG, CLIP ViT-L/14 with 16 cuts)")
    ax.legend(loc="center right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
