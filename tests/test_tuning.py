"""The benchmark's per-method tuning grids."""

import pytest

from doodl_pl.shapes64.tuning import grid_points, parse_grid, pick_best, tuning_score


def test_grid_crosses_one_methods_keys_and_keeps_methods_apart():
    grid = parse_grid(
        ["doodl:gamma=0.5,1.0", "doodl:optimizer.init_args.lr=0.1,0.5", "one_step:loss_scale=3"]
    )
    assert grid == {
        "doodl": {"gamma": [0.5, 1.0], "optimizer.init_args.lr": [0.1, 0.5]},
        "one_step": {"loss_scale": [3]},
    }
    points = grid_points("doodl", grid["doodl"])
    assert [n for n, _ in points] == [
        "doodl_gamma0.5_lr0.1", "doodl_gamma0.5_lr0.5", "doodl_gamma1_lr0.1", "doodl_gamma1_lr0.5"
    ]  # fmt: skip
    assert points[1][1] == {"gamma": 0.5, "optimizer.init_args.lr": 0.5}
    assert len({n for n, _ in points}) == len(points)


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("doodl-gamma=1", "METHOD:KEY=V1,V2"),
        ("sampler:gamma=1", "method must be one of"),
        ("doodl:gamma=", "at least one value"),
    ],
)
def test_bad_grid_names_the_entry(value, needle):
    with pytest.raises(ValueError, match=needle) as err:
        parse_grid([value])
    assert value in str(err.value)


def test_repeated_key_is_refused():
    with pytest.raises(ValueError, match="given twice"):
        parse_grid(["doodl:gamma=1", "doodl:gamma=0.5"])


def test_best_point_is_the_highest_mean_headline_rate_first_of_equals():
    def result(**rates):
        metrics = {k: {"value": v, "method": "wilson"} for k, v in rates.items()}
        metrics["clip_score"] = {"value": 99.0, "method": "t"}  # not a rate: ignored
        return {"metrics": metrics}

    a = result(full_match=0.1, color=0.9, shape=0.2, relation=0.2)
    b = result(full_match=0.2, color=0.8, shape=0.3, relation=0.3)
    assert tuning_score("text", a) == pytest.approx(0.35)
    assert tuning_score("text", b) == pytest.approx(0.4)
    assert pick_best({"a": 0.35, "b": 0.4}) == "b"
    assert pick_best({"first": 0.4, "second": 0.4}) == "first"
    with pytest.raises(ValueError, match="empty"):
        pick_best({})


def test_variant_values_may_be_yaml_with_commas_of_their_own():
    from doodl_pl.shapes64.harness import parse_variants

    got = parse_variants(
        ["e:doodl:opt_steps=3,loss=[{class_path: a.B, init_args: {x: 1, y: [2, 3]}}],prior=0.1"]
    )
    loss = [{"class_path": "a.B", "init_args": {"x": 1, "y": [2, 3]}}]
    assert got == [("e", "doodl", {"opt_steps": 3, "loss": loss, "prior": 0.1})]
    with pytest.raises(SystemExit, match="NAME:METHOD"):
        parse_variants(["e:doodl:opt_steps"])


def test_grid_values_may_be_yaml_with_commas_of_their_own():
    grid = parse_grid(["doodl:loss=[{a: 1, b: 2}],[{a: 3}]", "doodl:gamma=0.5,1"])
    assert grid == {"doodl": {"loss": [[{"a": 1, "b": 2}], [{"a": 3}]], "gamma": [0.5, 1]}}


def test_fit_run_writes_the_config_runs_it_and_refuses_other_settings(tmp_path):
    from doodl_pl.shapes64.assets import available
    from doodl_pl.shapes64.benchmark import fit_run, method_config
    from doodl_pl.shapes64.items import build_items

    if not available()["sd"]:
        pytest.skip("Shapes-64 weights not shipped")
    items = build_items("vocabulary", 1, "tune", tmp_path / "items")
    over = {"num_inference_steps": 2, "loss": None}
    run = tmp_path / "run"
    path = fit_run(method_config("vocabulary", "vanilla", items, run, overrides=over), run)
    assert path == run / "run.yaml" and path.is_file()
    lines = (run / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 1 and '"status": "ok"' in lines[0]
    fit_run(method_config("vocabulary", "vanilla", items, run, overrides=over), run)  # resumes
    assert len((run / "manifest.jsonl").read_text().splitlines()) == 1
    over["num_inference_steps"] = 3
    with pytest.raises(ValueError, match="output_dir"):
        fit_run(method_config("vocabulary", "vanilla", items, run, overrides=over), run)
