"""Time one training step (fwd + bwd + AdamW) of the Shapes-64 text-to-image UNet on this machine.

Prints seconds per step and milliseconds per sample for each batch size and memory format, which
is how ``configs/shapes64/train_t2i.yaml`` picked its batch size. Random inputs; the UNet is built
from the recipe's settings.

    .venv/bin/python scripts/profile_t2i.py                      # batch 16 32 64 128
    .venv/bin/python scripts/profile_t2i.py --batch 64 --steps 10
"""

from __future__ import annotations

import argparse
import time

import torch
import yaml
from diffusers import UNet2DConditionModel

from doodl_pl.shapes64.recipes import TextToImageRecipe


def build(args: dict) -> UNet2DConditionModel:
    """The recipe's own UNet, so the profile follows any change to how the recipe builds it."""
    return TextToImageRecipe(**args).unet


def step_time(unet: UNet2DConditionModel, batch: int, steps: int, channels_last: bool) -> float:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    unet = unet.to(memory_format=fmt)
    opt = torch.optim.AdamW(unet.parameters(), 1e-3)
    x = torch.randn(batch, 4, 16, 16).contiguous(memory_format=fmt)
    cond = torch.randn(batch, 16, unet.config.cross_attention_dim)
    t = torch.randint(0, 1000, (batch,))
    for i in range(steps + 2):  # two warm-up steps
        if i == 2:
            start = time.perf_counter()
        loss = (unet(x, t, encoder_hidden_states=cond).sample - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", default="configs/shapes64/train_t2i.yaml")
    p.add_argument("--batch", type=int, nargs="*", default=[16, 32, 64, 128])
    p.add_argument("--steps", type=int, default=6)
    a = p.parse_args()
    with open(a.config) as f:
        args = yaml.safe_load(f)["model"]["init_args"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, UNet from {a.config}")
    print("batch  memory format    s/step  ms/sample")
    for batch in a.batch:
        for cl in (False, True):
            torch.manual_seed(0)
            dt = step_time(build(args), batch, a.steps, cl)
            name = "channels_last" if cl else "contiguous"
            print(f"{batch:5d}  {name:14s}  {dt:6.3f}  {dt / batch * 1000:9.2f}", flush=True)


if __name__ == "__main__":
    main()
