"""Recipe: the Shapes-64 VAE (diffusers ``AutoencoderKL``)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ...hub import resolve
from ..quality import psnr
from .base import Recipe, to01

__all__ = ["VaeRecipe", "edges"]


class VaeRecipe(Recipe):
    """``AutoencoderKL`` 64×64×3 → 16×16×4; scaling factor = 1 / std of the latents.

    Args:
        block_out_channels: channels per resolution (3 levels: downsampling factor 4).
        kl_weight: weight of the KL term (small, as in SD's VAE).
        lr, export_dir: optimiser and output.
        init_from: start from this exported VAE (a diffusers directory or package alias); its
            config replaces ``block_out_channels`` and ``layers_per_block``.
        train_encoder: ``False`` fine-tunes the decoder alone (issue 28 #1): the latent space,
            its scaling factor and every model trained on it stay valid, as SD's ft-MSE decoder.
        edge_weight: extra weight of the pixels within 2 px of a colour edge (outlines, corners:
            what the judge reads and a plain MSE spends least on); 0 weights all pixels alike.
    """

    def __init__(
        self,
        block_out_channels: tuple[int, ...] = (32, 32, 64),
        layers_per_block: int = 1,
        kl_weight: float = 1e-6,
        lr: float = 1e-3,
        export_dir: str = "pkg:shapes64/sd/vae",
        init_from: str | None = None,
        train_encoder: bool = True,
        edge_weight: float = 0.0,
        warmup: int = 200,
    ) -> None:
        super().__init__(lr, export_dir, warmup)
        from diffusers import AutoencoderKL

        if edge_weight < 0:
            raise ValueError(f"edge_weight must be >= 0, got {edge_weight}")
        if not train_encoder and init_from is None:
            raise ValueError(
                "train_encoder=False needs init_from (a trained VAE to keep the encoder of)"
            )
        self.train_encoder, self.edge_weight = train_encoder, edge_weight
        self.kl_weight = kl_weight
        if init_from is not None:
            self.vae = AutoencoderKL.from_pretrained(
                resolve(init_from), torch_dtype=torch.float32, use_safetensors=True
            ).train()
            if not train_encoder:
                for module in (self.vae.encoder, self.vae.quant_conv):
                    module.requires_grad_(False)
            return
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

    def training_step(self, batch, _):
        x = to01(batch[0]) * 2 - 1
        if self.train_encoder:
            post = self.vae.encode(x).latent_dist
        else:
            with torch.no_grad():
                post = self.vae.encode(x).latent_dist
        rec = self.vae.decode(post.sample()).sample
        w = 1.0 + self.edge_weight * edges(x) if self.edge_weight else torch.ones_like(x[:, :1])
        err = (rec - x).pow(2) + 0.1 * (rec - x).abs()
        loss = (w * err).sum() / (w.sum() * x.shape[1])
        if self.train_encoder:
            loss = loss + self.kl_weight * post.kl().mean()
        self.log("train/mse", F.mse_loss(rec, x), prog_bar=True)
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
        if not self.train_encoder:  # same encoder, same latents: keep the scaling factor
            copy.deepcopy(self.vae).to(torch.float16).save_pretrained(
                self.export_dir, safe_serialization=True
            )
            return
        images = self.trainer.datamodule.images[:2048]
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
        z = torch.cat(
            [self.vae.encode(x[i : i + 256]).latent_dist.mean for i in range(0, len(x), 256)]
        )
        self.vae.register_to_config(scaling_factor=float(1.0 / z.std()))
        vae = copy.deepcopy(self.vae).to(torch.float16)
        vae.save_pretrained(self.export_dir, safe_serialization=True)


def edges(x: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """``(N, 1, H, W)``: 1 where a colour changes within ``radius`` px (any channel's local range
    over a (2r+1)² window above 0.2 of the [-1, 1] range), else 0."""
    k = 2 * radius + 1
    hi = F.max_pool2d(x, k, stride=1, padding=radius)
    lo = -F.max_pool2d(-x, k, stride=1, padding=radius)
    return ((hi - lo).amax(1, keepdim=True) > 0.2).float()
