"""Timesteps and ᾱ pairs for a denoising chain, read from any diffusers scheduler."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Schedule", "official_edict_scheduler", "sd1_scheduler"]


@dataclass(frozen=True)
class Schedule:
    """The executed denoising steps ``t_k → t_{k+1}``.

    Attributes:
        timesteps: ``(K,)`` integer timesteps in execution order (noisy → clean).
        alpha_bar: ``(K,)`` ᾱ at each executed timestep.
        alpha_bar_prev: ``(K,)`` ᾱ at the timestep each step lands on; the last one is the
            scheduler's final ᾱ (ᾱ_0 when ``set_alpha_to_one=False``).
    """

    timesteps: Tensor
    alpha_bar: Tensor
    alpha_bar_prev: Tensor

    def __len__(self) -> int:
        return int(self.timesteps.numel())

    @classmethod
    def from_scheduler(cls, scheduler, num_inference_steps: int, strength: float = 1.0) -> Schedule:
        """Build from a diffusers scheduler with ``alphas_cumprod``.

        Args:
            scheduler: e.g. ``DDIMScheduler``; its ``set_timesteps`` decides the spacing.
            num_inference_steps: T, the length of the full schedule.
            strength: fraction of the schedule executed, from its noisy end's ``T·strength``-th
                step (as in diffusers img2img); 1 runs all T steps.
        """
        if num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be >= 1, got {num_inference_steps}")
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"`strength` must be in (0, 1], got {strength}")
        scheduler.set_timesteps(num_inference_steps)
        timesteps = scheduler.timesteps.detach().cpu().long()
        acp = scheduler.alphas_cumprod.detach().cpu().double()
        final = getattr(scheduler, "final_alpha_cumprod", acp[0])
        final = torch.as_tensor(final, dtype=torch.float64).reshape(1)
        alpha_bar = acp[timesteps]
        # The step from t_k lands on the next listed timestep, which also covers non-uniform spacing.
        alpha_bar_prev = torch.cat([acp[timesteps[1:]], final])
        executed = min(max(int(num_inference_steps * strength), 1), len(timesteps))
        start = len(timesteps) - executed
        return cls(timesteps[start:], alpha_bar[start:], alpha_bar_prev[start:])

    def coefficients(self, k: int) -> tuple[float, float]:
        """EDICT/DDIM step coefficients (a_t, b_t) for executed step ``k``.

        a_t = sqrt(ᾱ_prev / ᾱ_t),  b_t = sqrt(1 − ᾱ_prev) − sqrt(ᾱ_prev (1 − ᾱ_t) / ᾱ_t).
        """
        ab, ab_prev = float(self.alpha_bar[k]), float(self.alpha_bar_prev[k])
        a = (ab_prev / ab) ** 0.5
        b = (1.0 - ab_prev) ** 0.5 - (ab_prev * (1.0 - ab) / ab) ** 0.5
        return a, b


def sd1_scheduler(**overrides):
    """A ``DDIMScheduler`` with Stable Diffusion v1's noise schedule (1000 steps, scaled_linear
    betas 0.00085 → 0.012), as SD-1.x checkpoints ship it; ``overrides`` change config entries."""
    from diffusers import DDIMScheduler

    config = dict(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    config.update(overrides)
    return DDIMScheduler(**config)


def official_edict_scheduler():
    """The DDIM scheduler the EDICT/DOODL reference code uses with SD-1.x.

    50 steps give timesteps 980, 960, …, 0, and the final ᾱ is ᾱ_0 (``set_alpha_to_one=False``).
    """
    return sd1_scheduler(steps_offset=0, timestep_spacing="leading")
