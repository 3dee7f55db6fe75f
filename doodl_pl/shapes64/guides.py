"""The Shapes-64 vocabulary guides by name: the shipped classifier, the robust one, the shipped
one under expectation over transformations, and the two as an ensemble (issue 25)."""

from __future__ import annotations

from pathlib import Path

from ..evaluation.validity import Validity
from ..losses import EOT, ClassifierLoss, GuideEnsemble, ImageLoss
from .assets import EVAL_CLASSIFIER, GUIDE_CLASSIFIER, ROBUST_CLASSIFIER
from .world import SHAPES

__all__ = ["GUIDES", "classifier", "judge_loss", "validity", "vocabulary_guide"]

GUIDES = ("plain", "robust", "eot", "ensemble")


def classifier(spec: dict) -> ClassifierLoss:
    """A Shapes-64 classifier (``{model_name, checkpoint_path}``) as a guide loss."""
    return ClassifierLoss(**spec, num_classes=len(SHAPES), input_size=64).eval()


def validity(spec: dict | None = None) -> Validity:
    """A Shapes-64 classifier (default: the judge, the evaluation classifier) as a validity
    reader."""
    return Validity(**(spec or EVAL_CLASSIFIER), num_classes=len(SHAPES), input_size=64)


def judge_loss() -> ClassifierLoss:
    """The held-out judge (the evaluation classifier) as a loss: its cross-entropy."""
    return classifier(EVAL_CLASSIFIER)


def vocabulary_guide(kind: str) -> ImageLoss:
    """The guide ``kind``: one of :data:`GUIDES`, or a ``.safetensors`` file of a resnet10t
    trained on the world (a guide one trained oneself, e.g. ``train_classifier_adv.yaml``'s)."""
    if kind.endswith(".safetensors"):
        if not Path(kind).is_file():
            raise FileNotFoundError(f"guide file {kind!r} does not exist")
        return classifier({"model_name": "resnet10t", "checkpoint_path": kind})
    if kind not in GUIDES:
        raise ValueError(f"guide must be one of {GUIDES} or a .safetensors file, got {kind!r}")
    if kind == "robust":
        return classifier(ROBUST_CLASSIFIER)
    if kind == "eot":
        return EOT(classifier(GUIDE_CLASSIFIER), copies=4)
    if kind == "ensemble":
        return GuideEnsemble([classifier(GUIDE_CLASSIFIER), classifier(ROBUST_CLASSIFIER)])
    return classifier(GUIDE_CLASSIFIER)
