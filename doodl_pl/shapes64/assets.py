"""The shipped Shapes-64 models, loaded through the standard loaders."""

from __future__ import annotations

from ..hub import ASSETS
from ..losses.clip_models import ClipSpec

__all__ = [
    "CLIP",
    "CLIP_REL",
    "EVAL_CLASSIFIER",
    "GUIDE_CLASSIFIER",
    "HEAD",
    "ROBUST_CLASSIFIER",
    "SD",
    "available",
]

ROOT = ASSETS / "shapes64"
SD = "shapes64/sd"
CLIP = ClipSpec("shapes64/clip/shapes64-clip.json", "shapes64/clip/shapes64-clip.safetensors")
#: The text guide that reads relations (issue 28 #3; configs/shapes64/train_clip_rel*.yaml): it
#: shares the shipped CLIP's token table, so its file holds the rest and ``base`` fills the table.
CLIP_REL = ClipSpec(
    "shapes64/clip_rel/shapes64-clip-rel.json",
    "shapes64/clip_rel/shapes64-clip-rel.safetensors",
    base=CLIP.pretrained,
)
GUIDE_CLASSIFIER = {"model_name": "resnet10t", "checkpoint_path": "shapes64/classifier.safetensors"}
#: The robust guide option (issue 25): the guide's architecture trained on VAE round trips with
#: shifts, blur and noise (configs/shapes64/train_classifier_robust.yaml).
ROBUST_CLASSIFIER = {
    "model_name": "resnet10t",
    "checkpoint_path": "shapes64/classifier_robust.safetensors",
}
EVAL_CLASSIFIER = {
    "model_name": "regnetx_002",
    "checkpoint_path": "shapes64/eval_classifier.safetensors",
}
HEAD = "shapes64/aesthetic_head.safetensors"
FILES = {
    "sd": ROOT / "sd" / "model_index.json",
    "vae": ROOT / "sd" / "vae" / "diffusion_pytorch_model.safetensors",
    "clip": ROOT / "clip" / "shapes64-clip.safetensors",
    "clip_rel": ROOT / "clip_rel" / "shapes64-clip-rel.safetensors",
    "classifier": ROOT / "classifier.safetensors",
    "classifier_robust": ROOT / "classifier_robust.safetensors",
    "eval_classifier": ROOT / "eval_classifier.safetensors",
    "aesthetic": ROOT / "aesthetic_head.safetensors",
}


def available() -> dict[str, bool]:
    return {k: p.is_file() for k, p in FILES.items()}
