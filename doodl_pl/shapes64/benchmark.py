"""The Shapes-64 benchmark: held-out items for the four applications and each method's config.

Items carry their ground truth under ``truth`` (see :mod:`doodl_pl.shapes64.checks`). Scene
seeds come from the ``eval_*`` splits for results and from the disjoint ``tune_*`` splits for
tuning, at an offset so they never coincide with ``scripts/eval_shapes64.py``'s sets; no split
here overlaps the training splits.
"""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from ..data.items import write_items
from ..sampling.samplers import make_sampler
from .dataset import SPLITS
from .render import render
from .world import COLORS, SHAPES, Obj, Scene, article, position_phrase, sample_scene

__all__ = [
    "APPS",
    "fid_references",
    "fit_run",
    "GUIDE_ACCEPTS",
    "MATCH_TOLERANCE",
    "METHODS",
    "BASE_CONFIGS",
    "OFFSET",
    "accepted_args",
    "build_items",
    "candidate_calls",
    "check_equal_calls",
    "matched_candidates",
    "mean_unet_calls",
    "method_config",
    "parse_method_key",
    "split_top",
]

# Appended, never reordered: an application's item seeds follow its place here.
APPS = ("text", "vocabulary", "personalization", "aesthetic", "personalization_alone")
METHODS = ("vanilla", "one_step", "best_of_n", "doodl")
HIDDEN = ("pentagon", "hexagon", "octagon")
#: Per application, the guide's acceptance rule (``EvalConfig.accept``) and the judge's verdict
#: it is checked against (``EvalConfig.judge``): the hacking rate is the share of accepted
#: images the judge rejects. A column that stopped under its own ``accept`` rule is judged at
#: that rule instead (``EvalConfig.accept_own``).
GUIDE_ACCEPTS: dict[str, tuple[dict[str, float], str]] = {
    "vocabulary": ({"guide_class_prob": 0.9}, "validity"),
    # Every photo starts below 4 on the head: an edit it scores ≥ 5 is one it calls a success.
    "aesthetic": ({"guide_aesthetic": 5.0}, "edit_success"),
}
OFFSET = 600_000
#: The benchmark's base configs (the protocol, frozen; in an editable install). The demo configs
#: in configs/demo move to the best measured settings.
BASE_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "benchmark"
REFERENCES_PER_CLASS = 64


def _seeds(split: str, kind: str, app: str) -> int:
    base = SPLITS[f"{split}_{kind}"][0] + OFFSET
    return base + 50_000 * APPS.index(app)


def _save(img, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return str(path)


def _phrase(color: str | None, word: str) -> str:
    text = f"{color} {word}" if color else word
    return f"{article(text)} {text}"


def _text(n: int, split: str, out: Path) -> list[dict]:
    start = _seeds(split, "two", "text")
    items = []
    for i in range(n):
        scene = sample_scene(start + i, n_objects=2)
        (a, b), rel = scene.objects, scene.relation
        items.append(
            {
                "id": f"text_{i:03d}",
                "prompt": f"{_phrase(a.color, a.word)} {rel} {_phrase(b.color, b.word)}",
                "seed": start + i,
                "truth": {
                    "objects": [
                        {"color": a.color, "word": a.word},
                        {"color": b.color, "word": b.word},
                    ],
                    "relation": rel,
                },
            }
        )
    return items


def _vocabulary(n: int, split: str, out: Path) -> list[dict]:
    start = _seeds(split, "one", "vocabulary")
    items = []
    for i in range(n):
        shape = HIDDEN[i % 3]
        obj = sample_scene(start + i, n_objects=1, shape=shape).objects[0]
        items.append(
            {
                "id": f"vocab_{i:03d}",
                "prompt": f"{_phrase(obj.color, 'polygon')}",
                "seed": start + i,
                "class_index": SHAPES.index(shape),
                "truth": {"objects": [{"color": obj.color, "shape": shape}]},
            }
        )
    fid_references(HIDDEN, start + 10_000, out / "fid_reference")
    return items


def fit_run(cfg: dict, run_dir: Path) -> Path:
    """Write ``cfg`` to ``run_dir/run.yaml`` and run `doodl-pl fit` on it (a killed run resumes
    where it stopped; a folder made with other settings is refused). Returns the file."""
    from ..main import main as doodl_main  # the CLI imports the package: not at import time

    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "run.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    doodl_main(["fit", "--config", str(path)])
    return path


def fid_references(shapes: Sequence[str], start: int, out: Path) -> Path:
    """:data:`REFERENCES_PER_CLASS` one-object renders of each shape (the k-th shape's from
    seeds ``start + 100 k + j``) in ``out/<class index>/``: per-class FID's reference set."""
    for k, shape in enumerate(shapes):
        for j in range(REFERENCES_PER_CLASS):
            scene = sample_scene(start + 100 * k + j, n_objects=1, shape=shape)
            _save(render(scene), out / str(SHAPES.index(shape)) / f"{j:03d}.png")
    return out


def _references(start: int, n: int) -> list[Scene]:
    """``n`` one-object scenes from seed ``start`` on whose object has an outline (the entity
    only an image can describe)."""
    refs, seed = [], start
    while len(refs) < n:
        ref = sample_scene(seed, n_objects=1)
        seed += 1
        if ref.objects[0].outline is not None:
            refs.append(ref)
    return refs


def _personalization(n: int, split: str, out: Path) -> list[dict]:
    start = _seeds(split, "one", "personalization")
    items = []
    for i, ref in enumerate(_references(start, n)):
        o = ref.objects[0]
        pair = sample_scene(start + 20_000 + i, n_objects=2)
        second = pair.objects[1]
        if second.color == o.color:
            colors = [c for c in COLORS if c != o.color]
            second = Obj(
                second.shape, colors[i % len(colors)], None, second.r, second.cx, second.cy
            )
        path = _save(render(ref), out / "references" / f"pers_{i:03d}.png")
        items.append(
            {
                "id": f"pers_{i:03d}",
                # Text says what it can (both colours, as the world's two-object captions always
                # do); the outline, never captioned, only the reference image can ask for.
                "prompt": f"{_phrase(o.color, o.word)} {pair.relation} {_phrase(second.color, second.word)}",
                "seed": start + i,
                "reference_images": [path],
                "truth": {
                    "objects": [
                        {"color": o.color, "shape": o.shape, "outline": o.outline},
                        {"color": second.color, "word": second.word},
                    ],
                    "relation": pair.relation,
                    "entity": 0,
                },
            }
        )
    return items


def _personalization_alone(n: int, split: str, out: Path) -> list[dict]:
    """The reference entity alone in a new scene: the prompt names its colour, its shape word and
    a grid cell other than the reference's (the world's one-object caption); the judge asks for
    the entity whole (fill, exact shape, outline) in that cell."""
    start = _seeds(split, "one", "personalization_alone")
    items = []
    for i, ref in enumerate(_references(start, n)):
        o = ref.objects[0]
        seed = start + 20_000 + i * 100
        while True:  # a new position: the centre of another scene, in another cell
            place = sample_scene(seed, n_objects=1).objects[0]
            seed += 1
            where = position_phrase(place.cx, place.cy)
            if where != position_phrase(o.cx, o.cy):
                break
        path = _save(render(ref), out / "references" / f"alone_{i:03d}.png")
        items.append(
            {
                "id": f"alone_{i:03d}",
                "prompt": f"{_phrase(o.color, o.word)} {where}",
                "seed": start + i,
                "reference_images": [path],
                "truth": {
                    "objects": [{"color": o.color, "shape": o.shape, "outline": o.outline}],
                    "position": where,
                    "entity": 0,
                },
            }
        )
    return items


def _aesthetic(n: int, split: str, out: Path, below: float = 4.0) -> list[dict]:
    start = _seeds(split, "one", "aesthetic")
    items, seed = [], start
    for i in range(n):
        while True:  # a low-score "photo"
            scene: Scene = sample_scene(seed, n_objects=1)
            seed += 1
            if scene.aesthetic < below:
                break
        o = scene.objects[0]
        path = _save(render(scene), out / "photos" / f"aes_{i:03d}.png")
        items.append(
            {
                "id": f"aes_{i:03d}",
                "prompt": "",
                "seed": start + i,
                "image": path,
                "aesthetic_target": 10.0,
                "truth": {
                    "objects": [{"color": o.color, "shape": o.shape, "outline": o.outline}],
                    "aesthetic": scene.aesthetic,
                    "edit": True,
                },
            }
        )
    return items


# Each application's item builder: (n, split, out folder) → item dicts.
ITEM_BUILDERS = {
    "text": _text,
    "vocabulary": _vocabulary,
    "personalization": _personalization,
    "aesthetic": _aesthetic,
    "personalization_alone": _personalization_alone,
}


def build_items(app: str, n: int, split: str, out: str | Path) -> Path:
    """Write ``out/items.jsonl`` (and the reference images the app needs); returns its path."""
    if app not in APPS:
        raise ValueError(f"unknown application {app!r}; choose from {APPS}")
    if split not in ("eval", "tune"):
        raise ValueError(f"split must be 'eval' or 'tune', got {split!r}")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    items = ITEM_BUILDERS[app](n, split, out)
    return write_items(items, out / "items.jsonl")


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
