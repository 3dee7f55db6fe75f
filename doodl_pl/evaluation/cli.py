"""``doodl-pl evaluate``: score output folders and write JSON, a Markdown table and plots."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..losses.clip_models import ClipSpec
from .evaluator import EvalConfig, EvalPreset, Evaluator
from .results import markdown, side_by_side, write_results
from .run import RunOutputs, load_run

__all__ = ["config_from_args", "grid_main", "main", "parse_accept", "parser"]


def _clip_arg(values: list[str] | None) -> ClipSpec | None:
    return ClipSpec(values[0], values[1] if len(values) > 1 else None) if values else None


def parser(presets: Sequence[str] = ()) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="doodl-pl evaluate",
        description="Score `doodl-pl fit` output folders (manifest.jsonl + images/) and compare them.",
    )
    p.add_argument("runs", nargs="+", help="output folders (each a run's `output_dir`)")
    p.add_argument("--names", nargs="*", help="labels for the runs (default: folder names)")
    p.add_argument(
        "--items", help="items file to join (default: the one in each run's config.yaml)"
    )
    p.add_argument("--preset", choices=["auto", *presets, "none"], default="auto",
                   help="a world's judging models and ground-truth checks (shapes64: the shipped "
                   "ones); auto: the preset whose world the runs used, if any")  # fmt: skip
    p.add_argument("--clip", nargs="+", metavar=("NAME", "PRETRAINED"), help="judging CLIP")
    p.add_argument("--classifier", nargs=2, metavar=("TIMM_NAME", "CHECKPOINT"),
                   help="held-out classifier for validity")  # fmt: skip
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--input-size", type=int, default=None, help="classifier input side")
    p.add_argument("--fid-reference", help="folder of reference images (sub-folder per class)")
    p.add_argument("--fid-features", choices=["classifier", "clip"], default="classifier")
    p.add_argument("--aesthetic-head", help="aesthetic head (.safetensors)")
    p.add_argument("--reps", type=int, default=200, help="bootstrap resamples for FID intervals")
    p.add_argument("--accept", nargs="+", metavar="GUIDE_SCORE=MIN",
                   help="the guide's acceptance rule over the manifest's guide scores, e.g. "
                   "guide_class_prob=0.9; reports `accepted`. `own`: a run that stopped under "
                   "its own `accept` rule is scored by the verdict it recorded (the rule, if "
                   "given too, scores the others)")  # fmt: skip
    p.add_argument("--judge", metavar="METRIC",
                   help="the per-item success metric that is the held-out judge's verdict (e.g. "
                   "validity, full_match); with --accept reports `hacking` (accepted images the "
                   "judge rejects) and `accepted_valid`")  # fmt: skip
    p.add_argument("--out", help="folder for the comparison (default: <first run>/evaluation)")
    return p


def parse_accept(values: list[str] | None) -> dict[str, float] | None:
    """``["guide_class_prob=0.9"]`` → ``{"guide_class_prob": 0.9}`` (the word ``own`` is left to
    :func:`config_from_args`)."""
    values = [v for v in values or [] if v != "own"]
    if not values:
        return None
    out = {}
    for v in values:
        name, sep, least = v.partition("=")
        try:
            out[name] = float(least)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise ValueError(
                f"`--accept` {v!r}: expected GUIDE_SCORE=MIN, e.g. guide_class_prob=0.9"
            )
    return out


def config_from_args(
    a: argparse.Namespace, runs: list[RunOutputs], presets: Sequence[EvalPreset] = ()
) -> EvalConfig:
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
        accept=parse_accept(a.accept),
        judge=a.judge,
        accept_own=True if "own" in (a.accept or []) else None,
    )
    by_name = {p.name: p for p in presets}
    preset = a.preset
    if preset == "auto":
        preset = next((p.name for p in presets if p.applies(runs)), "none")
    if preset in by_name:
        return by_name[preset].config(**explicit)
    cfg = EvalConfig(**{k: v for k, v in explicit.items() if v is not None})
    cfg.aesthetic_clip = cfg.clip
    if not any((cfg.clip, cfg.classifier, cfg.aesthetic_head)):
        raise ValueError(
            "nothing to measure: pass `--clip`, `--classifier` or `--aesthetic-head`, or `--preset shapes64`"
        )
    return cfg


def main(argv: list[str] | None = None, presets: Sequence[EvalPreset] = ()) -> list[dict[str, Any]]:
    """Evaluate runs; print the table and where the files are. Returns the results.
    ``presets``: the worlds' evaluation setups ``--preset`` can name (the entry point passes
    Shapes-64's)."""
    a = parser([p.name for p in presets]).parse_args(argv)
    names = a.names or []
    if names and len(names) != len(a.runs):
        raise ValueError(f"`--names` gives {len(names)} labels for {len(a.runs)} runs")
    runs = [load_run(r, a.items, names[i] if names else None) for i, r in enumerate(a.runs)]
    cfg = config_from_args(a, runs, presets)
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


def grid_main(argv: list[str] | None = None) -> None:
    """``python -m doodl_pl.evaluation.grid RUN… --out PNG``: the side-by-side image grid."""
    p = argparse.ArgumentParser(description="Side-by-side grid of doodl-pl output folders.")
    p.add_argument("runs", nargs="+", help="output folders (each with manifest.jsonl, images/)")
    p.add_argument("--out", required=True)
    p.add_argument("--labels", nargs="*")
    p.add_argument(
        "--items", help="the runs' items file: adds a column of references or input photos"
    )
    a = p.parse_args(argv)
    print(side_by_side(a.runs, a.out, a.labels, items=a.items))
