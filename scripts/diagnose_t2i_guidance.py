#!/usr/bin/env python
"""Where classifier-free guidance breaks the Shapes-64 text-to-image model's shapes.

Renders one-object scenes of each shape, noises their latents part way (SDEdit: DDIM from
t ≈ strength · 1000 with 50 steps over the full chain), denoises them with the scene's own
prompt ``a {color} {shape}`` at each CFG scale, and prints how often the evaluation classifier
still reads the shape. A real render noised to t = 500 already shows its shape (the model's own
implicit classifier reads it), so a shape lost from there is lost to the guidance, not to the
start of sampling.

    .venv/bin/python scripts/diagnose_t2i_guidance.py
    .venv/bin/python scripts/diagnose_t2i_guidance.py --sd path/to/pipeline --scales 1 7.5
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from doodl_pl.hub import resolve
from doodl_pl.shapes64 import SHAPES, quality
from doodl_pl.shapes64.analysis import find_objects
from doodl_pl.shapes64.assets import SD
from doodl_pl.shapes64.render import render_seed
from doodl_pl.shapes64.world import article


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sd", default=SD, help="text-to-image pipeline (default: shipped)")
    p.add_argument("--shapes", nargs="+", default=["square", "cross"])
    p.add_argument("--strengths", nargs="+", type=float, default=[0.3, 0.5, 0.7])
    p.add_argument("--scales", nargs="+", type=float, default=[3.0, 7.5])
    p.add_argument("--n", type=int, default=16, help="renders per shape")
    a = p.parse_args()
    from diffusers import DDIMScheduler, StableDiffusionImg2ImgPipeline
    from PIL import Image

    unknown = sorted(set(a.shapes) - set(SHAPES))
    if unknown:
        p.error(f"--shapes: unknown {unknown}; choose from {SHAPES}")
    checks = quality.judge()
    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(
        resolve(a.sd), safety_checker=None, torch_dtype=torch.float32
    )
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    scenes = {}
    for k, shape in enumerate(a.shapes):
        renders = [
            render_seed(9_100_000 + 1000 * k + i, n_objects=1, shape=shape) for i in range(a.n)
        ]
        prompts = []
        for _, scene in renders:
            color = scene.objects[0].color
            prompts.append(f"{article(color)} {color} {shape}")
        scenes[shape] = ([Image.fromarray(im) for im, _ in renders], prompts)
    print(f"shape kept (of {a.n}) after SDEdit from a real render, by strength and CFG scale")
    print("strength  scale  " + "  ".join(f"{s:>8}" for s in a.shapes) + "  (most read as)")
    for strength in a.strengths:
        for scale in a.scales:
            t0 = time.time()
            kept, worst = [], []
            for k, shape in enumerate(a.shapes):
                images, prompts = scenes[shape]
                out = pipe(
                    prompts,
                    image=images,
                    strength=strength,
                    num_inference_steps=50,
                    guidance_scale=scale,
                    output_type="np",
                    generator=torch.Generator().manual_seed(k),
                ).images
                reads = []
                for img in (out * 255).round().astype(np.uint8):
                    found = find_objects(img)
                    if not found:
                        reads.append("nothing")
                        continue
                    reads.append(checks.shape_of(img, found[0], found))
                kept.append(reads.count(shape))
                other = [r for r in reads if r != shape]
                worst.append(max(set(other), key=other.count) if other else "-")
            cells = "  ".join(f"{n:>8}" for n in kept)
            print(
                f"{strength:>8}  {scale:>5}  {cells}  ({', '.join(worst)}) [{time.time() - t0:.0f} s]"
            )


if __name__ == "__main__":
    main()
