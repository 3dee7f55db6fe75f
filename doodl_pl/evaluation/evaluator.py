"""The evaluator: score one run's outputs with every configured metric, with intervals."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..losses.clip_models import ClipSpec
from ..outputs import number
from .run import RunOutputs
from .stats import Estimate, bootstrap, calls_per_hit, mean, proportion

__all__ = [
    "EvalPreset",
    "CONDITIONAL_PROPORTIONS",
    "LOWER_IS_BETTER",
    "PROPORTIONS",
    "EvalConfig",
    "Evaluator",
    "lower_is_better",
]

#: Per-item metrics that are successes (0/1): reported as proportions with Wilson intervals.
PROPORTIONS = {
    "validity",
    "found",
    "color",
    "shape",
    "outline",
    "relation",
    "full_match",
    "entity",
    "content_kept",
    "improved",
    "edit_success",
    "accepted",
    "accepted_valid",
}
#: Success shares taken over a subset of the items (NaN elsewhere): ``hacking`` is over the images
#: the guide accepts.
CONDITIONAL_PROPORTIONS = {"hacking"}
#: Metric families where less is better (a metric belongs by its prefix, e.g. ``fid_class3``).
LOWER_IS_BETTER = ("fid", "hacking", "calls_per_valid")


def lower_is_better(metric: str) -> bool:
    """Whether a lower value of ``metric`` is better."""
    return metric.startswith(LOWER_IS_BETTER)


@dataclass
class EvalConfig:
    """What to measure. Every model is optional; a metric runs when its model is given.

    Attributes:
        clip: the judging CLIP for ``clip_score`` / ``clip_i`` (should not be the guide).
        classifier: ``{"model_name", "checkpoint_path", "num_classes", "input_size"}`` of a timm
            classifier held out from guidance, for ``validity`` (and the Shapes-64 shape checks
            and FID features).
        fid_reference: folder of reference images; sub-folders named by class index give
            per-class FID for items with that ``class_index``.
        fid_features: ``"classifier"`` (pre-logit features) or ``"clip"`` (image embedding).
        aesthetic_head: aesthetic head file, scored on ``aesthetic_clip`` embeddings.
        truth_checks: a class built with the evaluation classifier (a ``Validity``) whose
            ``evaluate(run)`` checks items against their ``truth`` field (a world's ground truth,
            e.g. :class:`doodl_pl.shapes64.checks.Shapes64Checks`); ``None``: no such checks.
        accept: the guide's acceptance rule, ``{guide score: least value}`` over the readable
            scores each manifest line carries (e.g. ``{"guide_class_prob": 0.9}``); an image
            is accepted when every one is met.
        judge: the per-item success metric that is the held-out judge's verdict (e.g.
            ``validity``, ``full_match``). With ``accept`` it gives ``hacking``: the share of
            accepted images the judge rejects.
        accept_own: a run that stopped under its own ``accept`` rule is scored by the verdict
            its manifest recorded (``accepted``), so each column is judged at the rule it ran
            with; ``accept`` then scores only the runs without one.
    """

    clip: ClipSpec | None = None
    classifier: dict[str, Any] | None = None
    fid_reference: str | None = None
    fid_features: str = "classifier"
    aesthetic_head: str | None = None
    aesthetic_clip: ClipSpec | None = None
    truth_checks: Callable[[Any], Any] | None = None
    reps: int = 200
    accept: dict[str, float] | None = None
    judge: str | None = None
    accept_own: bool = False


@dataclass(frozen=True)
class EvalPreset:
    """A named evaluation setup a world ships (its judging models and ground-truth checks).

    Attributes:
        name: what ``--preset`` calls it.
        config: keyword overrides (non-None ones win) → the :class:`EvalConfig`.
        applies: whether ``--preset auto`` picks it for these runs.
    """

    name: str
    config: Callable[..., EvalConfig]
    applies: Callable[[Sequence[RunOutputs]], bool]


class Evaluator:
    """Loads the judging models once and scores any number of runs."""

    def __init__(self, cfg: EvalConfig) -> None:
        self.cfg = cfg
        self.clip = self.validity = self.aesthetic = self.checks = self.fid_features = None
        if cfg.fid_features not in ("classifier", "clip"):
            raise ValueError(
                f"`--fid-features` must be 'classifier' or 'clip', got {cfg.fid_features!r}"
            )
        if cfg.clip is not None:
            from .clip_score import ClipScore

            self.clip = ClipScore(cfg.clip)
        if cfg.classifier is not None:
            from .validity import Validity

            self.validity = Validity(**cfg.classifier)
        if cfg.aesthetic_head is not None:
            from ..losses.aesthetic import AestheticLoss

            self.aesthetic = AestheticLoss(
                cfg.aesthetic_clip or cfg.clip, cfg.aesthetic_head
            ).eval()
        if cfg.truth_checks is not None:
            if self.validity is None:
                raise ValueError(
                    "the ground-truth checks need `--classifier` (the evaluation classifier)"
                )
            self.checks = cfg.truth_checks(self.validity)
        self.set_fid_reference(cfg.fid_reference)

    def set_fid_reference(self, folder: str | None) -> None:
        """Compare against ``folder`` (``None``: no FID); the feature extractor follows
        ``cfg.fid_features``."""
        from .fid import ClassifierFeatures, ClipFeatures, reference_images

        self.cfg.fid_reference, self.fid_features = folder, None
        if folder is None:
            return
        self.references = reference_images(folder)
        if self.cfg.fid_features == "classifier":
            if self.validity is None:
                raise ValueError("`--fid-features classifier` needs `--classifier`")
            self.fid_features = ClassifierFeatures(self.validity.classifier)
        else:
            if self.clip is None:
                raise ValueError("`--fid-features clip` needs `--clip`")
            self.fid_features = ClipFeatures(self.clip.model)

    @torch.no_grad()
    def per_item(self, run: RunOutputs) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for metric in (self.clip, self.validity, self.checks):
            if metric is not None and run.rows:
                out.update(metric(run))
        if self.aesthetic is not None and run.rows:
            x = run.tensor()
            out["aesthetic"] = torch.cat(
                [self.aesthetic.score(x[i : i + 64]) for i in range(0, len(x), 64)]
            ).tolist()
        return out

    def agreement(self, run: RunOutputs, per: dict[str, list[float]]) -> dict[str, list[float]]:
        """Guide against judge, per item: ``accepted`` (the guide's rule holds), and with a judge
        ``accepted_valid`` (accepted and valid: what a data set keeps) and ``hacking`` (1 when
        an accepted image is rejected, 0 when it is valid, NaN when not accepted)."""
        rule = self.cfg.accept
        own = self.cfg.accept_own and any("accepted" in r for r in run.rows)
        if not (rule or own) or not run.rows:
            return {}
        if own:
            accepted = [float(bool(r.get("accepted"))) for r in run.rows]
        else:
            missing = [k for k in rule if all(r.get(k) is None for r in run.rows)]
            if missing:
                raise ValueError(
                    f"`--accept` names {missing[0]!r}, which no manifest line of {run.root} has; "
                    f"its guide scores are {sorted({k for r in run.rows for k in r if k.startswith('guide_')})}"
                )
            accepted = [
                float(all(number(r.get(k)) >= v for k, v in rule.items())) for r in run.rows
            ]
        out = {"accepted": accepted}
        judge = self.cfg.judge
        if judge is None:
            return out
        if judge not in per:
            raise ValueError(
                f"`--judge` {judge!r} is not a per-item metric of this evaluation; choose from "
                f"{sorted(per)}"
            )
        verdict = [float(x) for x in per[judge]]
        nan = float("nan")
        out["hacking"] = [
            (nan if v != v else 1.0 - v) if a else nan
            for a, v in zip(accepted, verdict, strict=True)
        ]
        out["accepted_valid"] = [
            a * v if v == v else 0.0 for a, v in zip(accepted, verdict, strict=True)
        ]
        return out

    def calls_per_valid(self, run: RunOutputs, accepted_valid: list[float]) -> Estimate:
        """UNet calls spent per image the guide accepted and the judge calls valid (what one
        data-set image costs), with a bootstrap interval over items."""
        calls = np.array([number(r.get("unet_calls")) for r in run.rows], dtype=np.float64)
        valid = np.asarray(accepted_valid[: len(calls)], dtype=np.float64)

        def ratio(idx: np.ndarray) -> float:
            return calls_per_hit(calls[idx], valid[idx])

        lo, hi = bootstrap(ratio, len(calls), self.cfg.reps)
        return Estimate(ratio(np.arange(len(calls))), lo, hi, len(calls), "bootstrap")

    def fid(
        self, run: RunOutputs, subset: list[int] | None = None, name: str = "fid"
    ) -> dict[str, Estimate]:
        """FID of the run's images (or of the rows in ``subset``) against the references, and per
        class where the references have a sub-folder for it; at least 2 images each."""
        from .fid import fid, load_folder

        rows = list(range(len(run.rows))) if subset is None else subset
        size = run.images.shape[1] if len(run.images) else None
        out = {}
        if len(rows) >= 2:
            out[name] = fid(
                self.fid_features, run.tensor(rows), load_folder(self.references[""], size),
                self.cfg.reps,
            )  # fmt: skip
        classes = {i: run.rows[i]["item"].get("class_index") for i in rows}
        for cls in sorted({c for c in classes.values() if c is not None}):
            refs = self.references.get(str(cls))
            idx = [i for i in rows if classes[i] == cls]
            if refs and len(idx) >= 2:
                out[f"{name}/class_{cls}"] = fid(
                    self.fid_features, run.tensor(idx), load_folder(refs, size), self.cfg.reps
                )
        return out

    def evaluate(self, run: RunOutputs) -> dict[str, Any]:
        """Scores of one run: ``metrics`` (name → Estimate dict), ``per_item``, ``cost``.

        A failed item has no image, yet it was asked for: it counts as a failure (0) in every
        success metric (:data:`PROPORTIONS`) and is left out of the others (NaN), so a method's
        failures never shrink its denominator.
        """
        per = self.per_item(run)
        per.update(self.agreement(run, per))
        for k in per:
            fill = 0.0 if k in PROPORTIONS else float("nan")
            per[k] = list(per[k]) + [fill] * len(run.failed)
        metrics: dict[str, Estimate] = {}
        for k, vals in per.items():
            v = np.asarray(vals, dtype=np.float64)
            v = v[np.isfinite(v)]
            shares = PROPORTIONS | CONDITIONAL_PROPORTIONS
            metrics[k] = proportion(v.astype(bool)) if k in shares else mean(v)
        if "accepted_valid" in per and run.rows:
            metrics["calls_per_valid"] = self.calls_per_valid(run, per["accepted_valid"])
        if self.fid_features is not None and len(run.rows) >= 2:
            metrics.update(self.fid(run))
            if "accepted" in per:  # the data set a builder keeps: what the guide accepts
                kept = [i for i in range(len(run.rows)) if per["accepted"][i]]
                metrics.update(self.fid(run, kept, "fid_accepted"))
        notes = []
        if (
            self.clip is not None
            and self.cfg.clip.pretrained
            and self.cfg.clip.pretrained in json.dumps(run.config)
        ):
            notes.append(
                "the judging CLIP is also a guide of this run: its CLIP score rewards the loss "
                "itself; prefer `--clip` with a different model"
            )
        return {
            "name": run.name,
            "root": str(run.root),
            "n": len(run.rows),
            "failed": run.failed,
            "outside_items": run.outside,
            "method": run.rows[0].get("method") if run.rows else None,
            "cost": run.cost(),
            "metrics": {k: m.to_dict() for k, m in metrics.items()},
            "per_item": {"id": [r["id"] for r in run.rows] + list(run.failed), **per},
            "notes": notes,
        }
