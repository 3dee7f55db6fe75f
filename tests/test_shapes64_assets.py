"""The shipped Shapes-64 weights load through exactly the loaders real models use."""

import pytest
import torch

from doodl_pl.hub import ASSETS
from doodl_pl.shapes64.assets import FILES, available

HAVE = available()


def needs(*names):
    missing = [n for n in names if not HAVE[n]]
    return pytest.mark.skipif(bool(missing), reason=f"not trained/shipped yet: {missing}")


def test_assets_fit_the_size_budget():
    total = sum(p.stat().st_size for p in (ASSETS / "shapes64").rglob("*") if p.is_file())
    assert total <= 60 * 2**20


@needs("sd")
def test_sd_pipeline_loads_like_stable_diffusion():
    from diffusers import StableDiffusionPipeline

    from doodl_pl.backbones import StableDiffusion

    pipe = StableDiffusionPipeline.from_pretrained(ASSETS / "shapes64" / "sd")  # no dtype given
    assert pipe.unet.config.sample_size == 16 and pipe.vae.config.latent_channels == 4
    assert pipe.text_encoder.dtype == pipe.unet.dtype == torch.float32
    g = torch.Generator().manual_seed(0)
    image = pipe("a red circle", num_inference_steps=3, generator=g, output_type="pt").images
    assert image.shape == (1, 3, 64, 64) and torch.isfinite(image).all()
    sd = StableDiffusion("shapes64/sd")
    assert sd.image_size == 64 and sd.latent_shape() == (4, 16, 16)
    acp = sd.scheduler.alphas_cumprod
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    assert torch.allclose(acp.double(), torch.cumprod(1 - betas, 0), atol=1e-6)


@needs("clip")
def test_clip_loads_with_open_clip():
    import open_clip

    root = ASSETS / "shapes64" / "clip"
    open_clip.add_model_config(str(root / "shapes64-clip.json"))
    model, _, _ = open_clip.create_model_and_transforms(
        "shapes64-clip", pretrained=str(root / "shapes64-clip.safetensors")
    )
    assert model.encode_image(torch.rand(1, 3, 64, 64)).shape[-1] == 64


@needs("classifier", "eval_classifier")
def test_classifiers_load_with_timm():
    import timm

    for name, arch in (("classifier", "resnet10t"), ("eval_classifier", "regnetx_002")):
        m = timm.create_model(arch, num_classes=9, checkpoint_path=str(FILES[name]))
        assert m(torch.rand(1, 3, 64, 64)).shape == (1, 9)


@needs("clip", "clip_rel")
def test_relation_clip_reads_relations():
    """The shipped relation CLIP (issue 28 #3) loads through ``ClipSpec(base=…)``, tells a
    two-object caption from its relation reversed (order-blind: 0.5) and from its colors or
    shapes swapped, and reads one-object shape words (chance: 1/7)."""
    from doodl_pl.losses.clip_models import ClipModel
    from doodl_pl.shapes64 import quality
    from doodl_pl.shapes64.assets import CLIP_REL
    from doodl_pl.shapes64.dataset import load_split

    clip = ClipModel(CLIP_REL)
    acc = quality.clip_swap_accuracy(clip, *load_split("tune_two", 96))
    assert min(acc[k].value for k in ("relation", "colors", "shapes")) >= 0.8, acc
    zero_shot = quality.clip_zero_shot(clip, *load_split("tune_one", 96))
    assert zero_shot["shape"].value >= 0.7, zero_shot


@needs("clip", "aesthetic")
def test_aesthetic_head_loads():
    from doodl_pl.losses import AestheticLoss
    from doodl_pl.shapes64.assets import CLIP, HEAD

    loss = AestheticLoss(CLIP, HEAD)
    assert loss.score(torch.rand(2, 3, 64, 64)).shape == (2,)


@needs("sd", "clip")
def test_t2i_text_encoder_is_the_shipped_clips_text_tower():
    """The shipped CLIP was fine-tuned with its text tower frozen (issue 28), so the
    text-to-image model, trained on that tower, still reads prompts as the CLIP does."""
    from transformers import CLIPTextModel

    from doodl_pl.losses.clip_models import ClipModel
    from doodl_pl.models.clip_text import clip_text_model
    from doodl_pl.shapes64.assets import CLIP

    tower = clip_text_model(ClipModel(CLIP).model.float()).state_dict()
    shipped = CLIPTextModel.from_pretrained(ASSETS / "shapes64" / "sd" / "text_encoder")
    for k, v in shipped.state_dict().items():
        torch.testing.assert_close(v.float(), tower[k].float(), msg=k)


@needs("classifier_robust")
def test_a_vocabulary_guide_is_named_or_a_weights_file(tmp_path):
    import shutil

    from doodl_pl.shapes64.guides import vocabulary_guide

    own = tmp_path / "my_guide.safetensors"
    shutil.copy(FILES["classifier_robust"], own)
    images = torch.rand(2, 3, 64, 64)
    by_name = vocabulary_guide("robust").logits(images)
    torch.testing.assert_close(vocabulary_guide(str(own)).logits(images), by_name)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        vocabulary_guide(str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match="or a .safetensors file, got 'robst'"):
        vocabulary_guide("robst")
