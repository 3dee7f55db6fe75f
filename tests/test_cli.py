import json
from argparse import ArgumentError

import pytest
import yaml
from helpers import ROOT, tinify
from PIL import Image

from doodl_pl.main import main

CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


def test_configs_exist():
    names = {p.name for p in CONFIGS}
    assert {
        "text_sd15.yaml",
        "text_sd21.yaml",
        "text_sdxl.yaml",
        "vocab_timm.yaml",
        "personalization_clip.yaml",
        "aesthetic_edit.yaml",
        "baseline_vanilla.yaml",
        "baseline_one_step.yaml",
        "baseline_best_of_n.yaml",
    } <= names


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_config_parses(config, capsys):
    from doodl_pl.shapes64.train import main as train_main

    entry = train_main if config.name.startswith("train_") else main
    with pytest.raises(SystemExit) as exc:
        entry(["fit", "--config", str(config), "--print_config"])
    assert exc.value.code == 0
    assert "class_path" in capsys.readouterr().out


@pytest.mark.parametrize(
    "config",
    [p for p in CONFIGS if p.parent.name in ("configs", "demo")],
    ids=lambda p: str(p.relative_to(ROOT / "configs").with_suffix("")),
)
def test_fit_end_to_end(config, tiny_assets, tmp_path):
    out = tmp_path / "run"
    cli = main(["fit", "--config", str(tinify(config, tiny_assets, out))])
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
    assert len({r["id"] for r in rows}) == 2
    for r in rows:
        img = Image.open(out / "images" / f"{r['id']}.png")
        assert img.size == (16, 16)
        assert img.text["seed"] == str(r["seed"]) and img.text["prompt"] == r["prompt"]
        assert "class_path" in img.text["config"]
        assert r["unet_calls"] > 0 and r["wall_s"] > 0
    if cli.model.method == "doodl":
        assert all(len(r["losses"]) == 3 for r in rows)  # m = 2 steps + the final image
        assert (out / "trajectories").is_dir()


def test_rerun_with_a_changed_item_is_refused_and_loses_nothing(tiny_assets, tmp_path):
    """An item already written that now has another prompt would keep its old image: refused,
    naming the item and the field; a new id for it is run."""
    from doodl_pl.data import ItemsError

    out = tmp_path / "run"
    config = tinify(ROOT / "configs" / "demo" / "text_vanilla.yaml", tiny_assets, out)
    main(["fit", "--config", str(config)])
    before = (out / "manifest.jsonl").read_text()
    cfg = yaml.safe_load(config.read_text())
    items = [json.loads(x) for x in open(cfg["data"]["init_args"]["items"])][:2]
    items[0]["prompt"] = "a purple cross"
    changed = tmp_path / "changed.jsonl"
    changed.write_text("".join(json.dumps(it) + "\n" for it in items))
    with pytest.raises(
        ItemsError, match=rf"changed.jsonl: item '{items[0]['id']}': `prompt`.*manifest.jsonl"
    ):
        main(["fit", "--config", str(config), "--data.init_args.items", str(changed)])
    assert (out / "manifest.jsonl").read_text() == before
    items[0]["id"] = "renamed"
    changed.write_text("".join(json.dumps(it) + "\n" for it in items))
    main(["fit", "--config", str(config), "--data.init_args.items", str(changed)])
    rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows if r["id"] == "renamed"] == ["a purple cross"]


def test_rerun_with_changed_settings_is_refused_and_loses_nothing(tiny_assets, tmp_path):
    """A rerun resumes only with the settings its finished items were made with."""
    out = tmp_path / "run"
    config = tinify(ROOT / "configs" / "demo" / "text_vanilla.yaml", tiny_assets, out)
    main(["fit", "--config", str(config)])
    before = (out / "manifest.jsonl").read_text()
    main(["fit", "--config", str(config), "--model.init_args.retry_failed", "true"])  # neutral
    with pytest.raises(ValueError, match=r"`output_dir`.*guidance_scale") as err:
        main(["fit", "--config", str(config), "--model.init_args.guidance_scale", "1.5"])
    assert err.value.__notes__ == ["config: `model.init_args.output_dir`"]
    assert (out / "manifest.jsonl").read_text() == before
    assert "guidance_scale" in (out / "config.yaml").read_text()
    main(["fit", "--config", str(config), "--model.init_args.guidance_scale", "1.5",
          "--model.init_args.output_dir", str(tmp_path / "new")])  # fmt: skip
    assert (tmp_path / "new" / "manifest.jsonl").is_file()
    # A folder made before an option existed (its config.yaml lacks the key) resumes while the
    # option keeps its default, and is refused once the option is set otherwise.
    saved = yaml.safe_load((out / "config.yaml").read_text())
    model = saved.get("fit", saved)["model"]["init_args"]
    assert (
        model.pop("sampler") == "bdia"
        and model["backbone"]["init_args"].pop("compile_unet") is False
    )
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(ValueError, match=r"sampler: None → 'bdia'"):
        main(["fit", "--config", str(config)])
    assert (out / "manifest.jsonl").read_text() == before
    main(["fit", "--config", str(config), "--model.init_args.sampler", "edict"])  # the default
    assert (out / "manifest.jsonl").read_text() == before


def test_resume_compares_against_the_settings_a_folder_was_made_with(tiny_assets, tmp_path):
    """A folder records every resolved option (defaults and nulls included). A folder from before
    ``keep_best`` existed was made with last-iterate output: resuming it with today's default
    (best iterate) is refused, resuming it with ``keep_best: false`` is not."""
    out = tmp_path / "run"
    config = tinify(ROOT / "configs" / "demo" / "text.yaml", tiny_assets, out, limit=1)
    main(["fit", "--config", str(config)])
    text = (out / "config.yaml").read_text()
    assert text.startswith("# doodl_pl run settings")
    saved = yaml.safe_load(text)
    model = saved.get("fit", saved)["model"]["init_args"]
    assert model["keep_best"] is True and "inversion_prompt" in model
    assert "revision" in model["backbone"]["init_args"]  # a null default, recorded too
    before = (out / "manifest.jsonl").read_text()
    # The same folder as a run from before the option existed would have left it.
    model.pop("keep_best")
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(
        ValueError, match=r"keep_best: False \(the default before 2026-12-01\) → True"
    ):
        main(["fit", "--config", str(config)])
    assert (out / "manifest.jsonl").read_text() == before
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    main(["fit", "--config", str(config), "--model.init_args.keep_best", "false"])
    resumed = yaml.safe_load((out / "config.yaml").read_text())
    assert resumed.get("fit", resumed)["model"]["init_args"]["keep_best"] is False


def test_sampler_as_configured_object_equals_its_short_name(tiny_assets, tmp_path):
    """``sampler: {class_path: doodl_pl.sampling.Bdia, init_args: {gamma: …}}`` runs the same
    chain as ``sampler: bdia`` with the module's ``gamma``: bitwise equal images."""
    images = {}
    for form in ("name", "object"):
        out = tmp_path / form
        config = tinify(ROOT / "configs" / "demo" / "text_vanilla.yaml", tiny_assets, out, limit=2)
        if form == "name":
            args = ["--model.init_args.sampler", "bdia", "--model.init_args.gamma", "0.9"]
        else:
            spec = {"class_path": "doodl_pl.sampling.Bdia", "init_args": {"gamma": 0.9}}
            args = ["--model.init_args.sampler", json.dumps(spec)]
        main(["fit", "--config", str(config), *args])
        images[form] = sorted((out / "images").glob("*.png"))
        lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
        assert [r["sampler"] for r in lines] == ["bdia", "bdia"]
    assert [p.name for p in images["name"]] == [p.name for p in images["object"]]
    for a, b in zip(images["name"], images["object"], strict=True):
        assert Image.open(a).tobytes() == Image.open(b).tobytes()
    with pytest.raises((ValueError, ArgumentError), match="heun"):  # the config parser refuses it
        config = tinify(ROOT / "configs" / "demo" / "text_vanilla.yaml", tiny_assets, tmp_path)
        main(["fit", "--config", str(config), "--model.init_args.sampler", "heun"])


def test_one_command_line_lists_and_runs_its_commands(tiny_assets, tmp_path, capsys):
    from doodl_pl.main import COMMANDS

    main([])
    listing = capsys.readouterr().out
    assert all(name in listing for name in ("fit", "evaluate", "grid", "train", "benchmark"))
    assert set(COMMANDS) == {"fit", "evaluate", "grid", "train", "benchmark"}
    for command in ("evaluate", "grid", "train", "benchmark"):
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
        assert "usage:" in capsys.readouterr().out
    out = tmp_path / "run"
    main(["fit", "--config", str(tinify(ROOT / "configs" / "demo" / "text_vanilla.yaml",
                                        tiny_assets, out, limit=2))])  # fmt: skip
    main(["grid", str(out), str(out), "--out", str(tmp_path / "grid.png")])
    assert Image.open(tmp_path / "grid.png").size[0] > 0
