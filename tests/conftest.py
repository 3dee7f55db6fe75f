import pytest
import torch

from doodl_pl.models import LatentUNetEps
from doodl_pl.sampling import Schedule, official_edict_scheduler
from doodl_pl.testing import tiny_text_condition, tiny_unet


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def unet64():
    return LatentUNetEps(tiny_unet(dtype=torch.float64))


@pytest.fixture(scope="session")
def unet32():
    return LatentUNetEps(tiny_unet(dtype=torch.float32))


def make_schedule(steps: int, strength: float = 1.0) -> Schedule:
    return Schedule.from_scheduler(official_edict_scheduler(), steps, strength)


def cond(batch: int, dtype=torch.float64, scale: float = 7.5):
    return tiny_text_condition(batch, dtype=dtype, scale=scale)


def latents(batch: int, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, 8, 8, generator=g, dtype=dtype)
