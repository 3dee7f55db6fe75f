"""The test suite's helpers, in one place: tiny configs, fitting, manifests, chains' inputs.

Fixtures live in ``conftest.py`` (pytest finds them); everything a test imports comes from here.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import torch
import yaml

from doodl_pl.backbones import StableDiffusion
from doodl_pl.data import DoodlDataModule
from doodl_pl.data.items import read_items
from doodl_pl.sampling import Schedule, official_edict_scheduler
from doodl_pl.testing import tiny_text_condition

ROOT = Path(__file__).resolve().parents[1]


def trainer(**kw) -> pl.Trainer:
    defaults = dict(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        use_distributed_sampler=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    defaults.update(kw)
    return pl.Trainer(**defaults)


def fit(module, items, batch_size=1, **kw):
    dm = DoodlDataModule(inline=items, batch_size=batch_size)
    trainer(**kw).fit(module, datamodule=dm)
    return manifest(module.writer.root)


def manifest(root) -> dict[str, dict]:
    path = Path(root) / "manifest.jsonl"
    if not path.exists():
        return {}
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


def backbone(assets, dtype="float32"):
    return StableDiffusion(assets["sd"], dtype=dtype)


# Item prompts and seeds unlike their batch positions (large, shuffled, all different), so a
# seed or prompt keyed on position, batch or rank shows.
PROMPTS = ("a red circle", "a blue star above a green square", "two", "a yellow cross", "")
SEEDS = (90_017, 4_211, 771_003, 31, 52_640, 9_999_991, 1_234, 600_613)


def items(n, prompt=None, seed0=None):
    """``n`` items ``it0``, ``it1``, …: different prompts (or all ``prompt``) and seeds from
    :data:`SEEDS` (or ``seed0 + i``)."""
    return [
        {
            "id": f"it{i}",
            "prompt": PROMPTS[i % len(PROMPTS)] if prompt is None else prompt,
            "seed": SEEDS[i] if seed0 is None else seed0 + i,
        }
        for i in range(n)
    ]


def clip_loss(assets, **kw):
    """A CLIP text loss on the tiny CLIP whose cuts are real random cuts (``min_cut``): the tiny
    CLIP's input is as big as the tiny images, so without it every cut is the whole image."""
    from doodl_pl.losses import CLIPTextLoss
    from doodl_pl.losses.clip_models import ClipSpec

    kw = {"n_cuts": 4, "min_cut": 0.5, **kw}
    return CLIPTextLoss([ClipSpec(assets["clip_cfg"], assets["clip_w"])], **kw)


def nan_loss(images):
    """A loss that is NaN for every image (for failure-path tests)."""
    return images.mean(dim=(1, 2, 3)) * float("nan")


# -- chains: schedules, conditions and latents -------------------------------------------------
def make_schedule(steps: int, strength: float = 1.0) -> Schedule:
    return Schedule.from_scheduler(official_edict_scheduler(), steps, strength)


def cond(batch: int, dtype=torch.float64, scale: float = 7.5):
    return tiny_text_condition(batch, dtype=dtype, scale=scale)


def latents(batch: int, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, 8, 8, generator=g, dtype=dtype)


# -- configs: a real-model config turned into one on the tiny components -------------------------
def tinify(
    config: Path,
    assets: dict[str, str],
    out: Path,
    opt_steps: int = 2,
    steps: int = 3,
    limit: int = 2,
) -> Path:
    cfg = yaml.safe_load(config.read_text())
    m = cfg["model"]["init_args"]
    xl = m["backbone"]["class_path"].endswith("StableDiffusionXL")
    m["backbone"]["init_args"] = {"pretrained": assets["sdxl" if xl else "sd"], "dtype": "float32"}
    m["num_inference_steps"] = steps
    m["output_dir"] = str(out)
    if "opt_steps" in m:
        m["opt_steps"] = opt_steps
    if "match_opt_steps" in m:
        m["match_opt_steps"] = 1
        m["candidate_batch"] = 2
    for loss in m.get("loss") or []:
        _tiny_loss(loss, assets)
    trainer = cfg.setdefault("trainer", {})
    trainer["accelerator"] = "cpu"
    trainer["enable_progress_bar"] = False
    data_cfg = cfg["data"]["init_args"]
    data_cfg["batch_size"] = min(data_cfg.get("batch_size", 1), 2)
    if isinstance(trainer.get("logger"), dict):
        trainer["logger"]["init_args"]["save_dir"] = str(out)
    data = cfg["data"]["init_args"]
    if "items" in data:
        items = []
        for it in read_items(ROOT / data["items"])[:limit]:
            d = {"id": it.id, "prompt": it.prompt, "seed": it.seed}
            if it.class_index is not None:
                d["class_index"] = it.class_index % 5
            if it.reference_images:
                d["reference_images"] = [assets["image"]]
            if it.image:
                d["image"] = assets["image"]
            if it.aesthetic_target is not None:
                d["aesthetic_target"] = it.aesthetic_target
            items.append(d)
        items_file = out.parent / f"{out.name}_items.jsonl"
        items_file.write_text("".join(json.dumps(d) + "\n" for d in items))
        data["items"] = str(items_file)
    else:
        data["prompts"] = str(ROOT / data["prompts"])
        data["seeds"] = "0-0"
        data["limit"] = limit
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _tiny_loss(loss: dict, assets: dict[str, str]) -> None:
    """A loss spec pointed at the tiny components, wrapped losses (``EOT``'s ``loss``,
    ``GuideEnsemble``'s ``losses``, ``Verified``'s ``loss`` and ``verifier``) included."""
    ia = loss.setdefault("init_args", {})
    wrapped = [ia[k] for k in ("loss", "verifier") if isinstance(ia.get(k), dict)]
    for inner in wrapped + ia.get("losses", []):
        _tiny_loss(inner, assets)
    if "models" in ia:
        ia["models"] = [
            {
                "name": assets["clip_cfg"],
                "pretrained": assets["clip_w"],
                "weight": spec.get("weight", 1.0),
            }
            for spec in ia["models"]
        ]
        ia["n_cuts"] = 2
        ia["min_cut"] = 0.5  # the tiny CLIP's input is the image's size: make real cuts
    if "clip" in ia:
        ia["clip"] = {"name": assets["clip_cfg"], "pretrained": assets["clip_w"]}
    if "head_path" in ia:
        ia["head_path"] = assets["head"]
    if "checkpoint_path" in ia:
        ia.update(
            model_name="resnet10t",
            checkpoint_path=assets["classifier"],
            num_classes=5,
            input_size=32,
        )


def edit_round_trip(assets, out, **kw):
    """A float64 DOODL module on one edit item (the tiny photo): ``(module, (x_T, y_T, is_edit),
    x_0)``, where x_0 is what sampling forward from the inverted pair gives back."""
    from doodl_pl.losses import ColorLoss
    from doodl_pl.modules import DoodlModule

    module = DoodlModule(
        backbone(assets, "float64"),
        loss=ColorLoss(),
        num_inference_steps=5,
        guidance_scale=3.0,
        output_dir=str(out),
        **kw,
    )
    item = [{"id": "e", "prompt": "a red circle", "seed": 52_640, "image": assets["image"]}]
    x, y, edit = module.initial_latents(item)
    cond = module.condition(item, module.inversion_guidance_scale, [""])
    x0, _ = module.chain(cond).sample(x, y)
    return module, (x, y, edit), x0
