"""One DOODL step at each backbone's real size, through `doodl-pl fit`, on the CPU (slow).

Random weights in the published architectures (``doodl_pl.real_size``): SD 1.5 at 512² with
the CLIP text loss (ViT-L/14, 16 cuts) and a timm ResNet-50 classifier loss, SD 2.1
(v-prediction) at 768² and SDXL at 1024² with the CLIP text loss; CFG 7.5, T = 1 (memory is
flat in T under the reversible engine). float32: this CPU computes float16 about 100x slower
than float32, so the dtype a GPU user runs is sized by `scripts/size_step.py`. With float32
weights every run needs the checkpointing levers to fit a 24 GiB machine; SDXL at 1024²
(estimate 23 GiB with BDIA) needs more memory than that and is skipped on smaller machines,
so SDXL's architecture also runs at 768².

    .venv/bin/python -m pytest -m slow tests/test_real_size.py -s      # about 45 min, 2 cores

Each run prints its wall time and peak resident memory next to the sizing tool's estimate for
the same setting. Set DOODL_REAL_SIZE_CACHE to a directory to keep the built checkpoints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

LEVERS = {"unet_checkpointing": True, "vae_checkpointing": True}
# id: (backbone, image side, sampler, classifier guide too)
RUNS = {
    "sd15-512": ("sd15", 512, "edict", True),
    "sd21-768": ("sd21", 768, "edict", False),
    "sdxl-1024": ("sdxl", 1024, "bdia", False),
    "sdxl-768": ("sdxl", 768, "bdia", False),
}


def _ram_gb() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    root = os.environ.get("DOODL_REAL_SIZE_CACHE")
    return Path(root) if root else tmp_path_factory.mktemp("real_size")


def _assets(cache: Path, run: str) -> dict[str, str]:
    from doodl_pl.real_size import save_classifier_guide, save_clip_guide, save_pipeline

    kind, size, _, _ = RUNS[run]
    pipe = cache / run
    if not (pipe / "model_index.json").exists():
        save_pipeline(kind, pipe, image_size=size)
    cfg, weights = cache / "real-vit-l-14.json", cache / "real-vit-l-14.safetensors"
    if not weights.exists():
        cfg, weights = save_clip_guide(cache)
    classifier = cache / "resnet50.safetensors"
    if not classifier.exists():
        save_classifier_guide(classifier)
    return {"pipe": str(pipe), "clip_cfg": str(cfg), "clip_w": str(weights),
            "classifier": str(classifier)}  # fmt: skip


def _config(run: str, assets: dict[str, str], out: Path) -> dict:
    kind, _, sampler, classifier = RUNS[run]
    cls = "StableDiffusionXL" if kind == "sdxl" else "StableDiffusion"
    clip = {"name": assets["clip_cfg"], "pretrained": assets["clip_w"], "checkpointing": True}
    losses = [{"class_path": "doodl_pl.losses.CLIPTextLoss",
               "init_args": {"models": [clip], "n_cuts": 16}}]  # fmt: skip
    if classifier:
        losses.append({
            "class_path": "doodl_pl.losses.ClassifierLoss",
            "init_args": {"model_name": "resnet50", "checkpoint_path": assets["classifier"],
                          "num_classes": 1000, "target": 1, "checkpointing": True},
        })  # fmt: skip
    return {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "logger": False},
        "model": {
            "class_path": "doodl_pl.modules.DoodlModule",
            "init_args": {
                "backbone": {"class_path": f"doodl_pl.backbones.{cls}",
                             "init_args": {"pretrained": assets["pipe"], "local_files_only": True,
                                           **LEVERS}},
                "loss": losses,
                "sampler": sampler,
                "opt_steps": 1,
                "num_inference_steps": 1,
                "guidance_scale": 7.5,
                "keep_best": False,
                "output_dir": str(out),
            },
        },  # fmt: skip
        "data": {"class_path": "doodl_pl.data.DoodlDataModule",
                 "init_args": {"inline": [{"id": "a", "prompt": "a red cube on a blue sphere",
                                           "seed": 3}]}},
    }  # fmt: skip


_RUNNER = (
    "import resource, runpy, sys\n"
    "sys.argv = ['doodl-pl', 'fit', '--config', sys.argv[1]]\n"
    "try:\n"
    "    runpy.run_module('doodl_pl', run_name='__main__')\n"
    "finally:\n"
    "    print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)\n"
)


@pytest.mark.parametrize("run", list(RUNS))
def test_one_doodl_step_at_real_size_through_the_cli(run, cache, tmp_path):
    from doodl_pl.sizing import Setting, measure_step

    kind, size, sampler, classifier = RUNS[run]
    est = measure_step(
        Setting(kind, "float32", sampler=sampler, steps=1, classifier=classifier,
                guide_checkpointing=True, image_size=size, **LEVERS)
    )  # fmt: skip
    if est["total_gb"] + 2 > _ram_gb():
        pytest.skip(f"{run} needs about {est['total_gb']:.0f} GiB in float32; {_ram_gb():.0f} here")
    assets = _assets(cache, run)
    out = tmp_path / "out"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(_config(run, assets, out)))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(cfg)], capture_output=True, text=True, timeout=5400
    )
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["status"] for r in lines] == ["ok"], lines
    from PIL import Image

    assert Image.open(out / "images" / "a.png").size == (size, size)
    for key in ("loss_start", "loss_end"):
        assert lines[0][key] is not None and lines[0][key] == lines[0][key]  # finite, not NaN
    rss_gb = int(proc.stdout.split("MAXRSS_KB")[-1].split()[0]) / 2**20
    print(
        f"\n{run}: {seconds:.0f} s for the run (1 step + start/end images), peak RSS "
        f"{rss_gb:.2f} GiB; sizing estimate {est['total_gb']:.2f} GiB (weights "
        f"{est['weights_gb']:.2f}, graph {est['graph_gb']:.2f}), {est['step_tflop']:.1f} TFLOP"
        f"/step"
    )
