"""`doodl-pl evaluate`: statistics, FID, Shapes-64 ground-truth checks and the command itself.

The Shapes-64 checks are judged on exact renders whose truth is known: right truth must pass,
deliberately wrong truth must fail.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml
from helpers import ROOT
from PIL import Image

from doodl_pl.evaluation import EvalConfig, Evaluator, load_run, mean, proportion
from doodl_pl.evaluation.fid import frechet_distance
from doodl_pl.main import main
from doodl_pl.shapes64 import SHAPES, aesthetic_score, render, sample_scene
from doodl_pl.shapes64.assets import available
from doodl_pl.shapes64.benchmark import method_config
from doodl_pl.shapes64.checks import Shapes64Checks
from doodl_pl.shapes64.items import build_items

GUIDE = {
    "model_name": "resnet10t",
    "checkpoint_path": "shapes64/classifier.safetensors",
    "num_classes": 9,
    "input_size": 64,
}
needs_assets = pytest.mark.skipif(
    not (available()["classifier"] and available()["clip"] and available()["aesthetic"]),
    reason="shipped Shapes-64 weights missing",
)


def fake_run(root, items: list[dict], images: list[np.ndarray], status=None, fields=None):
    """An output folder as `doodl-pl fit` writes it, with the given images (``fields``: per id,
    more manifest fields, e.g. guide scores)."""
    (root / "images").mkdir(parents=True)
    (root / "items.jsonl").write_text("".join(json.dumps(it) + "\n" for it in items))
    (root / "config.yaml").write_text(
        yaml.safe_dump({"data": {"init_args": {"items": str(root / "items.jsonl")}}})
    )
    with open(root / "manifest.jsonl", "w") as f:
        for k, (it, img) in enumerate(zip(items, images, strict=True)):
            st = (status or {}).get(it["id"], "ok")
            if st == "ok":
                Image.fromarray(img).save(root / "images" / f"{it['id']}.png")
            f.write(
                json.dumps(
                    {"id": it["id"], "prompt": it.get("prompt", ""), "seed": it["seed"],
                     "status": st, "unet_calls": 10 + k, "wall_s": 0.5, "method": "fake",
                     **(fields or {}).get(it["id"], {})}
                ) + "\n"
            )  # fmt: skip
    return root


# -- statistics ------------------------------------------------------------------------------------
def test_wilson_interval_matches_textbook_values():
    e = proportion([True] * 8 + [False] * 2)
    assert (e.value, round(e.lo, 3), round(e.hi, 3)) == (0.8, 0.490, 0.943)
    e = proportion([True] * 20)
    assert e.hi == 1.0 and round(e.lo, 3) == 0.839


def test_mean_interval_uses_student_t():
    e = mean(np.arange(10.0))
    half = 2.262 * np.std(np.arange(10.0), ddof=1) / math.sqrt(10)
    assert e.value == 4.5 and e.hi - e.value == pytest.approx(half)


# -- FID -------------------------------------------------------------------------------------------
class LinearFeatures(torch.nn.Module):
    num_features = 6

    def __init__(self):
        super().__init__()
        self.w = torch.randn(3 * 8 * 8, 6, generator=torch.Generator().manual_seed(0))

    def forward(self, x):
        return (x.flatten(1).double() @ self.w.double()).double()


def test_our_frechet_distance_equals_torchmetrics():
    from torchmetrics.image.fid import FrechetInceptionDistance

    g = torch.Generator().manual_seed(1)
    real, fake = torch.rand(40, 3, 8, 8, generator=g), torch.rand(30, 3, 8, 8, generator=g) * 0.7
    feat = LinearFeatures()
    m = FrechetInceptionDistance(feature=feat, normalize=True)
    m.update(real, real=True)
    m.update(fake, real=False)
    ours = frechet_distance(feat(fake).numpy(), feat(real).numpy())
    assert ours == pytest.approx(float(m.compute()), rel=1e-4)
    assert frechet_distance(feat(real).numpy(), feat(real).numpy()) == pytest.approx(0, abs=1e-6)


def test_fid_embeds_each_image_once_and_matches_torchmetrics_on_the_images():
    from torchmetrics.image.fid import FrechetInceptionDistance

    from doodl_pl.evaluation.fid import fid

    g = torch.Generator().manual_seed(2)
    real, fake = torch.rand(40, 3, 8, 8, generator=g), torch.rand(30, 3, 8, 8, generator=g) * 0.7
    feat, seen = LinearFeatures(), []
    feat.register_forward_hook(lambda m, args, out: seen.append(len(args[0])))
    est = fid(feat, fake, real, reps=20)
    assert sum(seen) == len(real) + len(fake)
    m = FrechetInceptionDistance(feature=LinearFeatures(), normalize=True)
    m.update(real, real=True)
    m.update(fake, real=False)
    assert est.value == pytest.approx(float(m.compute()), rel=1e-6)
    assert math.isfinite(est.lo) and est.lo < est.hi


# -- Shapes-64 checks ------------------------------------------------------------------------------
def scene_of(item: dict, app: str):
    if app == "vocabulary":
        return sample_scene(item["seed"], n_objects=1, shape=SHAPES[item["class_index"]])
    return sample_scene(item["seed"], n_objects=2 if app == "text" else 1)


@needs_assets
def test_checks_pass_on_exact_renders_and_fail_on_wrong_truth(tmp_path):
    items = [
        json.loads(x)
        for x in build_items("text", 24, "tune", tmp_path / "items").read_text().splitlines()
    ]
    right = [render(scene_of(it, "text")) for it in items]
    wrong = right[1:] + right[:1]  # every image shows another item's scene
    ev = Evaluator(EvalConfig(classifier=GUIDE, truth_checks=Shapes64Checks))
    good = ev.evaluate(load_run(fake_run(tmp_path / "good", items, right)))["metrics"]
    bad = ev.evaluate(load_run(fake_run(tmp_path / "bad", items, wrong)))["metrics"]
    for key in ("found", "color", "relation"):
        assert good[key]["value"] >= 0.9, key
    assert good["full_match"]["value"] >= 0.75
    assert bad["full_match"]["value"] <= 0.1
    assert bad["color"]["value"] <= 0.3


@needs_assets
def test_each_check_fails_alone_on_the_one_thing_that_is_wrong():
    """One exact two-object render; each wrong truth flips its own check (and full match) and
    leaves the others passing."""
    from doodl_pl.evaluation.validity import Validity
    from doodl_pl.shapes64 import Obj, Scene
    from doodl_pl.shapes64.checks import Shapes64Checks

    a = Obj("square", "red", "blue", 9.0, 16.0, 32.0)
    b = Obj("star", "green", None, 9.0, 46.0, 32.0)
    img = render(Scene("white", [a, b]))
    truth = {
        "objects": [
            {"color": "red", "shape": "square", "outline": "blue"},
            {"color": "green", "word": "star"},
        ],
        "relation": "to the left of",
    }
    checks = Shapes64Checks(Validity(**GUIDE))
    right = checks.check(img, truth, None)
    assert {
        k: right[k] for k in ("found", "color", "shape", "outline", "relation")
    } == dict.fromkeys(("found", "color", "shape", "outline", "relation"), 1.0) and right[
        "full_match"
    ] == 1.0

    def wrong(change, key):
        t = json.loads(json.dumps(truth))
        change(t)
        out = checks.check(img, t, None)
        assert out[key] == 0.0 and out["full_match"] == 0.0, (key, out)
        return {k: v for k, v in out.items() if k not in (key, "full_match", "aesthetic_measured")}

    rest = wrong(lambda t: t.update(relation="to the right of"), "relation")
    assert set(rest.values()) == {1.0}
    rest = wrong(lambda t: t["objects"][0].update(shape="diamond"), "shape")
    assert set(rest.values()) == {1.0}
    rest = wrong(lambda t: t["objects"][1].update(word="cross"), "shape")
    assert set(rest.values()) == {1.0}
    rest = wrong(lambda t: t["objects"][0].update(outline="orange"), "outline")
    assert set(rest.values()) == {1.0}
    rest = wrong(lambda t: t["objects"][1].update(color="purple"), "color")
    assert rest["found"] == 1.0
    one = render(Scene("white", [a]))
    out = checks.check(one, truth, None)
    assert out["found"] == 0.0 and out["full_match"] == 0.0


def test_entity_check_reads_the_reference_object_alone():
    """``entity`` (personalization) passes when object 0 is drawn whole, whatever the relation
    or the other object, and fails on its outline, shape or fill alone."""
    from doodl_pl.evaluation.validity import Validity
    from doodl_pl.shapes64 import Obj, Scene
    from doodl_pl.shapes64.checks import Shapes64Checks

    a = Obj("square", "red", "blue", 9.0, 16.0, 32.0)
    b = Obj("star", "green", None, 9.0, 46.0, 32.0)
    img = render(Scene("white", [a, b]))
    entity = {"color": "red", "shape": "square", "outline": "blue"}
    truth = {"objects": [entity, {"color": "yellow", "word": "circle"}], "entity": 0,
             "relation": "to the right of"}  # fmt: skip
    checks = Shapes64Checks(Validity(**GUIDE))
    out = checks.check(img, truth, None)
    assert out["entity"] == 1.0 and out["full_match"] == 0.0
    for change in ({"outline": "green"}, {"shape": "diamond"}, {"color": "purple"}):
        t = {**truth, "objects": [{**entity, **change}, truth["objects"][1]]}
        assert checks.check(img, t, None)["entity"] == 0.0, change
    assert "entity" not in checks.check(
        img, {k: v for k, v in truth.items() if k != "entity"}, None
    )


@needs_assets
def test_measured_aesthetic_tracks_the_formula(tmp_path):
    from doodl_pl.evaluation.validity import Validity
    from doodl_pl.shapes64.checks import Shapes64Checks

    checks = Shapes64Checks(Validity(**GUIDE))
    errs = []
    for seed in range(100, 140):
        scene = sample_scene(seed, n_objects=1)
        o = scene.objects[0]
        out = checks.check(render(scene), {"objects": [{"color": o.color, "shape": o.shape}]}, None)
        errs.append(abs(out["aesthetic_measured"] - aesthetic_score(o)))
    assert np.median(errs) < 0.5 and max(errs) < 1.5


@needs_assets
def test_edit_checks(tmp_path):
    from dataclasses import replace

    from doodl_pl.shapes64 import Obj, Scene

    items = build_items("aesthetic", 6, "tune", tmp_path / "items").read_text().splitlines()
    items = [json.loads(x) for x in items]
    better, recolored = [], []
    for it in items:
        o = it["truth"]["objects"][0]
        bg = sample_scene(it["seed"], n_objects=1).background
        big = Obj(o["shape"], o["color"], o["outline"], 14.0, 32.0, 32.0)
        better.append(render(Scene(bg, [big])))
        other = next(c for c in ("red", "blue") if c != o["color"])
        recolored.append(render(Scene(bg, [replace(big, color=other, outline=None)])))
    ev = Evaluator(EvalConfig(classifier=GUIDE, truth_checks=Shapes64Checks))
    good = ev.evaluate(load_run(fake_run(tmp_path / "good", items, better)))["metrics"]
    bad = ev.evaluate(load_run(fake_run(tmp_path / "bad", items, recolored)))["metrics"]
    assert good["improved"]["value"] == 1.0 and good["content_kept"]["value"] >= 5 / 6
    assert good["aesthetic_gain"]["value"] > 3
    assert bad["content_kept"]["value"] == 0.0 and bad["edit_success"]["value"] == 0.0


@needs_assets
def test_personalization_alone_asks_for_the_entity_in_a_new_cell(tmp_path):
    """Each item's prompt names the entity's colour, its shape word and a cell other than the
    reference's; the entity rendered in that cell passes every check, the same entity left where
    the reference has it fails only ``position``."""
    from doodl_pl.evaluation.validity import Validity
    from doodl_pl.shapes64 import Obj, Scene
    from doodl_pl.shapes64.checks import Shapes64Checks
    from doodl_pl.shapes64.world import GRID_POS, SHAPE_WORD, position_phrase

    items = build_items("personalization_alone", 6, "tune", tmp_path / "items").read_text()
    items = [json.loads(x) for x in items.splitlines()]
    checks = Shapes64Checks(Validity(**GUIDE))
    cells = {p: (row, col) for row, ps in enumerate(GRID_POS) for col, p in enumerate(ps)}
    for it in items:
        (e,), where = it["truth"]["objects"], it["truth"]["position"]
        assert it["prompt"].endswith(" " + where) and SHAPE_WORD[e["shape"]] in it["prompt"]
        assert e["color"] in it["prompt"] and e["outline"] is not None
        row, col = cells[where]
        there = Obj(e["shape"], e["color"], e["outline"], 11.0, 64 * (2 * col + 1) / 6,
                    64 * (2 * row + 1) / 6)  # fmt: skip
        out = checks.check(render(Scene("white", [there])), it["truth"], None)
        assert out["position"] == 1.0 and out["entity"] == 1.0 and out["full_match"] == 1.0, it
        ref_img = np.asarray(Image.open(it["reference_images"][0]).convert("RGB"))
        out = checks.check(ref_img, it["truth"], None)
        assert out["entity"] == 1.0 and out["position"] == 0.0 and out["full_match"] == 0.0, it
        assert position_phrase(there.cx, there.cy) == where


def test_fill_readings_count_the_entity_fill_and_the_other_colour_worn_twice(tmp_path):
    """Three personalization items drawn by hand: the entity in its own fill; both objects in
    the other object's colour; the entity in a third colour."""
    from doodl_pl.shapes64 import Obj, Scene
    from doodl_pl.shapes64.entity import fill_readings

    items = build_items("personalization", 3, "tune", tmp_path / "items").read_text()
    items = [json.loads(x) for x in items.splitlines()]
    imgs = []
    for k, it in enumerate(items):
        (e, o) = it["truth"]["objects"]
        third = next(c for c in ("red", "blue", "green") if c not in (e["color"], o["color"]))
        fill = [e["color"], o["color"], third][k]
        a = Obj(e["shape"], fill, e["outline"], 9.0, 16.0, 32.0)
        b = Obj("circle", o["color"], None, 9.0, 46.0, 32.0)
        imgs.append(render(Scene("white", [a, b])))
    got = fill_readings(fake_run(tmp_path / "run", items, imgs))
    assert got["entity_fill_drawn"].value == pytest.approx(1 / 3)
    assert got["both_in_the_other_colour"].value == pytest.approx(1 / 3)


@needs_assets
def test_hacking_rate_against_a_hand_counted_case(tmp_path):
    """Nine vocabulary items: the guide's class probability accepts six images (≥ 0.9), one of
    which the held-out judge rejects (drawn as a circle), so the hacking rate is 1/6; one more
    item failed, so accepted-and-valid is 5 of 9."""
    items = [
        json.loads(x)
        for x in build_items("vocabulary", 9, "tune", tmp_path / "items").read_text().splitlines()
    ]
    imgs = [render(scene_of(it, "vocabulary")) for it in items]
    imgs[6] = imgs[7] = render(sample_scene(items[6]["seed"], n_objects=1, shape="circle"))
    probs = [0.95, 0.95, 0.95, 0.5, 0.91, 0.91, 0.99, 0.2, 0.99]
    fields = {it["id"]: {"guide_class_prob": p} for it, p in zip(items, probs, strict=True)}
    run = fake_run(tmp_path / "run", items, imgs, {items[8]["id"]: "failed"}, fields)
    cfg = EvalConfig(classifier=GUIDE, accept={"guide_class_prob": 0.9}, judge="validity")
    r = Evaluator(cfg).evaluate(load_run(run))
    m = r["metrics"]
    assert r["per_item"]["validity"][:8] == [1.0] * 6 + [0.0, 0.0]
    assert (m["accepted"]["value"], m["accepted"]["n"]) == (pytest.approx(6 / 9), 9)
    assert (m["hacking"]["value"], m["hacking"]["n"]) == (pytest.approx(1 / 6), 6)
    assert (m["accepted_valid"]["value"], m["accepted_valid"]["n"]) == (pytest.approx(5 / 9), 9)
    # fake_run gives item k 10 + k UNet calls: 8 finished items, 5 accepted-and-valid images
    assert m["calls_per_valid"]["value"] == pytest.approx(sum(10 + k for k in range(8)) / 5)
    from doodl_pl.evaluation.cli import parse_accept

    assert parse_accept(["guide_class_prob=0.9", "guide_clip_score=30"]) == {
        "guide_class_prob": 0.9,
        "guide_clip_score": 30.0,
    }
    with pytest.raises(ValueError, match="expected GUIDE_SCORE=MIN"):
        parse_accept(["guide_class_prob:0.9"])
    assert parse_accept(["own", "guide_class_prob=0.9"]) == {"guide_class_prob": 0.9}
    assert parse_accept(["own"]) is None
    with pytest.raises(ValueError, match="`--judge` 'relation'"):
        Evaluator(EvalConfig(classifier=GUIDE, accept=cfg.accept, judge="relation")).evaluate(
            load_run(run)
        )
    with pytest.raises(ValueError, match="`--accept` names 'guide_clip_score'.*guide_class_prob"):
        Evaluator(EvalConfig(classifier=GUIDE, accept={"guide_clip_score": 30})).evaluate(
            load_run(run)
        )
    # A run that stopped at 0.99 recorded its own verdicts: with accept_own it is judged by them
    # (the 0.99 images: items 6 and 8, 8 failed, so 1 accepted, rejected), not at 0.9.
    own = {k: {**v, "accepted": v["guide_class_prob"] >= 0.99} for k, v in fields.items()}
    run99 = fake_run(tmp_path / "run99", items, imgs, {items[8]["id"]: "failed"}, own)
    cfg_own = EvalConfig(classifier=GUIDE, accept=cfg.accept, judge="validity", accept_own=True)
    m = Evaluator(cfg_own).evaluate(load_run(run99))["metrics"]
    assert (m["accepted"]["value"], m["hacking"]["value"], m["hacking"]["n"]) == (
        pytest.approx(1 / 9), 1.0, 1)  # fmt: skip
    m = Evaluator(cfg).evaluate(load_run(run99))["metrics"]  # without it: the 0.9 rule
    assert m["hacking"]["value"] == pytest.approx(1 / 6)
    m = Evaluator(cfg_own).evaluate(load_run(run))["metrics"]  # no recorded verdicts: the rule
    assert m["hacking"]["value"] == pytest.approx(1 / 6)


@needs_assets
def test_fid_of_the_accepted_set_is_the_fid_of_those_images_alone(tmp_path):
    """``fid_accepted`` (overall and per class) scores only what the guide accepts: the same
    value as a run that holds just those images."""
    items = [
        json.loads(x)
        for x in build_items("vocabulary", 9, "tune", tmp_path / "items").read_text().splitlines()
    ]
    imgs = [render(scene_of(it, "vocabulary")) for it in items]
    imgs[4] = render(sample_scene(items[4]["seed"], n_objects=1, shape="circle"))
    probs = [0.95, 0.2, 0.95, 0.99, 0.91, 0.3, 0.99, 0.95, 0.1]
    fields = {it["id"]: {"guide_class_prob": p} for it, p in zip(items, probs, strict=True)}
    refs = str(tmp_path / "items" / "fid_reference")
    cfg = EvalConfig(classifier=GUIDE, accept={"guide_class_prob": 0.9}, fid_reference=refs,
                     reps=10)  # fmt: skip
    m = Evaluator(cfg).evaluate(load_run(fake_run(tmp_path / "run", items, imgs, fields=fields)))
    m = m["metrics"]
    kept = [k for k, p in enumerate(probs) if p >= 0.9]
    alone = fake_run(tmp_path / "alone", [items[k] for k in kept], [imgs[k] for k in kept])
    ref = Evaluator(EvalConfig(classifier=GUIDE, fid_reference=refs, reps=10)).evaluate(
        load_run(alone)
    )["metrics"]
    assert m["fid_accepted"]["n"] == len(kept) == 6 and m["fid"]["n"] == 9
    assert m["fid_accepted"]["value"] == pytest.approx(ref["fid"]["value"], rel=1e-6)
    assert m["fid_accepted"]["value"] != pytest.approx(m["fid"]["value"], rel=1e-3)
    per_class = [k for k in m if k.startswith("fid_accepted/class_")]
    assert per_class and all(
        m[k]["value"] == pytest.approx(ref[k.replace("fid_accepted", "fid")]["value"], rel=1e-6)
        for k in per_class
    )


# -- the command -----------------------------------------------------------------------------------
@needs_assets
def test_evaluate_command_writes_json_markdown_plot_and_per_class_fid(tmp_path):
    items = [
        json.loads(x)
        for x in build_items("vocabulary", 12, "tune", tmp_path / "items").read_text().splitlines()
    ]
    imgs = [render(scene_of(it, "vocabulary")) for it in items]
    run = fake_run(tmp_path / "run", items, imgs, status={items[-1]["id"]: "failed"})
    out = tmp_path / "eval"
    results = main([
        "evaluate", str(run), "--preset", "shapes64", "--classifier", GUIDE["model_name"],
        GUIDE["checkpoint_path"], "--num-classes", "9", "--input-size", "64", "--fid-reference",
        str(tmp_path / "items" / "fid_reference"), "--reps", "20", "--out", str(out),
    ])  # fmt: skip
    (r,) = results
    assert r["n"] == 11 and r["failed"] == [items[-1]["id"]]
    m = r["metrics"]
    # the failed item is a failure in every success metric, left out of the means
    assert m["validity"]["n"] == m["shape"]["n"] == 12 and r["per_item"]["validity"][-1] == 0.0
    assert r["per_item"]["id"][-1] == items[-1]["id"]
    assert m["validity"]["value"] >= 0.9 and m["shape"]["value"] >= 0.9
    assert m["clip_score"]["n"] == 11 and 0 < m["clip_score"]["value"] <= 100
    for cls in ("pentagon", "hexagon", "octagon"):
        e = m[f"fid/class_{SHAPES.index(cls)}"]
        assert e["n"] >= 3 and 0 <= e["lo"] <= e["hi"]
    circles = [render(sample_scene(it["seed"], n_objects=1, shape="circle")) for it in items]
    other = main([
        "evaluate", str(fake_run(tmp_path / "circles", items, circles)), "--preset", "shapes64",
        "--classifier", GUIDE["model_name"], GUIDE["checkpoint_path"], "--num-classes", "9",
        "--input-size", "64", "--fid-reference", str(tmp_path / "items" / "fid_reference"),
        "--reps", "20", "--out", str(tmp_path / "eval_circles"),
    ])[0]["metrics"]  # fmt: skip
    assert other["fid"]["value"] > 2 * m["fid"]["value"]
    assert other["validity"]["value"] == 0.0
    assert r["cost"]["unet_calls_per_item"] == pytest.approx(np.mean(range(10, 21)))
    assert json.loads((out / "results.json").read_text())[0]["n"] == 11
    assert "| validity |" in (out / "results.md").read_text()
    assert Image.open(out / "metrics.png").size[0] > 100


def test_evaluate_names_the_missing_manifest(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest"):
        main(["evaluate", str(tmp_path), "--clip", "x", "y"])


def test_method_configs_parse_for_every_app_and_method(tmp_path, capsys):
    from doodl_pl.shapes64.benchmark import METHODS
    from doodl_pl.shapes64.items import APPS

    (tmp_path / "items.jsonl").write_text('{"id": "a", "prompt": "a red circle"}\n')
    for app in APPS:
        for method in METHODS:
            cfg = method_config(app, method, tmp_path / "items.jsonl", tmp_path / "out")
            path = tmp_path / f"{app}_{method}.yaml"
            path.write_text(yaml.safe_dump(cfg))
            assert cfg["model"]["class_path"].endswith(
                {"vanilla": "VanillaModule", "one_step": "OneStepGuidanceModule",
                 "best_of_n": "BestOfNModule", "doodl": "DoodlModule"}[method]
            )  # fmt: skip
            if method != "doodl":
                assert "opt_steps" not in cfg["model"]["init_args"]
            base = yaml.safe_load((ROOT / "configs" / "benchmark" / f"{app}.yaml").read_text())
            # the frozen protocol, not the demo: every guide the benchmark's commands assume
            assert cfg["model"]["init_args"]["loss"] == base["model"]["init_args"]["loss"]
            with pytest.raises(SystemExit) as done:  # the CLI accepts what the benchmark writes
                main(["fit", "--config", str(path), "--print_config"])
            assert done.value.code in (0, None)


def test_best_of_n_follows_doodls_final_settings_and_counted_calls(tmp_path):
    """``--set doodl:opt_steps=…`` or ``init_candidates`` move best-of-N's N with them; a DOODL
    run's counted calls set N exactly; columns more than 2 % apart are refused."""
    import json as _json

    from doodl_pl.shapes64.benchmark import candidate_calls, check_equal_calls

    def n_of(**kw):
        cfg = method_config("text", "best_of_n", tmp_path / "i.jsonl", tmp_path / "o", **kw)
        return cfg["model"]["init_args"]

    base = yaml.safe_load((ROOT / "configs" / "benchmark" / "text.yaml").read_text())
    m = base["model"]["init_args"]["opt_steps"]
    assert n_of()["n_candidates"] == 3 * m + 1
    assert n_of(doodl_overrides={"opt_steps": 8})["n_candidates"] == 25
    assert n_of(doodl_overrides={"opt_steps": 8, "init_candidates": 9})["n_candidates"] == 34
    assert (
        n_of(overrides={"n_candidates": 5}, doodl_overrides={"opt_steps": 8})["n_candidates"] == 5
    )
    bdia = n_of(overrides={"sampler": "bdia", "num_inference_steps": 20}, match_calls=500.0)
    assert candidate_calls(bdia) == 20 and bdia["n_candidates"] == 25

    def run(name, calls):
        (tmp_path / name).mkdir()
        lines = [_json.dumps({"id": f"i{k}", "unet_calls": c}) for k, c in enumerate(calls)]
        (tmp_path / name / "manifest.jsonl").write_text("\n".join(lines) + "\n")
        return tmp_path / name

    assert check_equal_calls(run("d", [500, 500]), run("b", [505, 505])) == (500, 505)
    with pytest.raises(ValueError, match=r"best-of-N spent 740 .* DOODL 500 .*48\.0% apart"):
        check_equal_calls(tmp_path / "d", run("stale", [740, 740]))


def test_console_evaluate_error_is_one_line(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "doodl_pl", "evaluate", str(tmp_path / "nowhere"), "--clip", "a"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("doodl-pl: error:")]
    assert len(lines) == 1 and "manifest" in lines[0] and "nowhere" in lines[0]


def test_paired_difference_joins_items_by_id():
    from doodl_pl.evaluation import paired_difference, paired_markdown

    ids_a, a = ["x", "y", "z", "w"], [1.0, 0.0, 1.0, 1.0]
    ids_b, b = ["w", "z", "y", "x"], [0.0, 1.0, 0.0, 0.0]  # another order, same items
    est = paired_difference(ids_a, a, ids_b, b)
    diffs = np.array([1.0, 0.0, 0.0, 1.0])
    assert est.n == 4 and est.value == pytest.approx(diffs.mean()) and est.method == "paired-t"
    half = 3.182 * diffs.std(ddof=1) / 2  # t(3) quantile · sd / sqrt(4)
    assert (est.lo, est.hi) == pytest.approx((diffs.mean() - half, diffs.mean() + half))
    results = [
        {"name": "doodl", "per_item": {"id": ids_a, "color": a}},
        {"name": "best_of_n", "per_item": {"id": ids_b, "color": b}},
    ]
    table = paired_markdown(results, "doodl")
    assert "| doodl − best_of_n |" in table and "| color | +0.500 [" in table
    assert paired_markdown(results, "absent") == ""


def test_paired_success_counts_an_item_a_run_failed_or_lacks_as_a_failure():
    """A method's failed items must not shrink its denominator: on a success metric a missing or
    unscored item is 0 for that run; on a mean of scores it is left out."""
    from doodl_pl.evaluation import paired_difference, paired_markdown

    ids_a, a = ["x", "y", "z", "w", "v"], [1.0, 1.0, 0.0, 1.0, float("nan")]  # z failed in a
    ids_b, b = ["x", "y", "z", "v"], [1.0, 1.0, 1.0, 1.0]  # w never finished in run b
    est = paired_difference(ids_a, a, ids_b, b, missing=0.0)  # v: the metric does not apply
    assert est.n == 4 and est.value == pytest.approx(0.0)  # (0 + 0 − 1 + 1) / 4
    only_both = paired_difference(ids_a, a, ids_b, b)
    assert only_both.n == 3 and only_both.value == pytest.approx(-1 / 3)
    results = [
        {
            "name": "doodl",
            "per_item": {"id": ids_a[:3], "color": [1.0, 1.0, 0.0], "clip_score": [5, 5, 9]},
        },
        {"name": "best_of_n", "per_item": {"id": ids_b, "color": b, "clip_score": [4, 4, 1, 2]}},
    ]
    table = paired_markdown(results, "doodl")
    assert "| color | -0.500 [" in table and "| clip_score | +3.333 [" in table


def test_budget_curve_joins_runs_by_family(tmp_path):
    from doodl_pl.evaluation.results import budget_curve, curve_points

    def run(name, calls, value):
        metrics = (
            {}
            if value is None
            else {"color": {"value": value, "lo": value - 0.1, "hi": value + 0.1}}
        )
        return {"name": name, "metrics": metrics, "cost": {"unet_calls_per_item": calls}}

    results = [
        run("vanilla", 20, 0.3), run("doodl", 500, 0.7), run("doodl@m2", 140, 0.5),
        run("best_of_n@m2", 140, 0.6), run("best_of_n", 500, 0.9), run("broken", 80, None),
    ]  # fmt: skip
    points = curve_points(results, "color")
    assert list(points) == ["vanilla", "doodl", "best_of_n"]
    assert [p[:2] for p in points["doodl"]] == [(140, 0.5), (500, 0.7)]
    assert [p[:2] for p in points["best_of_n"]] == [(140, 0.6), (500, 0.9)]
    path = budget_curve(results, "color", tmp_path / "curve.png")
    assert Image.open(path).size[0] > 300


def test_lines_the_items_file_does_not_hold_are_left_out(tmp_path):
    """A run scored against an items file (a benchmark rerun with fewer items) scores only
    those items; the others are named, not judged without their ground truth."""
    blue = np.zeros((8, 8, 3), np.uint8)
    items = [{"id": k, "seed": i} for i, k in enumerate("abc")]
    run = fake_run(tmp_path / "run", items, [blue] * 3)
    (tmp_path / "fewer.jsonl").write_text("".join(json.dumps(it) + "\n" for it in items[:2]))
    fewer = load_run(run, tmp_path / "fewer.jsonl")
    assert [r["id"] for r in fewer.rows] == ["a", "b"] and fewer.outside == ["c"]
    assert len(fewer.images) == 2 and load_run(run).outside == []


def test_grid_shows_the_reference_each_image_is_judged_against_from_the_runs_config(tmp_path):
    from doodl_pl.evaluation import side_by_side

    red, blue = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)
    red[..., 0], blue[..., 2] = 255, 255
    Image.fromarray(red).save(tmp_path / "ref.png")
    items = [{"id": "a", "seed": 1, "reference_images": ["../ref.png"]}, {"id": "b", "seed": 2}]
    run = fake_run(tmp_path / "run", items, [blue, blue])
    saved = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({"fit": saved}))  # as `doodl-pl fit` saves
    assert load_run(run).rows[0]["item"]["reference_images"] == [str(run / "../ref.png")]
    bare = fake_run(tmp_path / "bare", [{"id": "a", "seed": 1}], [blue])
    plain = Image.open(side_by_side([bare], tmp_path / "plain.png"))
    with_ref = Image.open(side_by_side([run], tmp_path / "grid.png"))  # items from config.yaml
    assert with_ref.size[0] == plain.size[0] + 8 * 3 + 6  # one more column
    side, pad = 8 * 3, 6
    assert with_ref.getpixel((pad + side // 2, 16 + pad + side // 2)) == (255, 0, 0)  # a's ref
    assert with_ref.getpixel((2 * pad + side + side // 2, 16 + pad + side // 2)) == (0, 0, 255)
    row_b = 16 + pad + (side + 44 + pad) + side // 2  # b has no reference: its cell stays blank
    assert with_ref.getpixel((pad + side // 2, row_b)) == (255, 255, 255)


def test_paired_cost_ratio_against_a_hand_count():
    from doodl_pl.evaluation import paired_cost_ratio

    # A: 300 calls for 2 hits (150 each); B: 400 calls for 1 hit (400): A needs 0.375× B's.
    calls_a, hits_a = [100, 100, 100], [1, 1, 0]
    calls_b, hits_b = [200, 100, 100], [0, 1, 0]
    est = paired_cost_ratio(calls_a, hits_a, calls_b, hits_b, reps=500)
    assert est.value == pytest.approx(0.375)
    assert est.lo <= est.value <= est.hi and est.n == 3
    # resamples without a hit of B make B's cost unbounded (ratio 0), without one of A infinite
    assert est.lo == 0.0 and math.isinf(est.hi)
    calls, hits = [100, 300, 200], [1, 1, 2]
    same = paired_cost_ratio(calls, hits, calls, hits, reps=200)
    assert (same.value, same.lo, same.hi) == (1.0, 1.0, 1.0)  # items resampled jointly
    with pytest.raises(ValueError, match="four equal"):
        paired_cost_ratio([1, 2], [1], [1, 2], [1, 1])


def test_bootstrap_bound_between_two_infinite_draws_is_infinite_not_nan():
    from doodl_pl.evaluation import bootstrap

    hits = np.array([1, 0, 0, 0, 0, 0, 0, 0])  # most resamples hold no hit: infinite cost

    def cost(idx):
        return 100 / hits[idx].sum() if hits[idx].sum() else math.inf

    lo, hi = bootstrap(cost, 8)
    assert 0 < lo <= 100 and hi == math.inf
    rng = np.random.default_rng(0)
    draws = [cost(rng.integers(0, 8, 8)) for _ in range(200)]
    with np.errstate(invalid="ignore"):
        assert np.isnan(np.percentile(draws, 97.5))  # what plain interpolation gives
    # a finite statistic keeps numpy's linear interpolation
    values = np.arange(8.0)
    lo, hi = bootstrap(lambda idx: float(values[idx].mean()), 8)
    rng = np.random.default_rng(0)
    draws = [values[rng.integers(0, 8, 8)].mean() for _ in range(200)]
    assert (lo, hi) == tuple(np.percentile(draws, [2.5, 97.5]))
