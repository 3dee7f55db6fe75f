"""The Shapes-64 evaluation preset: the shipped judging models and the ground-truth checks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..evaluation.evaluator import EvalConfig, EvalPreset
from ..evaluation.run import RunOutputs
from .assets import CLIP, EVAL_CLASSIFIER, HEAD
from .checks import Shapes64Checks
from .world import SHAPES

__all__ = ["PRESET", "eval_config"]


def eval_config(**overrides: Any) -> EvalConfig:
    """The shipped CLIP, evaluation classifier and aesthetic head, with the Shapes-64 checks;
    ``overrides`` that are not None replace entries."""
    base: dict[str, Any] = dict(
        clip=CLIP,
        classifier={**EVAL_CLASSIFIER, "num_classes": len(SHAPES), "input_size": 64},
        aesthetic_head=HEAD,
        aesthetic_clip=CLIP,
        truth_checks=Shapes64Checks,
    )
    base.update({k: v for k, v in overrides.items() if v is not None})
    return EvalConfig(**base)


def _applies(runs: Sequence[RunOutputs]) -> bool:
    """Every run used the shipped Shapes-64 backbone."""
    return bool(runs) and all("shapes64/" in json.dumps(r.config) for r in runs)


PRESET = EvalPreset("shapes64", eval_config, _applies)
