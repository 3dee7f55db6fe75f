"""The Shapes-64 benchmark: each method's config for an application, at equal UNet calls.

The items themselves (held-out, with their ground truth) are built by
:mod:`doodl_pl.shapes64.items`.
"""

from __future__ import annotations

import copy
import inspect
import json
from pathlib import Path
from typing import Any

import yaml

from ..sampling.samplers import make_sampler

__all__ = [
    "fit_run",
    "GUIDE_ACCEPTS",
    "MATCH_TOLERANCE",
    "METHODS",
    "BASE_CONFIGS",
    "accepted_args",
    "candidate_calls",
    "check_equal_calls",
    "matched_candidates",
    "mean_unet_calls",
    "method_config",
    "parse_method_key",
    "split_top",
]

METHODS = ("vanilla", "one_step", "best_of_n", "doodl")
#: Per application, the guide's acceptance rule (``EvalConfig.accept``) and the judge's verdict
#: it is checked against (``EvalConfig.judge``): the hacking rate is the share of accepted
#: images the judge rejects. A column that stopped under its own ``accept`` rule is judged at
#: that rule instead (``EvalConfig.accept_own``).
GUIDE_ACCEPTS: dict[str, tuple[dict[str, float], str]] = {
    "vocabulary": ({"guide_class_prob": 0.9}, "validity"),
    # Every photo starts below 4 on the head: an edit it scores ≥ 5 is one it calls a success.
    "aesthetic": ({"guide_aesthetic": 5.0}, "edit_success"),
}
#: The benchmark's base configs (the protocol, frozen; in an editable install). The demo configs
#: in configs/demo move to the best measured settings.
BASE_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "benchmark"


def fit_run(cfg: dict, run_dir: Path) -> Path:
    """Write ``cfg`` to ``run_dir/run.yaml`` and run `doodl-pl fit` on it (a killed run resumes
    where it stopped; a folder made with other settings is refused). Returns the file."""
    from ..main import main as doodl_main  # the CLI imports the package: not at import time

    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "run.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    doodl_main(["fit", "--config", str(path)])
    return path


def accepted_args(cls: type) -> set[str]:
    """The keyword arguments ``cls`` takes, its bases' included (from their signatures)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            names |= {
                p.name
                for p in inspect.signature(init).parameters.values()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
            }
    return names


#: Most the columns' mean UNet calls per item may differ for "equal compute" to hold.
MATCH_TOLERANCE = 0.02


def _set(args: dict[str, Any], overrides: dict[str, Any] | None) -> None:
    for key, value in (overrides or {}).items():
        node = args
        *path, last = key.split(".")
        for part in path:  # a number indexes a list, e.g. loss.0.init_args.n_cuts
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        node[int(last) if isinstance(node, list) else last] = value


def _base_args(app: str, config_dir: str | Path) -> dict[str, Any]:
    cfg = yaml.safe_load((Path(config_dir) / f"{app}.yaml").read_text())
    return copy.deepcopy(cfg["model"]["init_args"])


def split_top(text: str, sep: str = ",") -> list[str]:
    """``text`` split at ``sep`` outside YAML brackets and braces (``a=1,loss=[{x: 1, y: 2}]``
    → ``["a=1", "loss=[{x: 1, y: 2}]"]``)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch in "[{") - (ch in "]}")
        if ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


def parse_method_key(text: str, expected: str) -> tuple[str, str, str]:
    """``METHOD:KEY=REST`` → ``(method, key, rest)`` (what ``--set`` and ``--tune`` take);
    the error names ``text`` and the ``expected`` form."""
    head, sep, rest = text.partition("=")
    method, colon, key = head.partition(":")
    if not (sep and colon and key):
        raise ValueError(f"{text!r}: expected {expected}")
    if method not in METHODS:
        raise ValueError(f"{text!r}: method must be one of {METHODS}")
    return method, key, rest


def candidate_calls(args: dict[str, Any]) -> int:
    """UNet calls of one generation (one best-of-N candidate) under a module's ``init_args``:
    the executed steps, twice for EDICT's two ε per step."""
    steps = args.get("num_inference_steps", 50)
    executed = max(int(steps * args.get("strength", 1.0)), 1)
    return executed * make_sampler(args.get("sampler", "edict")).calls_per_step


def matched_candidates(doodl_args: dict[str, Any], edits: bool = False) -> int:
    """Best-of-N's N at the UNet calls per item of DOODL with these final ``init_args`` (the
    reversible engine, the same sampler and T): m steps cost 3m + 1 generations, a best-of-k
    start k more, inverting a photo (``edits``) about one more."""
    m = doodl_args.get("opt_steps", 50)
    k = doodl_args.get("init_candidates", 1)
    return 3 * m + 1 + (k if k > 1 else 0) + int(edits)


def mean_unet_calls(run_dir: str | Path) -> float | None:
    """Mean UNet calls per item over a run folder's manifest (``None`` without one)."""
    path = Path(run_dir) / "manifest.jsonl"
    if not path.is_file():
        return None
    calls = [json.loads(line).get("unet_calls") for line in path.read_text().splitlines()]
    calls = [c for c in calls if c is not None]
    return sum(calls) / len(calls) if calls else None


def check_equal_calls(doodl_dir: str | Path, best_of_n_dir: str | Path) -> tuple[float, float]:
    """The two columns' mean UNet calls per item, counted from their manifests.

    Raises:
        ValueError: when they differ by more than :data:`MATCH_TOLERANCE`.
    """
    d, b = mean_unet_calls(doodl_dir), mean_unet_calls(best_of_n_dir)
    if d is None or b is None:
        return d or float("nan"), b or float("nan")
    if abs(b - d) > MATCH_TOLERANCE * d:
        raise ValueError(
            f"best-of-N spent {b:.0f} UNet calls per item ({best_of_n_dir}) and DOODL {d:.0f} "
            f"({doodl_dir}): {abs(b - d) / d:.1%} apart, over {MATCH_TOLERANCE:.0%}, so the "
            f"columns are not at equal compute. Leave `best_of_n:n_candidates` unset: it is "
            f"then derived from DOODL's counted calls."
        )
    return d, b


def method_config(
    app: str,
    method: str,
    items: str | Path,
    output_dir: str | Path,
    *,
    accelerator: str = "cpu",
    batch_size: int = 8,
    overrides: dict[str, Any] | None = None,
    config_dir: str | Path | None = None,
    doodl_overrides: dict[str, Any] | None = None,
    match_calls: float | None = None,
) -> dict[str, Any]:
    """The run config of ``method`` on ``app``: the base config's (``config_dir``, the frozen
    protocol in configs/benchmark) backbone, loss and sampling settings, the method's own keys, and ``overrides`` (dotted keys under ``model.init_args``).

    Best-of-N's N matches DOODL's UNet calls per item unless ``overrides`` set
    ``n_candidates`` or ``match_opt_steps``: from ``match_calls`` (a DOODL run's counted calls) when given, else from
    DOODL's final settings (the base config with ``doodl_overrides``).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    from .. import modules

    config_dir = config_dir or BASE_CONFIGS
    args = _base_args(app, config_dir)
    cls = {
        "vanilla": "VanillaModule",
        "one_step": "OneStepGuidanceModule",
        "best_of_n": "BestOfNModule",
        "doodl": "DoodlModule",
    }[method]
    takes = accepted_args(getattr(modules, cls))
    args = {k: v for k, v in args.items() if k in takes}  # e.g. DOODL's own keys
    if method == "one_step":
        args["loss_scale"] = 1.0
    if method == "best_of_n":
        args["candidate_batch"] = 8
    _set(args, overrides)
    if method == "best_of_n" and not {"n_candidates", "match_opt_steps"} & set(overrides or {}):
        if match_calls is not None:
            args["n_candidates"] = max(1, round(match_calls / candidate_calls(args)))
        else:
            doodl = _base_args(app, config_dir)
            _set(doodl, doodl_overrides)
            args["n_candidates"] = matched_candidates(doodl, edits=app == "aesthetic")
    args["output_dir"] = str(output_dir)
    return {
        "seed_everything": 0,
        "trainer": {
            "accelerator": accelerator,
            "devices": 1,
            "logger": False,
            "enable_model_summary": False,
            "enable_progress_bar": False,
        },
        "model": {"class_path": f"doodl_pl.modules.{cls}", "init_args": args},
        "data": {
            "class_path": "doodl_pl.data.DoodlDataModule",
            "init_args": {"items": str(items), "batch_size": batch_size},
        },
    }
