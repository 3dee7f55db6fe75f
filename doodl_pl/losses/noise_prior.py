"""A soft prior on the initial noise: the negative log-likelihood of its norm under N(0, I).

DOODL's hard renormalisation puts every iterate back on the sphere of its initial norm. This
prior instead lets the norm move and charges for leaving the typical shell (ReNO, Eyring et
al. 2024, Eq. 6): for z ∈ R^d with z ~ N(0, I), r = ‖z‖ follows a χ distribution with d
degrees of freedom, so

    −log p(r) = r²/2 − (d − 1)·log r + const,

smallest at r = √(d − 1). The term below is that NLL minus its minimum (0 on the typical shell,
≈ (d − 1)·δ² at a relative norm error δ) and its gradient is z·(1 − (d − 1)/r²).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["chi_norm_nll"]


def chi_norm_nll(z: Tensor) -> Tensor:
    """``(B, ...)`` noise → ``(B,)``: −log χ_d(‖z_b‖) minus its minimum over r, d the numel of
    one row."""
    d = z[0].numel()
    if d < 2:
        raise ValueError(f"the noise needs at least 2 elements per item, got {d}")
    r2 = z.flatten(1).to(torch.promote_types(z.dtype, torch.float32)).pow(2).sum(1)
    k = d - 1
    return 0.5 * r2 - 0.5 * k * r2.log() - (0.5 * k - 0.5 * k * math.log(k))
