"""One real DOODL step on random-weight components at a backbone's real size, timed, on a device.

What ``scripts/size_step.py --device cuda`` runs on a lent GPU: the same parts, dtypes and
levers as a :class:`~doodl_pl.sizing.Setting`, built directly on the device (no checkpoint on
disk), an EDICT (or BDIA) chain under the configured engine, the VAE decode and a CLIP ViT-L/14
guide with its cuts; it reports seconds per step and the allocator's peak next to the estimate.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch
from torch import Tensor

from .engines import make_engine
from .engines.bench import timed
from .engines.staged import staged
from .losses.clip_models import spherical_distance
from .losses.crops import multi_crop, resize_to
from .models.adapters import LatentUNetEps
from .models.condition import TextCondition
from .sampling.samplers import make_sampler
from .sampling.schedule import Schedule, official_edict_scheduler
from .sizing import Setting, build_parts

__all__ = ["time_step"]


def time_step(s: Setting, device: str = "cuda", repeat: int = 2) -> dict[str, Any]:
    """Median seconds of ``repeat`` DOODL steps (after one untimed) and the peak bytes the
    device allocated (CUDA only), for ``s``."""
    dev = torch.device(device)
    p = build_parts(s)
    spec, guides = p["spec"], p["guides"]
    parts = [p["unet"], p["vae"], *guides.values()]
    for m in parts:  # meta → device, random values (the numbers do not matter, their cost does)
        m.to_empty(device=dev)
        with torch.no_grad():
            for t in (*m.parameters(), *m.buffers()):
                if t.is_floating_point():
                    t.normal_(0, 0.02)
    unet, vae = p["unet"], p["vae"]
    g = torch.Generator(device=dev).manual_seed(0)
    n, h = s.batch, spec.latent_size
    dtype = p["dtype"]
    embeds = torch.randn(n, 77, spec.context_dim(), device=dev, dtype=dtype, generator=g)
    extra = {}
    if spec.kind == "sdxl":
        extra = dict(
            pooled=torch.randn(n, 1280, device=dev, dtype=dtype, generator=g),
            null_pooled=torch.zeros(n, 1280, device=dev, dtype=dtype),
            time_ids=torch.tensor([[spec.image_size] * 2 + [0, 0] + [spec.image_size] * 2],
                                  device=dev, dtype=dtype),
        )  # fmt: skip
    cond = TextCondition(embeds, torch.zeros_like(embeds[:1]), s.guidance_scale, **extra)
    eps = LatentUNetEps(unet)
    schedule = Schedule.from_scheduler(official_edict_scheduler(), s.steps)
    chain = make_sampler(s.sampler).chain(eps, schedule, cond, torch.float64)
    engine = make_engine(s.engine)
    clip, net = guides.get("clip"), guides.get("classifier")
    x_T = torch.randn(n, 4, h, h, device=dev, dtype=torch.float64, generator=g)

    def scored(final: Tensor) -> tuple[Tensor, Tensor]:
        """Per-image loss of decoded final latents (CLIP cuts, the classifier)."""
        z = final.to(vae.dtype) / spec.vae["scaling_factor"]
        image = (vae.decode(z).sample.float() / 2 + 0.5).clamp(0, 1)
        loss = image.flatten(1).mean(1)
        if clip is not None:
            cuts = torch.cat([multi_crop(im, s.n_cuts, 224, 0.3, None) for im in image])
            feats = clip.encode_image(cuts.to(next(clip.parameters()).dtype)).float()
            feats = torch.nn.functional.normalize(feats, dim=-1)
            dist = spherical_distance(feats, feats.detach().roll(1, 0))
            loss = loss + dist.view(len(image), -1).mean(1)
        if net is not None:
            x224 = resize_to(image, 224).to(next(net.parameters()).dtype)
            loss = loss + net(x224).float().logsumexp(-1)
        return loss, image

    def step() -> None:
        x = x_T.clone().requires_grad_(True)
        # every final latent of the chain is decoded and scored, as DOODL does (EDICT: two)
        outs = chain.outputs(engine(chain, (x, x.clone())))
        if s.sequential_decode:
            loss = sum(staged(out, scored)[0].sum() for out in outs)
        else:
            loss = scored(torch.cat(outs))[0].sum()
        loss.backward()

    timed(step, dev)  # untimed warm-up
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = [timed(step, dev)[0] for _ in range(repeat)]
    peak = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else None
    return dict(step_s=statistics.median(times), measured_peak_gb=peak)
