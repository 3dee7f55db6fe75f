"""Killed runs, determinism, bad input and safe loading."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from argparse import ArgumentError

import numpy as np
import pytest
import torch
import yaml
from helpers import ROOT, tinify
from PIL import Image

from doodl_pl.data import DoodlDataModule, ImageLoadError, load_image
from doodl_pl.hub import ModelLoadError
from doodl_pl.main import explain, main
from doodl_pl.utils import UnsafeWeightsError, load_weights

TEXT = ROOT / "configs" / "text_sd15.yaml"


def env():
    return dict(os.environ, PYTHONPATH=str(ROOT / "tests"), OMP_NUM_THREADS="1")


def manifest_lines(out):
    path = out / "manifest.jsonl"
    return path.read_text().splitlines() if path.exists() else []


def test_sigkill_then_rerun_finishes_everything(tiny_assets, tmp_path):
    """Killed at a random moment after 1–3 finished items (a new moment every run; the message
    says which), the rerun completes the rest and keeps what was done."""
    rng = random.SystemRandom()
    after, delay = rng.randint(1, 3), rng.uniform(0.0, 1.0)
    where = f"killed {delay:.2f} s after {after} finished item(s)"
    out = tmp_path / "run"
    config = tinify(TEXT, tiny_assets, out, opt_steps=6, limit=8)
    cmd = [sys.executable, "-m", "doodl_pl", "fit", "--config", str(config)]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while len(manifest_lines(out)) < after and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = manifest_lines(out)
    assert after <= len(before) < 8, f"the run must be killed midway ({where})"
    for line in before:  # no half-written line, and each line's PNG is complete
        row = json.loads(line)
        with Image.open(out / "images" / f"{row['id']}.png") as im:
            im.load()
    for png in (out / "images").glob("*.png"):
        with Image.open(png) as im:
            im.load()
    subprocess.run(cmd, cwd=ROOT, env=env(), check=True, capture_output=True, timeout=600)
    final = manifest_lines(out)
    assert final[: len(before)] == before, where  # finished items were not recomputed
    ids = [json.loads(line)["id"] for line in final]
    assert len(ids) == 8 and len(set(ids)) == 8, where
    assert not list((out / "images").glob(".*.tmp"))
    # metadata.jsonl (the data-set view) has one line per finished image: none lost, none twice
    meta = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    names = [m["file_name"] for m in meta]
    assert sorted(names) == sorted(f"images/{i}.png" for i in ids), where
    assert all((out / n).is_file() for n in names)


def test_rerun_is_bitwise_identical(tiny_assets, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    main(["fit", "--config", str(tinify(TEXT, tiny_assets, a))])
    main(["fit", "--config", str(tinify(TEXT, tiny_assets, b))])
    ra = [json.loads(x) for x in manifest_lines(a)]
    rb = [json.loads(x) for x in manifest_lines(b)]
    assert [r["losses"] for r in ra] == [r["losses"] for r in rb]
    for r in ra:
        pa = np.asarray(Image.open(a / "images" / f"{r['id']}.png"))
        pb = np.asarray(Image.open(b / "images" / f"{r['id']}.png"))
        assert np.array_equal(pa, pb)


def test_nan_items_exit_code(tiny_assets, tmp_path):
    out = tmp_path / "run"
    cfg = yaml.safe_load(tinify(TEXT, tiny_assets, out).read_text())
    cfg["model"]["init_args"]["loss"] = [
        {
            "class_path": "doodl_pl.losses.CallableLoss",
            "init_args": {"function": "helpers.nan_loss"},
        }
    ]
    path = tmp_path / "nan.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [sys.executable, "-m", "doodl_pl", "fit", "--config", str(path)],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    rows = [json.loads(x) for x in manifest_lines(out)]
    assert len(rows) == 2 and all(r["status"] == "failed" and r["reason"] for r in rows)
    assert "failed" in proc.stderr


# -- images -------------------------------------------------------------------------------------
def test_image_modes_are_converted(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:4, :, 3] = 255  # top half opaque red, bottom half transparent -> white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png")
    assert torch.allclose(x[:, 0, 0], torch.tensor([1.0, 0, 0]))
    assert torch.allclose(x[:, 7, 0], torch.ones(3))

    Image.fromarray(np.full((6, 6), 128, np.uint8), "L").save(tmp_path / "g.png")
    g = load_image(tmp_path / "g.png")
    assert g.shape == (3, 6, 6) and torch.allclose(g, torch.full_like(g, 128 / 255))

    Image.fromarray(np.full((5, 5), 65535 // 2, np.uint16)).save(tmp_path / "d.png")
    d = load_image(tmp_path / "d.png")
    assert d.shape == (3, 5, 5) and abs(float(d.mean()) - 0.5) < 0.01


def test_exif_rotation_applied(tmp_path):
    arr = np.zeros((4, 8, 3), np.uint8)
    arr[:, :4] = (255, 0, 0)  # left half red, landscape 8x4
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    img.save(tmp_path / "r.jpg", exif=exif, quality=100)
    x = load_image(tmp_path / "r.jpg")
    assert x.shape == (3, 8, 4)  # displayed upright: portrait
    assert x[0, 1, 2] > 0.8 and x[0, 6, 2] < 0.3  # red half is now on top


def test_missing_and_corrupt_images_named(tmp_path):
    with pytest.raises(ImageLoadError, match=r"nope\.png.*does not exist"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageLoadError, match=r"bad\.png.*corrupt"):
        load_image(tmp_path / "bad.png")
    dm = DoodlDataModule(inline=[{"id": "e1", "image": str(tmp_path / "bad.png")}])
    with pytest.raises(ImageLoadError, match=r"item 'e1' `image`.*bad\.png"):
        dm.setup("fit")


# -- config errors ------------------------------------------------------------------------------
def _config(tiny_assets, tmp_path, **model):
    cfg = yaml.safe_load(tinify(TEXT, tiny_assets, tmp_path / "o").read_text())
    cfg["model"]["init_args"].update(model)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(
    "bad,expected",
    [
        ({"mix": 1.3}, "`mix` must be in (0, 1], got 1.3 (config: `model.init_args.mix`)"),
        ({"num_inference_steps": 0}, "config: `model.init_args.num_inference_steps`"),
        ({"guidance_scale": -2.0}, "`guidance_scale` must be >= 0, got -2.0 (config: `model."),
        ({"opt_steps": 0}, "`opt_steps` must be >= 1, got 0 (config: `model.init_args.opt_steps`)"),
        ({"mixx": 0.5}, "unknown config key `model.init_args.mixx`"),
    ],
)
def test_config_errors_name_the_key(tiny_assets, tmp_path, bad, expected):
    with pytest.raises((ValueError, ArgumentError)) as exc:
        main(["fit", "--config", str(_config(tiny_assets, tmp_path, **bad))])
    assert expected in explain(exc.value)


def _console(args, monkeypatch, capsys) -> str:
    """Run ``doodl-pl ARGS`` as the console does; return its one error line (exit status 2)."""
    monkeypatch.setattr(sys, "argv", ["doodl-pl", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("doodl-pl:")]
    assert len(lines) == 1, lines
    return lines[0]


def test_each_kind_of_bad_input_prints_one_line_naming_it(
    tiny_assets, tmp_path, monkeypatch, capsys
):
    """Items file (file and line), image (item and path), config key and value (config path),
    model path (the key and how to pass a local path): the printed line says where."""
    config = tinify(TEXT, tiny_assets, tmp_path / "o")
    cfg = yaml.safe_load(config.read_text())
    items = tmp_path / "bad_items.jsonl"
    items.write_text('{"id": "a", "prompt": "x", "seed": 1}\n{"id": "b", "seed": "abc"}\n')
    use = ["--data.init_args.prompts", "null", "--data.init_args.items"]
    line = _console(["fit", "--config", str(config), *use, str(items)], monkeypatch, capsys)
    assert f"{items}:2" in line and "`seed`" in line
    edit = tmp_path / "edit_items.jsonl"
    edit.write_text('{"id": "e1", "prompt": "x", "image": "missing.png"}\n')
    line = _console(["fit", "--config", str(config), *use, str(edit)], monkeypatch, capsys)
    assert "item 'e1' `image`" in line and "missing.png" in line
    line = _console(["fit", "--config", str(config), "--model.init_args.opt_stepz", "3"],
                    monkeypatch, capsys)  # fmt: skip
    assert "unknown config key `model.init_args.opt_stepz`" in line
    line = _console(["fit", "--config", str(config), "--model.init_args.gamma", "2"],
                    monkeypatch, capsys)  # fmt: skip
    assert "`gamma` must be in (0, 1], got 2.0" in line
    assert "config: `model.init_args.gamma`" in line
    line = _console(["fit", "--config", str(config), "--data.init_args.batch_size", "0"],
                    monkeypatch, capsys)  # fmt: skip
    assert line == (
        "doodl-pl: error: `batch_size` must be >= 1, got 0 (config: `data.init_args.batch_size`)"
    )
    missing = str(tmp_path / "no_such_model")
    args = ["fit", "--config", str(config), "--model.init_args.backbone.init_args.pretrained"]
    line = _console([*args, missing], monkeypatch, capsys)
    assert "no_such_model" in line and "local file or directory" in line
    assert "config: `model.init_args.backbone.init_args.pretrained`" in line
    loss = cfg["model"]["init_args"]["loss"][0]["class_path"].rpartition(".")[2]
    # a loss argument is located inside the loss list, not at the model's top level
    assert loss == "CLIPTextLoss"
    bad_cfg = tmp_path / "bad_loss.yaml"
    cfg["model"]["init_args"]["loss"][0]["init_args"]["min_cut"] = 7.0
    bad_cfg.write_text(yaml.safe_dump(cfg))
    line = _console(["fit", "--config", str(bad_cfg)], monkeypatch, capsys)
    assert "`min_cut`" in line and "config: `model.init_args.loss[0].init_args.min_cut`" in line


def test_offline_model_id_says_how_to_pass_a_path(monkeypatch):
    from doodl_pl.backbones import StableDiffusion

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="could not be fetched.*local file or directory"):
        StableDiffusion("someorg/not-a-real-model")


# -- safe loading -------------------------------------------------------------------------------
class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_code_payload_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"weight": torch.zeros(1), "evil": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(UnsafeWeightsError, match="refusing to load"):
        load_weights(tmp_path / "evil.pt")
    import timm

    with pytest.raises(Exception):  # noqa: B017 - timm's own weights_only refusal
        timm.create_model("resnet10t", num_classes=5, checkpoint_path=str(tmp_path / "evil.pt"))
    assert not marker.exists()
    torch.save({"weight": torch.ones(2)}, tmp_path / "ok.pt")
    assert torch.equal(load_weights(tmp_path / "ok.pt")["weight"], torch.ones(2))


def test_no_trust_remote_code_anywhere():
    for path in list((ROOT / "doodl_pl").rglob("*.py")) + list((ROOT / "callbacks").rglob("*.py")):
        assert "trust_remote_code" not in path.read_text(), path
