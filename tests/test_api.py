"""The notebook API: one call, the same run as the CLI's."""

import numpy as np
from helpers import backbone, fit, items

import doodl_pl
from doodl_pl.losses import ColorLoss
from doodl_pl.modules import DoodlModule


def test_run_returns_each_items_record_and_image_as_fit_writes_them(tiny_assets, tmp_path):
    def module(out):
        return DoodlModule(
            backbone(tiny_assets), loss=ColorLoss((1.0, 0.0, 0.0)), num_inference_steps=3,
            opt_steps=2, guidance_scale=3.0, output_dir=str(out),
        )  # fmt: skip

    its = items(3)
    results = doodl_pl.run(module(tmp_path / "api"), its, batch_size=2, accelerator="cpu",
                           enable_progress_bar=False)  # fmt: skip
    assert [r["id"] for r in results] == [it["id"] for it in its]
    ref = fit(module(tmp_path / "fit"), its, batch_size=2)
    for r in results:
        assert r["status"] == "ok" and r["losses"] == ref[r["id"]]["losses"]
        png = np.asarray(r["image"])
        assert png.shape == (16, 16, 3)
        from PIL import Image

        want = np.asarray(Image.open(tmp_path / "fit" / "images" / f"{r['id']}.png").convert("RGB"))
        assert np.array_equal(png, want)
    again = doodl_pl.run(module(tmp_path / "api"), its, enable_progress_bar=False)
    assert [r["losses"] for r in again] == [r["losses"] for r in results]  # finished: reread
