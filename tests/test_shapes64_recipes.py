"""Every Shapes-64 training recipe runs a few steps and exports through the standard loaders."""

import re

import pytest
import torch
import yaml
from helpers import ROOT

from doodl_pl.shapes64.train import main

CONFIGS = ROOT / "configs" / "shapes64"


def run(name, tmp, monkeypatch, **model_args):
    monkeypatch.setenv("DOODL_PL_CACHE", str(tmp / "cache"))
    cfg = yaml.safe_load((CONFIGS / f"train_{name}.yaml").read_text())
    cfg["trainer"].update(
        max_steps=2, val_check_interval=1, limit_val_batches=1, enable_progress_bar=False
    )
    cfg["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp / "logs")
    cfg["trainer"]["callbacks"][0]["init_args"]["dirpath"] = str(tmp / "ckpt" / name)
    cfg["data"].update(n=48, val_size=16, batch_size=8, workers=1)
    cfg["model"]["init_args"].update(export_dir=str(tmp / "export" / name), **model_args)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    main(["fit", "--config", str(path)])
    assert (tmp / "ckpt" / name / "last.ckpt").is_file()
    return tmp / "export" / name


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return tmp_path_factory.mktemp("recipes")


def test_vae_and_t2i_recipes(shared, monkeypatch):
    from diffusers import AutoencoderKL, StableDiffusionPipeline
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from doodl_pl.losses.clip_models import ClipModel
    from doodl_pl.models.clip_text import clip_text_model
    from doodl_pl.shapes64.assets import CLIP
    from doodl_pl.shapes64.dataset import load_split

    vae = run("vae", shared, monkeypatch, block_out_channels=[16, 16, 16])
    # the config's text encoder: the shipped CLIP's text tower, frozen
    cache = shared / "t2i_latents.safetensors"
    small = {"vae_dir": str(vae), "block_out_channels": [32, 32], "latent_cache": str(cache)}
    sd = run(
        "t2i", shared, monkeypatch, **small, attention_levels=[False, True], attention_heads=[1, 2]
    )
    pipe = StableDiffusionPipeline.from_pretrained(sd)
    # the cached latents are the VAE's scaled latent means of the training scenes
    images = torch.from_numpy(load_split("train", 48)[0]).permute(0, 3, 1, 2).float() / 127.5 - 1
    vae_model = AutoencoderKL.from_pretrained(vae, torch_dtype=torch.float32)
    with torch.no_grad():
        expect = vae_model.encode(images).latent_dist.mean * vae_model.config.scaling_factor
    torch.testing.assert_close(load_file(cache)["latents"].float(), expect, atol=2e-3, rtol=2e-3)
    assert pipe.vae.config.scaling_factor > 0 and pipe.unet.config.sample_size == 16
    assert pipe.tokenizer.model_max_length == 16
    tower = clip_text_model(ClipModel(CLIP).model.float()).state_dict()
    for k, v in pipe.text_encoder.state_dict().items():
        torch.testing.assert_close(v, tower[k], msg=k)  # exported in float32, as trained

    # a text encoder trained jointly instead; same VAE and scenes, so the latents come from the
    # cache and the VAE encoder never runs
    def no_encode(*a, **k):
        raise AssertionError("the VAE encoded although the latent cache matches")

    with monkeypatch.context() as m:
        m.setattr(AutoencoderKL, "encode", no_encode)
        sd = run(
            "t2i",
            shared,
            monkeypatch,
            **small,
            text_encoder=None,
            text_width=32,
            attention_heads=8,
            attention_levels=None,
        )
    pipe = StableDiffusionPipeline.from_pretrained(sd)
    assert pipe.text_encoder.config.hidden_size == pipe.unet.config.cross_attention_dim == 32
    # a cache written for other images or another VAE is not used, and is replaced
    save_file(load_file(cache), cache, metadata={"key": "another VAE"})
    # the CLIP text tower fine-tuned (its own learning rate) and a pooled prompt embedding
    # added to the time embedding
    sd = run(
        "t2i",
        shared,
        monkeypatch,
        **small,
        attention_levels=[False, True],
        attention_heads=[1, 2],
        text_lr=1.0,
        pooled_text_heads=4,
    )
    with safe_open(cache, "pt") as f:
        assert f.metadata()["key"] != "another VAE"
    torch.testing.assert_close(load_file(cache)["latents"].float(), expect, atol=2e-3, rtol=2e-3)
    pipe = StableDiffusionPipeline.from_pretrained(sd)
    assert pipe.unet.config.addition_embed_type == "text"
    moved = [k for k, v in pipe.text_encoder.state_dict().items() if not torch.equal(v, tower[k])]
    assert any(k.endswith("final_layer_norm.weight") for k in moved)
    ids = pipe.tokenizer(["a red square", ""], padding="max_length", return_tensors="pt").input_ids
    with torch.no_grad():
        h = pipe.text_encoder(ids)[0]
        eps = pipe.unet.float()(
            torch.randn(2, 4, 16, 16), 500, encoder_hidden_states=h.float()
        ).sample
    assert not torch.allclose(eps[0], eps[1])  # the prompt reaches the output


def test_vae_decoder_finetune_keeps_the_latent_space(shared, monkeypatch):
    """The decoder fine-tune (issue 28 #1) changes the decoder alone: the encoder's weights and
    the scaling factor come back bit-identical, so the text-to-image latents stay valid."""
    from diffusers import AutoencoderKL

    from doodl_pl.hub import resolve

    before = AutoencoderKL.from_pretrained(resolve("shapes64/sd/vae"))
    after = AutoencoderKL.from_pretrained(run("vae_decoder", shared, monkeypatch, lr=1e-2))
    assert after.config.scaling_factor == before.config.scaling_factor
    for part in ("encoder", "quant_conv"):
        for k, v in getattr(before, part).state_dict().items():
            assert torch.equal(v, getattr(after, part).state_dict()[k]), f"{part}.{k}"
    assert any(
        not torch.equal(v, after.decoder.state_dict()[k])
        for k, v in before.decoder.state_dict().items()
    )


@pytest.mark.parametrize(
    ("args", "key"),
    [({"edge_weight": -1.0}, "edge_weight"), ({"train_encoder": False}, "init_from")],
)
def test_vae_recipe_rejects_bad_settings(args, key):
    from doodl_pl.shapes64.recipes import VaeRecipe

    with pytest.raises(ValueError, match=key):
        VaeRecipe(**args)


def test_edges_mark_colour_changes_within_the_radius():
    from doodl_pl.shapes64.recipes.vae import edges

    x = -torch.ones(1, 3, 16, 16)
    x[:, 0, :, 8:] = 1.0  # a vertical colour edge between columns 7 and 8
    e = edges(x, radius=2)[0, 0]
    assert e[:, 6:10].eq(1).all() and e[:, :6].eq(0).all() and e[:, 10:].eq(0).all()


def test_clip_freeze_text_trains_the_image_tower_alone():
    from doodl_pl.shapes64.recipes import ClipRecipe

    recipe = ClipRecipe(freeze_text=True)
    trained = {k for k, p in recipe.model.named_parameters() if p.requires_grad}
    assert trained and all(k.startswith(("visual.", "logit_scale")) for k in trained)
    assert any(k.startswith("transformer.") for k, _ in recipe.model.named_parameters())


@pytest.mark.parametrize(
    ("args", "key"),
    [
        ({"text_encoder": None, "text_lr": 1e-4}, "text_lr"),
        ({"text_lr": 0.0}, "text_lr"),
        ({"pooled_text_heads": 3}, "pooled_text_heads"),
        ({"snr_floor": 5.0}, "snr_floor"),
        ({"snr_floor": 0.1, "snr_gamma": None}, "snr_floor"),
        ({"cfg_consistency": {"weight": 0.25}, "caption_dropout": 0.0}, "caption_dropout"),
        ({"cfg_consistency": {"weight": 0.0}}, "CfgConsistency `weight`"),
        ({"cfg_consistency": {"scale": 1.0}}, "CfgConsistency `scale`"),
        ({"cfg_consistency": {"t_max": 0}}, "CfgConsistency `t_max`"),
        ({"uncond_distill": {"weight": -1.0}}, "UncondDistill `weight`"),
        ({"uncond_distill": {"slots": 0}}, "UncondDistill `slots`"),
        ({"uncond_distill": {"t_max": 1001}}, "UncondDistill `t_max`"),
        ({"attention_levels": [True]}, "attention_levels"),
    ],
)
def test_t2i_recipe_rejects_bad_settings(args, key):
    """Each bad setting is refused by a message naming that very argument (no YAML path: the
    CLI adds where in the config it was)."""
    from doodl_pl.shapes64.recipes import TextToImageRecipe

    cfg = yaml.safe_load((CONFIGS / "train_t2i.yaml").read_text())["model"]["init_args"]
    with pytest.raises(ValueError, match=re.escape(key if " " in key else f"`{key}`")) as err:
        TextToImageRecipe(**{**cfg, **args})
    assert "init_args" not in str(err.value)


def test_clip_and_aesthetic_recipes(shared, monkeypatch):
    import open_clip

    from doodl_pl.losses import AestheticLoss, ClipSpec

    clip = run("clip", shared, monkeypatch)
    cfg, weights = clip / "shapes64-clip.json", clip / "shapes64-clip.safetensors"
    open_clip.add_model_config(str(cfg))
    model, _, _ = open_clip.create_model_and_transforms("shapes64-clip", pretrained=str(weights))
    assert model.visual.image_size in (64, (64, 64))
    head = run("aesthetic", shared, monkeypatch, clip_name=str(cfg), clip_weights=str(weights))
    loss = AestheticLoss(ClipSpec(str(cfg), str(weights)), str(head / "aesthetic_head.safetensors"))
    assert loss.score(torch.rand(2, 3, 64, 64)).shape == (2,)


@pytest.mark.parametrize("name", ["classifier", "eval_classifier"])
def test_classifier_recipes(name, shared, monkeypatch):
    import timm

    (shared / name).mkdir(exist_ok=True)
    out = run(name, shared / name, monkeypatch)
    cfg = yaml.safe_load((CONFIGS / f"train_{name}.yaml").read_text())["model"]["init_args"]
    model = timm.create_model(
        cfg["model_name"], num_classes=9, checkpoint_path=str(out / cfg["export_name"])
    )
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 9)


def test_learning_rate_follows_the_clock_when_max_time_ends_first(tmp_path):
    import time

    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import Timer
    from lightning.pytorch.trainer.states import RunningStage

    from doodl_pl.shapes64.recipes import Recipe

    recipe = Recipe(lr=1e-3, export_dir=str(tmp_path), warmup=0)
    trainer = Trainer(max_steps=1000, max_time="00:00:10:00", logger=False, barebones=True)
    recipe.trainer = trainer
    assert recipe.progress(100) == pytest.approx(0.1)  # clock not started: steps decide
    timer = next(cb for cb in trainer.callbacks if isinstance(cb, Timer))
    timer.on_train_start(trainer, recipe)
    timer._start_time[RunningStage.TRAINING] = time.monotonic() - 450  # 7.5 min ago
    assert recipe.progress(100) == pytest.approx(0.75, abs=0.01)
    assert recipe.progress(900) == pytest.approx(0.9)  # steps ahead of the clock


def test_t2i_loss_weights_clamp_the_snr_on_both_sides():
    from doodl_pl.shapes64.recipes import TextToImageRecipe

    cfg = yaml.safe_load((CONFIGS / "train_t2i.yaml").read_text())["model"]["init_args"]
    recipe = TextToImageRecipe(**{**cfg, "snr_gamma": 5.0, "snr_floor": 0.1})
    # SD-1 schedule written out: scaled_linear betas 0.00085 to 0.012 over 1000 steps
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    abar = torch.cumprod(1 - betas, 0)
    snr = abar / (1 - abar)
    t = torch.tensor([0, 50, 400, 600, 999])
    expect = [5 / snr[0], 5 / snr[50], 1.0, 1.0, 0.1 / snr[999]]
    assert snr[50] > 5 and 0.1 < snr[600] < 5 and snr[999] < 0.1
    torch.testing.assert_close(
        recipe.loss_weights(t).double(),
        torch.tensor(expect, dtype=torch.float64),
        rtol=1e-4,
        atol=0,
    )
    recipe.snr_floor = None  # plain Min-SNR-γ: nothing is raised
    assert recipe.loss_weights(torch.tensor([999])).item() == 1.0


def _tiny_t2i(monkeypatch, caption_dropout: float):
    """A 2-level t2i recipe on 8 training records with random latents, logging off, and no
    extra loss term whatever the shipped config turns on (each test sets the one it checks)."""
    from doodl_pl.shapes64.dataset import load_split
    from doodl_pl.shapes64.recipes import TextToImageRecipe

    _, records = load_split("train", 8)
    monkeypatch.setattr(TextToImageRecipe, "records", property(lambda self: records))
    cfg = yaml.safe_load((CONFIGS / "train_t2i.yaml").read_text())["model"]["init_args"]
    cfg.update(block_out_channels=[32, 32], attention_levels=[False, True], attention_heads=[1, 2])
    cfg.update(caption_dropout=caption_dropout, latent_cache=None, uncond_distill=None)
    recipe = TextToImageRecipe(**cfg)
    recipe.log = lambda *a, **k: None
    recipe._latents = torch.randn(8, 4, 16, 16).half()
    return recipe, records


def test_t2i_cfg_consistency_term_is_the_guided_eps_error(monkeypatch):
    import numpy as np

    from doodl_pl.shapes64.dataset import scene_from_record
    from doodl_pl.shapes64.recipes import CfgConsistency
    from doodl_pl.shapes64.world import caption

    recipe, records = _tiny_t2i(monkeypatch, caption_dropout=1.0)
    batch = (None, torch.arange(8))

    def step(weight, t_max=1000):
        recipe.cfg_consistency = weight and CfgConsistency(weight=weight, t_max=t_max)
        torch.manual_seed(3)
        return recipe.training_step(batch, 0).detach()

    main, with_term = step(None), step(2.0)
    # the same term computed directly: the UNet with the empty prompt and with each caption
    torch.manual_seed(3)
    z0 = recipe._latents.float()
    noise = torch.randn_like(z0)
    t = torch.randint(0, 1000, (8,))
    zt = recipe.noise_scheduler.add_noise(z0, noise, t)
    texts = [
        caption(scene_from_record(r), np.random.default_rng([j, 0])) for j, r in enumerate(records)
    ]
    with torch.no_grad():
        e_u = recipe.unet(zt, t, encoder_hidden_states=recipe.encode_text([""] * 8)).sample
        e_c = recipe.unet(zt, t, encoder_hidden_states=recipe.encode_text(texts)).sample
    guided = e_u + 7.5 * (e_c - e_u)
    expect = (((guided - noise) ** 2).mean(dim=(1, 2, 3)) * recipe.loss_weights(t)).mean()
    torch.testing.assert_close(with_term - main, 2.0 * expect, rtol=1e-4, atol=1e-6)
    # only timesteps below cfg_consistency_t_max take part; none below 0 + 1
    assert (t > 0).all()  # seed 3: no item at t = 0, so t_max = 1 leaves the term out
    torch.testing.assert_close(step(2.0, t_max=1), main)


def test_t2i_uncond_distill_pulls_only_the_empty_prompt_toward_eps_c(monkeypatch):
    import numpy as np

    from doodl_pl.shapes64.dataset import scene_from_record
    from doodl_pl.shapes64.recipes import UncondDistill
    from doodl_pl.shapes64.world import caption

    recipe, records = _tiny_t2i(monkeypatch, caption_dropout=0.0)
    batch = (None, torch.arange(8))
    params = list(recipe.unet.parameters())

    def step(weight, slots=3, t_max=1000):
        recipe.uncond_distill = weight and UncondDistill(weight=weight, slots=slots, t_max=t_max)
        torch.manual_seed(3)
        loss = recipe.training_step(batch, 0)
        return loss.detach(), torch.autograd.grad(loss, params)

    (main, g_main), (with_term, g_term) = step(None), step(2.0)
    # the same term computed directly: the first 3 items with the empty prompt against ε_c
    torch.manual_seed(3)
    z0 = recipe._latents.float()
    noise = torch.randn_like(z0)
    t = torch.randint(0, 1000, (8,))
    zt = recipe.noise_scheduler.add_noise(z0, noise, t)
    texts = [
        caption(scene_from_record(r), np.random.default_rng([j, 0])) for j, r in enumerate(records)
    ]
    e_c = recipe.unet(zt[:3], t[:3], encoder_hidden_states=recipe.encode_text(texts[:3])).sample
    e_u = recipe.unet(zt[:3], t[:3], encoder_hidden_states=recipe.encode_text([""] * 3)).sample
    expect = ((e_u - e_c.detach()) ** 2).mean(dim=(1, 2, 3)).mean()
    torch.testing.assert_close(with_term - main, 2.0 * expect.detach(), rtol=1e-4, atol=1e-7)
    # stop-gradient: the term's gradient is that of ε_∅ alone
    g_expect = torch.autograd.grad(2.0 * expect, params, allow_unused=True)
    for gt, gm, ge in zip(g_term, g_main, g_expect, strict=True):
        torch.testing.assert_close(
            gt - gm, torch.zeros_like(gt) if ge is None else ge, atol=2e-6, rtol=1e-3
        )
    # more slots than eligible items: padded rows are masked out, not counted twice
    assert (t > 0).all()  # seed 3: t_max = 1 leaves no eligible item
    torch.testing.assert_close(step(2.0, slots=4, t_max=1)[0], main)


def test_classifier_recipe_starts_from_an_exported_classifier(tmp_path):
    from doodl_pl.shapes64.recipes import ClassifierRecipe

    torch.manual_seed(0)
    trained = ClassifierRecipe(export_dir=str(tmp_path))
    trained.export()  # float16, as shipped
    torch.manual_seed(1)
    fresh = ClassifierRecipe(export_dir=str(tmp_path))
    torch.manual_seed(1)
    started = ClassifierRecipe(
        export_dir=str(tmp_path), init_from=str(tmp_path / "classifier.safetensors")
    )
    want = trained.model.state_dict()
    for key, value in started.model.state_dict().items():
        assert value.dtype == fresh.model.state_dict()[key].dtype, key
        if value.is_floating_point():
            torch.testing.assert_close(value, want[key].half().float(), atol=0, rtol=0)
    conv = "conv1.0.weight"
    assert not torch.equal(fresh.model.state_dict()[conv], started.model.state_dict()[conv])
