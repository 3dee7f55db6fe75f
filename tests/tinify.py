"""Turn a real-model config into one that runs on the tiny random components, keeping its shape."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from doodl_pl.data.items import read_items

ROOT = Path(__file__).resolve().parents[1]


def tinify(
    config: Path,
    assets: dict[str, str],
    out: Path,
    opt_steps: int = 2,
    steps: int = 3,
    limit: int = 2,
) -> Path:
    cfg = yaml.safe_load(config.read_text())
    m = cfg["model"]["init_args"]
    xl = m["backbone"]["class_path"].endswith("StableDiffusionXL")
    m["backbone"]["init_args"] = {"pretrained": assets["sdxl" if xl else "sd"], "dtype": "float32"}
    m["num_inference_steps"] = steps
    m["output_dir"] = str(out)
    if "opt_steps" in m:
        m["opt_steps"] = opt_steps
    if "match_opt_steps" in m:
        m["match_opt_steps"] = 1
        m["candidate_batch"] = 2
    for loss in m.get("loss") or []:
        ia = loss.setdefault("init_args", {})
        if "models" in ia:
            ia["models"] = [
                {
                    "name": assets["clip_cfg"],
                    "pretrained": assets["clip_w"],
                    "weight": spec.get("weight", 1.0),
                }
                for spec in ia["models"]
            ]
            ia["n_cuts"] = 2
        if "clip" in ia:
            ia["clip"] = {"name": assets["clip_cfg"], "pretrained": assets["clip_w"]}
        if "head_path" in ia:
            ia["head_path"] = assets["head"]
        if "checkpoint_path" in ia:
            ia.update(
                model_name="resnet10t",
                checkpoint_path=assets["classifier"],
                num_classes=5,
                input_size=32,
            )
    trainer = cfg.setdefault("trainer", {})
    trainer["accelerator"] = "cpu"
    trainer["enable_progress_bar"] = False
    data_cfg = cfg["data"]["init_args"]
    data_cfg["batch_size"] = min(data_cfg.get("batch_size", 1), 2)
    if isinstance(trainer.get("logger"), dict):
        trainer["logger"]["init_args"]["save_dir"] = str(out)
    data = cfg["data"]["init_args"]
    if "items" in data:
        items = []
        for it in read_items(ROOT / data["items"])[:limit]:
            d = {"id": it.id, "prompt": it.prompt, "seed": it.seed}
            if it.class_index is not None:
                d["class_index"] = it.class_index % 5
            if it.reference_images:
                d["reference_images"] = [assets["image"]]
            if it.image:
                d["image"] = assets["image"]
            if it.aesthetic_target is not None:
                d["aesthetic_target"] = it.aesthetic_target
            items.append(d)
        items_file = out.parent / f"{out.name}_items.jsonl"
        items_file.write_text("".join(json.dumps(d) + "\n" for d in items))
        data["items"] = str(items_file)
    else:
        data["prompts"] = str(ROOT / data["prompts"])
        data["seeds"] = "0-0"
        data["limit"] = limit
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
