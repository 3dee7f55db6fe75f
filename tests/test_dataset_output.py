"""Each run folder is a Hugging Face ``imagefolder`` data set (``metadata.jsonl``)."""

import json

import datasets
import numpy as np
import pytest
from doodl_pl.callbacks import ImageLogger
from helpers import backbone, fit, items
from PIL import Image

from doodl_pl.losses import ColorLoss
from doodl_pl.modules import DoodlModule
from doodl_pl.outputs import OutputWriter


def test_run_folder_loads_with_datasets(tiny_assets, tmp_path):
    its = [
        {"id": "a", "prompt": "a red circle", "seed": 3, "class_index": 1},
        {"id": "b", "prompt": "a blue star", "seed": 4, "class_index": 2},
        {"id": "c", "prompt": "bad", "seed": 5, "class_index": 0},
    ]
    module = DoodlModule(
        backbone(tiny_assets), loss=NanForBad(), num_inference_steps=3, opt_steps=2,
        guidance_scale=3.0, output_dir=str(tmp_path),
    )  # fmt: skip
    rows = fit(module, its, batch_size=3, callbacks=[ImageLogger(every_n_steps=1)])
    assert rows["c"]["status"] == "failed" and (tmp_path / "trajectories").is_dir()
    ds = datasets.load_dataset("imagefolder", data_dir=str(tmp_path), split="train")
    assert sorted(ds["id"]) == ["a", "b"]  # the failed item has no image, trajectories are not rows
    for row in ds:
        item = next(it for it in its if it["id"] == row["id"])
        assert (row["prompt"], row["seed"], row["class_index"]) == (
            item["prompt"], item["seed"], item["class_index"]
        )  # fmt: skip
        assert row["status"] == "ok" and row["loss_end"] == pytest.approx(
            rows[row["id"]]["loss_end"]
        )
        png = np.asarray(Image.open(tmp_path / "images" / f"{row['id']}.png").convert("RGB"))
        assert np.array_equal(np.asarray(row["image"].convert("RGB")), png)


class NanForBad(ColorLoss):
    def forward(self, images, ctx):
        out = super().forward(images, ctx)
        bad = [p == "bad" for p in ctx.batch["prompt"]]
        return out * out.new_tensor([float("nan") if b else 1.0 for b in bad])


def test_prepare_drops_metadata_of_unfinished_items(tmp_path):
    """A run killed between an image's metadata line and its manifest line leaves a line with no
    finished item; the rerun's prepare() drops it, and a retried item keeps only its last line."""
    w = OutputWriter(tmp_path)
    w.prepare()
    w.append_metadata("a", {"id": "a", "loss_end": 1.0})
    w.append({"id": "a", "status": "ok"})
    w.append_metadata("b", {"id": "b"})  # killed here: no manifest line for b
    w.append_metadata("a", {"id": "a", "loss_end": 0.5})  # a retried item
    OutputWriter(tmp_path).prepare()
    lines = [json.loads(x) for x in (tmp_path / "metadata.jsonl").read_text().splitlines()]
    assert lines == [{"file_name": "images/a.png", "id": "a", "loss_end": 0.5}]


def test_tensorboard_gets_loss_curves_trajectories_and_run_metrics(tiny_assets, tmp_path):
    """With a TensorBoardLogger: one loss curve per item (a value per iterate), the trajectory
    grid as an image, and the run-level metrics once; a CSVLogger beside it gets the same
    scalars."""
    import csv

    from doodl_pl.callbacks import StepMetrics
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    module = DoodlModule(
        backbone(tiny_assets), loss=ColorLoss(), num_inference_steps=3, opt_steps=3,
        guidance_scale=3.0, output_dir=str(tmp_path / "run"),
    )  # fmt: skip
    logger = TensorBoardLogger(str(tmp_path), name="logs")
    csv_logger = CSVLogger(str(tmp_path), name="csv")
    rows = fit(
        module, items(2), batch_size=2, logger=[logger, csv_logger],
        callbacks=[StepMetrics(), ImageLogger(every_n_steps=1)],
    )  # fmt: skip
    ev = EventAccumulator(logger.log_dir, size_guidance={"images": 0, "scalars": 0})
    ev.Reload()
    tags = ev.Tags()
    for key, r in rows.items():
        curve = [e.value for e in ev.Scalars(f"loss/{key}")]
        assert curve == pytest.approx(r["losses"][:-1], rel=1e-5)  # the iterates before the last
        assert f"trajectory/{key}" in tags["images"]
    assert [e.value for e in ev.Scalars("run/items")] == [2.0]
    with open(f"{csv_logger.log_dir}/metrics.csv") as f:
        table = list(csv.DictReader(f))
    assert [float(r["loss/it0"]) for r in table if r.get("loss/it0")] == pytest.approx(
        rows["it0"]["losses"][:-1], rel=1e-5
    )
    assert [float(r["run/items"]) for r in table if r.get("run/items")] == [2.0]
    run = json.loads((tmp_path / "run" / "run_metrics.json").read_text())
    starts = [r["loss_start"] for r in rows.values()]
    assert run["loss_start"] == pytest.approx(sum(starts) / 2) and run["failed"] == 0
