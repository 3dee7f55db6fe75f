import pytest
import torch

from doodl_pl.models import LatentUNetEps
from doodl_pl.testing import tiny_unet


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def unet64():
    return LatentUNetEps(tiny_unet(dtype=torch.float64))


@pytest.fixture(scope="session")
def unet32():
    return LatentUNetEps(tiny_unet(dtype=torch.float32))


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory):
    """Tiny random SD pipeline, CLIP, classifier, aesthetic head and an input image, on disk."""
    import numpy as np
    from PIL import Image

    from doodl_pl.testing import (
        build_tiny_aesthetic_head,
        build_tiny_classifier,
        build_tiny_clip,
        build_tiny_sd,
        build_tiny_sdxl,
    )

    root = tmp_path_factory.mktemp("tiny")
    cfg, w = build_tiny_clip(root)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(root / "photo.png")
    return {
        "sd": str(build_tiny_sd(root / "sd")),
        "sdxl": str(build_tiny_sdxl(root / "sdxl")),
        "clip_cfg": str(cfg),
        "clip_w": str(w),
        "classifier": str(build_tiny_classifier(root / "cls.safetensors")),
        "head": str(build_tiny_aesthetic_head(root / "head.safetensors")),
        "image": str(root / "photo.png"),
    }
