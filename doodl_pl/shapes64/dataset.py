"""Rendered Shapes-64 datasets, cached on disk as ``.npz`` (images) + ``.jsonl`` (records)."""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from .render import render
from .world import Obj, Scene, sample_scene

__all__ = ["SPLITS", "cache_dir", "load_split", "scene_from_record"]

# name: (first seed, forced n_objects or None). Seeds of different splits never overlap.
SPLITS = {
    "train": (0, None),
    "train_one": (1_000_000, 1),
    "eval_one": (2_000_000, 1),
    "eval_two": (3_000_000, 2),
    "tune_one": (4_000_000, 1),
    "tune_two": (5_000_000, 2),
}


def cache_dir() -> Path:
    return Path(os.environ.get("DOODL_PL_CACHE", Path.home() / ".cache" / "doodl_pl")) / "shapes64"


def _render_range(args):
    start, stop, n_objects = args
    images, records = [], []
    for seed in range(start, stop):
        scene = sample_scene(seed, n_objects=n_objects)
        images.append(render(scene))
        rec = scene.record()
        rec["seed"] = seed
        records.append(rec)
    return np.stack(images), records


def load_split(name: str, n: int, workers: int = 2, root: Path | None = None):
    """``(images uint8 (n, 64, 64, 3), records)`` of the first ``n`` seeds of split ``name``."""
    first, n_objects = SPLITS[name]
    root = root or cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    stem = root / f"{name}_{n}"
    # Exactly `<name>_<n>`: "train_*" also matches "train_one_20000", another split's cache.
    pattern = re.compile(rf"{re.escape(name)}_(\d+)")
    cached = sorted(
        (int(m.group(1)), p.with_suffix(""))
        for p in root.glob(f"{name}_*.npz")
        if (m := pattern.fullmatch(p.stem)) and p.with_suffix(".jsonl").is_file()
    )
    for size, path in cached:
        if size >= n:  # a larger cache of the same split starts with the same seeds
            images = np.load(path.with_suffix(".npz"))["images"][:n]
            lines = path.with_suffix(".jsonl").read_text().splitlines()[:n]
            return images, [json.loads(line) for line in lines]
    chunk = max(1, n // (workers * 8))
    jobs = [(first + s, first + min(n, s + chunk), n_objects) for s in range(0, n, chunk)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_render_range, jobs))
    else:
        parts = [_render_range(j) for j in jobs]
    images = np.concatenate([p[0] for p in parts])
    records = [r for p in parts for r in p[1]]
    tmp = stem.with_name(stem.name + ".tmp.npz")
    np.savez(tmp, images=images)
    os.replace(tmp, stem.with_suffix(".npz"))
    stem.with_suffix(".jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return images, records


def scene_from_record(rec: dict) -> Scene:
    objs = [
        Obj(o["shape"], o["color"], o["outline"], o["r"], o["cx"], o["cy"]) for o in rec["objects"]
    ]
    return Scene(rec["background"], objs, rec["relation"], rec["caption"], rec["aesthetic"])
