"""Recipe: the Shapes-64 VAE (diffusers ``AutoencoderKL``)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ..quality import psnr
from .base import Recipe, to01

__all__ = ["VaeRecipe"]


class VaeRecipe(Recipe):
    """``AutoencoderKL`` 64×64×3 → 16×16×4; scaling factor = 1 / std of the latents.

    Args:
        block_out_channels: channels per resolution (3 levels: downsampling factor 4).
        kl_weight: weight of the KL term (small, as in SD's VAE).
        lr, export_dir: optimiser and output.
    """

    def __init__(
        self,
        block_out_channels: tuple[int, ...] = (32, 32, 64),
        layers_per_block: int = 1,
        kl_weight: float = 1e-6,
        lr: float = 1e-3,
        export_dir: str = "pkg:shapes64/sd/vae",
    ) -> None:
        super().__init__(lr, export_dir)
        from diffusers import AutoencoderKL

        n = len(block_out_channels)
        self.vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * n,
            up_block_types=("UpDecoderBlock2D",) * n,
            block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block,
            norm_num_groups=16,
            sample_size=64,
        )
        self.kl_weight = kl_weight

    def training_step(self, batch, _):
        x = to01(batch[0]) * 2 - 1
        post = self.vae.encode(x).latent_dist
        rec = self.vae.decode(post.sample()).sample
        mse = F.mse_loss(rec, x)
        loss = mse + 0.1 * F.l1_loss(rec, x) + self.kl_weight * post.kl().mean()
        self.log("train/mse", mse, prog_bar=True)
        return loss

    @torch.no_grad()
    def validation_step(self, batch, _):
        x = to01(batch[0])
        rec = (self.vae.decode(self.vae.encode(x * 2 - 1).latent_dist.mean).sample / 2 + 0.5).clamp(
            0, 1
        )
        self.log("val/psnr", psnr(rec, x).mean(), prog_bar=True)

    @torch.no_grad()
    def export(self) -> None:
        images = self.trainer.datamodule.images[:2048]
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
        z = torch.cat(
            [self.vae.encode(x[i : i + 256]).latent_dist.mean for i in range(0, len(x), 256)]
        )
        self.vae.register_to_config(scaling_factor=float(1.0 / z.std()))
        vae = copy.deepcopy(self.vae).to(torch.float16)
        vae.save_pretrained(self.export_dir, safe_serialization=True)
