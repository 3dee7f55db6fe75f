"""What a guide sees in training besides clean renders: the VAE round trip and perturbations.

Both the robust guide classifier and the robust CLIP (issue 25 #2) are trained on renders as
the generator's decoder draws them, so that a search cannot raise their score through details
the decoder never produces.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["RoundTrip", "perturb"]


def perturb(x: Tensor, noise: float) -> Tensor:
    """Random blur (half the images), shifts of up to 2 px and Gaussian noise of standard
    deviation up to ``noise``, per image; ``x`` in [0, 1], shape (B, 3, H, W)."""
    from torchvision.transforms.functional import gaussian_blur

    out = []
    for im in x:
        if torch.rand(()) < 0.5:
            im = gaussian_blur(im, 5, float(torch.empty(()).uniform_(0.3, 1.0)))
        dy, dx = torch.randint(-2, 3, (2,)).tolist()
        im = torch.roll(im, (dy, dx), dims=(1, 2))
        im = im + torch.randn_like(im) * float(torch.empty(()).uniform_(0, noise))
        out.append(im.clamp(0, 1))
    return torch.stack(out)


class RoundTrip(nn.Module):
    """The VAE round trip (encode to the latent mean, decode) of a share of a batch.

    Args:
        share: the share of each batch passed through the VAE, in [0, 1] (the first rows).
        vae_dir: the diffusers ``AutoencoderKL`` folder (a path, hub id or ``pkg:`` path).
    """

    def __init__(self, share: float, vae_dir: str = "pkg:shapes64/sd/vae") -> None:
        super().__init__()
        if not 0 <= share <= 1:
            raise ValueError(f"`roundtrip` must be in [0, 1], got {share}")
        self.share = share
        self.vae = None
        if share > 0:
            from diffusers import AutoencoderKL

            from ...hub import resolve

            self.vae = AutoencoderKL.from_pretrained(resolve(vae_dir)).requires_grad_(False)
            self.vae.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.vae is not None:
            self.vae.eval()
        return self

    def rows(self, batch: int) -> int:
        """How many of a batch's first rows go through the VAE."""
        return 0 if self.vae is None else round(self.share * batch)

    @torch.no_grad()
    def decode(self, x: Tensor) -> Tensor:
        """Every image of ``x`` (in [0, 1]) through the VAE."""
        if self.vae is None or len(x) == 0:
            return x
        z = self.vae.encode(x * 2 - 1).latent_dist.mean
        return ((self.vae.decode(z).sample + 1) / 2).clamp(0, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` with its first :meth:`rows` images replaced by their round trip."""
        k = self.rows(x.shape[0])
        if k == 0:
            return x
        return torch.cat([self.decode(x[:k]), x[k:]])
