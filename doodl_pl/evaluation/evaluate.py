"""``doodl-pl evaluate``: score output folders and write JSON, a Markdown table and plots."""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..losses.clip_models import ClipSpec
from .run import RunOutputs, load_run
from .stats import Estimate, mean, proportion

__all__ = ["EvalConfig", "Evaluator", "main"]

#: Per-item metrics that are successes (0/1): reported as proportions with Wilson intervals.
PROPORTIONS = {
    "validity",
    "found",
    "color",
    "shape",
    "outline",
    "relation",
    "full_match",
    "content_kept",
    "improved",
    "edit_success",
}
LOWER_IS_BETTER = {"fid"}


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
        shapes64: run the Shapes-64 ground-truth checks on items with a ``truth`` field.
    """

    clip: ClipSpec | None = None
    classifier: dict[str, Any] | None = None
    fid_reference: str | None = None
    fid_features: str = "classifier"
    aesthetic_head: str | None = None
    aesthetic_clip: ClipSpec | None = None
    shapes64: bool = False
    reps: int = 200

    @classmethod
    def shapes64_preset(cls, **overrides: Any) -> EvalConfig:
        from ..shapes64.assets import CLIP, EVAL_CLASSIFIER, HEAD

        base = dict(
            clip=CLIP,
            classifier={**EVAL_CLASSIFIER, "num_classes": 9, "input_size": 64},
            aesthetic_head=HEAD,
            aesthetic_clip=CLIP,
            shapes64=True,
        )
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


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
        if cfg.shapes64:
            if self.validity is None:
                raise ValueError(
                    "the Shapes-64 checks need `--classifier` (the evaluation classifier)"
                )
            from .shapes64 import Shapes64Checks

            self.checks = Shapes64Checks(self.validity)
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

    def fid(self, run: RunOutputs) -> dict[str, Estimate]:
        from .fid import fid, load_folder

        size = run.images.shape[1] if len(run.images) else None
        out = {
            "fid": fid(
                self.fid_features,
                run.tensor(),
                load_folder(self.references[""], size),
                self.cfg.reps,
            )
        }
        classes = [r["item"].get("class_index") for r in run.rows]
        for cls in sorted({c for c in classes if c is not None}):
            refs = self.references.get(str(cls))
            idx = [i for i, c in enumerate(classes) if c == cls]
            if refs and len(idx) >= 2:
                out[f"fid/class_{cls}"] = fid(
                    self.fid_features, run.tensor(idx), load_folder(refs, size), self.cfg.reps
                )
        return out

    def evaluate(self, run: RunOutputs) -> dict[str, Any]:
        """Scores of one run: ``metrics`` (name → Estimate dict), ``per_item``, ``cost``."""
        per = self.per_item(run)
        metrics: dict[str, Estimate] = {}
        for k, vals in per.items():
            v = np.asarray(vals, dtype=np.float64)
            v = v[np.isfinite(v)]
            metrics[k] = proportion(v.astype(bool)) if k in PROPORTIONS else mean(v)
        if self.fid_features is not None and len(run.rows) >= 2:
            metrics.update(self.fid(run))
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
            "method": run.rows[0].get("method") if run.rows else None,
            "cost": run.cost(),
            "metrics": {k: m.to_dict() for k, m in metrics.items()},
            "per_item": {"id": [r["id"] for r in run.rows], **per},
            "notes": notes,
        }


def markdown(results: list[dict[str, Any]]) -> str:
    """One table: a row per metric, a column per run, plus UNet calls and seconds per item."""
    names = [r["name"] for r in results]
    keys = list(dict.fromkeys(k for r in results for k in r["metrics"]))
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for k in keys:
        cells = [str(Estimate(**r["metrics"][k])) if k in r["metrics"] else "—" for r in results]
        arrow = " ↓" if k.startswith("fid") else ""
        lines.append(f"| {k}{arrow} | " + " | ".join(cells) + " |")
    for k, fmt in (("unet_calls_per_item", "{:.0f}"), ("wall_s_per_item", "{:.2f}")):
        cells = [fmt.format(r["cost"][k]) if math.isfinite(r["cost"][k]) else "—" for r in results]
        lines.append(f"| {k.replace('_', ' ')} | " + " | ".join(cells) + " |")
    lines.append(
        "| items scored (failed) | "
        + " | ".join(f"{r['n']} ({len(r['failed'])})" for r in results)
        + " |"
    )
    return "\n".join(lines) + "\n"


def plot(results: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    """One panel per metric: a bar per run with its 95 % interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(dict.fromkeys(k for r in results for k in r["metrics"]))
    cols = min(4, max(1, len(keys)))
    rows = max(1, math.ceil(len(keys) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    names = [r["name"] for r in results]
    for ax, k in zip(axes.flat, keys, strict=False):
        vals, errs = [], [[], []]
        for r in results:
            e = r["metrics"].get(k)
            v = e["value"] if e else float("nan")
            vals.append(v)
            lo = e["lo"] if e and math.isfinite(e["lo"]) else v
            hi = e["hi"] if e and math.isfinite(e["hi"]) else v
            errs[0].append(max(0.0, v - lo) if math.isfinite(v) else 0.0)
            errs[1].append(max(0.0, hi - v) if math.isfinite(v) else 0.0)
        ax.bar(
            range(len(names)), vals, yerr=errs, capsize=3, color=plt.cm.tab10.colors[: len(names)]
        )
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
        ax.set_title(k + (" (lower is better)" if k.startswith("fid") else ""), fontsize=9)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_results(results: list[dict[str, Any]], out: Path, title: str = "") -> dict[str, Path]:
    """``results.json`` (with per-item values), ``results.md`` and ``metrics.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "results.json",
        "markdown": out / "results.md",
        "plot": out / "metrics.png",
    }
    paths["json"].write_text(json.dumps(results, indent=1, default=float))
    md = (f"# {title}\n\n" if title else "") + markdown(results)
    notes = sorted({n for r in results for n in r["notes"]})
    md += "".join(f"\nNote: {n}.\n" for n in notes)
    paths["markdown"].write_text(md)
    plot(results, paths["plot"], title)
    return paths


def _clip_arg(values: list[str] | None) -> ClipSpec | None:
    return ClipSpec(values[0], values[1] if len(values) > 1 else None) if values else None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="doodl-pl evaluate",
        description="Score `doodl-pl fit` output folders (manifest.jsonl + images/) and compare them.",
    )
    p.add_argument("runs", nargs="+", help="output folders (each a run's `output_dir`)")
    p.add_argument("--names", nargs="*", help="labels for the runs (default: folder names)")
    p.add_argument(
        "--items", help="items file to join (default: the one in each run's config.yaml)"
    )
    p.add_argument("--preset", choices=["auto", "shapes64", "none"], default="auto",
                   help="shapes64: the shipped evaluation models and ground-truth checks; auto: "
                   "shapes64 when the runs used the shipped Shapes-64 backbone")  # fmt: skip
    p.add_argument("--clip", nargs="+", metavar=("NAME", "PRETRAINED"), help="judging CLIP")
    p.add_argument("--classifier", nargs=2, metavar=("TIMM_NAME", "CHECKPOINT"),
                   help="held-out classifier for validity")  # fmt: skip
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--input-size", type=int, default=None, help="classifier input side")
    p.add_argument("--fid-reference", help="folder of reference images (sub-folder per class)")
    p.add_argument("--fid-features", choices=["classifier", "clip"], default="classifier")
    p.add_argument("--aesthetic-head", help="aesthetic head (.safetensors)")
    p.add_argument("--reps", type=int, default=200, help="bootstrap resamples for FID intervals")
    p.add_argument("--out", help="folder for the comparison (default: <first run>/evaluation)")
    return p


def config_from_args(a: argparse.Namespace, runs: list[RunOutputs]) -> EvalConfig:
    classifier = None
    if a.classifier:
        if a.num_classes is None:
            raise ValueError("`--classifier` needs `--num-classes`")
        classifier = {
            "model_name": a.classifier[0],
            "checkpoint_path": a.classifier[1],
            "num_classes": a.num_classes,
            "input_size": a.input_size,
        }
    explicit = dict(
        clip=_clip_arg(a.clip),
        classifier=classifier,
        fid_reference=a.fid_reference,
        fid_features=a.fid_features,
        aesthetic_head=a.aesthetic_head,
        reps=a.reps,
    )
    preset = a.preset
    if preset == "auto":
        preset = (
            "shapes64"
            if runs and all("shapes64/" in json.dumps(r.config) for r in runs)
            else "none"
        )
    if preset == "shapes64":
        return EvalConfig.shapes64_preset(**explicit)
    cfg = EvalConfig(**{k: v for k, v in explicit.items() if v is not None})
    cfg.aesthetic_clip = cfg.clip
    if not any((cfg.clip, cfg.classifier, cfg.aesthetic_head)):
        raise ValueError(
            "nothing to measure: pass `--clip`, `--classifier` or `--aesthetic-head`, or `--preset shapes64`"
        )
    return cfg


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Evaluate runs; print the table and where the files are. Returns the results."""
    a = parser().parse_args(argv)
    names = a.names or []
    if names and len(names) != len(a.runs):
        raise ValueError(f"`--names` gives {len(names)} labels for {len(a.runs)} runs")
    runs = [load_run(r, a.items, names[i] if names else None) for i, r in enumerate(a.runs)]
    cfg = config_from_args(a, runs)
    evaluator = Evaluator(cfg)
    results = [evaluator.evaluate(r) for r in runs]
    out = Path(a.out) if a.out else Path(a.runs[0]) / "evaluation"
    paths = write_results(results, out)
    print(markdown(results))
    for r in results:
        for n in r["notes"]:
            print(f"note ({r['name']}): {n}", file=sys.stderr)
    print(f"doodl-pl evaluate: wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return results
