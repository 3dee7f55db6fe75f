"""The Shapes-64 benchmark harness: vanilla EDICT, one-step guidance, best-of-N at equal UNet
calls and DOODL on the four applications, scored by `doodl-pl evaluate` against ground truth.

Items come from held-out seeds (``--split eval``); tune on ``--split tune``, a disjoint set.
Every run is an ordinary `doodl-pl fit` output folder, so a killed benchmark resumes where it
stopped. Prints one table per application and writes ``<out>/summary.md``.

    doodl-pl benchmark                                  # 32 items per app, CPU
    doodl-pl benchmark --apps text --n 8 --split tune \\
        --set doodl:optimizer.init_args.lr=0.3 --out outputs/tune_lr0.3

(``python scripts/benchmark_shapes64.py`` takes the same arguments.)
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import traceback
from pathlib import Path

import yaml

from ..evaluation import (
    Evaluator,
    load_run,
    markdown,
    paired_markdown,
    side_by_side,
    write_results,
)
from ..evaluation.results import budget_curve
from ..outputs import settings_changes
from .benchmark import (
    BASE_CONFIGS,
    GUIDE_ACCEPTS,
    METHODS,
    check_equal_calls,
    fit_run,
    mean_unet_calls,
    method_config,
    parse_method_key,
    split_top,
)
from .evaluation import eval_config
from .items import APPS, build_items
from .tuning import HEADLINE, grid_points, parse_grid, pick_best, tuning_score

__all__ = ["main", "parse_sets", "parse_variants", "parser", "run_method"]


def parse_sets(values: list[str]) -> dict[str, dict[str, object]]:
    """``method:dotted.key=value`` (value parsed as YAML) → ``{method: {key: value}}``."""
    out: dict[str, dict[str, object]] = {}
    for v in values:
        try:
            method, key, value = parse_method_key(v, "METHOD:KEY=VALUE, e.g. doodl:opt_steps=8")
        except ValueError as err:
            raise SystemExit(f"--set {err}") from None
        out.setdefault(method, {})[key] = yaml.safe_load(value)
    return out


def parse_variants(values: list[str]) -> list[tuple[str, str, dict[str, object]]]:
    """``NAME:METHOD:KEY=VALUE[,KEY=VALUE...]`` → ``[(name, method, {key: value})]``; a value
    may be a YAML list or mapping with commas of its own."""
    out = []
    for v in values:
        try:
            name, method, rest = v.split(":", 2)
            pairs = (kv.split("=", 1) for kv in split_top(rest))
            over = {k.strip(): yaml.safe_load(x) for k, x in pairs}
        except ValueError:
            msg = f"--variant {v!r}: expected NAME:METHOD:KEY=VALUE[,KEY=VALUE], e.g. "
            raise SystemExit(msg + "doodl_bdia:doodl:sampler=bdia,num_inference_steps=20") from None
        if method not in METHODS:
            raise SystemExit(f"--variant {v!r}: method must be one of {METHODS}")
        if name in METHODS:
            raise SystemExit(f"--variant {v!r}: NAME must differ from the method names {METHODS}")
        out.append((name, method, over))
    return out


def run_method(app, method, items, run_dir, a, overrides=None, doodl=None) -> Path | None:
    """Generate (or finish) one method's run of ``app``: an ordinary `doodl-pl fit` folder.
    ``doodl``: the DOODL run (folder, overrides) best-of-N matches in UNet calls."""
    doodl_dir, doodl_over = doodl or (None, None)
    cfg = method_config(
        app, method, items, run_dir, accelerator=a.accelerator, batch_size=a.batch_size,
        overrides=overrides, config_dir=a.config_dir, doodl_overrides=doodl_over,
        match_calls=mean_unet_calls(doodl_dir) if doodl_dir else None,
    )  # fmt: skip
    old = run_dir / "run.yaml"
    if old.is_file() and (run_dir / "manifest.jsonl").is_file():
        if settings_changes(yaml.safe_load(old.read_text()).get("model"), cfg["model"]):
            # A finished item would be skipped on resume though its settings changed: keep the
            # old run aside rather than mixing two settings in one table.
            aside = run_dir.with_name(f"{run_dir.name}.previous-{time.strftime('%Y%m%d-%H%M%S')}")
            run_dir.rename(aside)
            print(f"   {run_dir}: settings changed, previous run moved to {aside}", file=sys.stderr)
    t0 = time.time()
    print(f"== {app} / {run_dir.name}: generating", file=sys.stderr, flush=True)
    try:
        fit_run(cfg, run_dir)
    except Exception:  # noqa: BLE001 - report it and go on: the other methods still compare
        traceback.print_exc()
        print(f"   {run_dir}: FAILED, see the traceback above", file=sys.stderr, flush=True)
        return None
    print(f"   {run_dir}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    return run_dir


def evaluate(evaluator, app_dir: Path, runs, items: Path, title: str, folder: str = "evaluation"):
    runs = [r for r in runs if r is not None and (r / "manifest.jsonl").is_file()]
    ref = app_dir / "items" / "fid_reference"
    evaluator.set_fid_reference(str(ref) if ref.is_dir() else None)
    results = [evaluator.evaluate(load_run(r, items, r.name)) for r in runs]
    paths = write_results(results, app_dir / folder, title=title)
    return results, paths


def tune(app, a, evaluator, out: Path, sets, grid) -> tuple[dict, str]:
    """Run every method's grid on the tuning split; return each method's best overrides and a
    report line per method."""
    if not grid:
        return {}, ""
    tdir = out / app / "tune"
    items = build_items(app, a.tune_n, "tune", tdir / "items")
    chosen, lines = {}, []
    for method, axes in grid.items():
        points = grid_points(method, axes)
        doodl = (None, {**sets.get("doodl", {}), **chosen.get("doodl", {})})
        runs = [
            run_method(app, method, items, tdir / name, a, {**sets.get(method, {}), **over}, doodl)
            for name, over in points
        ]
        # One folder per method: the methods' tuning tables must not overwrite each other.
        title = f"Shapes-64 {app}: {method} tuning"
        results, _ = evaluate(evaluator, tdir, runs, items, title, f"evaluation_{method}")
        if not results:
            lines.append(f"Tuning {method} failed (no run finished); its default settings.")
            continue
        scores = {r["name"]: tuning_score(app, r) for r in results}
        best = pick_best(scores)
        over = dict(points)
        chosen[method] = over[best]
        label = {n: ", ".join(f"{k.split('.')[-1]}={v}" for k, v in o.items()) for n, o in points}
        table = " · ".join(f"{label[n]}: {v:.3f}" for n, v in scores.items())
        lines.append(f"Tuning {method} ({a.tune_n} items, tune split, mean headline rate): "
                     f"{table} → {label[best]}.")  # fmt: skip
    return chosen, "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="doodl-pl benchmark", description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )  # fmt: skip
    p.add_argument("--apps", nargs="*", default=list(APPS), choices=APPS)
    p.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    p.add_argument("--n", type=int, default=32, help="items per application")
    p.add_argument("--split", default="eval", choices=["eval", "tune"])
    p.add_argument("--out", default="outputs/benchmark")
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--set", nargs="*", default=[], metavar="METHOD:KEY=VALUE",
                   help="override a method's model.init_args key (dotted), e.g. "
                   "doodl:optimizer.init_args.lr=0.3")  # fmt: skip
    p.add_argument("--variant", nargs="*", default=[], metavar="NAME:METHOD:KEY=VALUE,...",
                   help="an extra column: METHOD run again with these model.init_args "
                   "overrides (on top of --set), e.g. doodl_bdia:doodl:sampler=bdia")  # fmt: skip
    p.add_argument("--tune", nargs="*", default=[], metavar="METHOD:KEY=V1,V2,...",
                   help="a method's knob to try on the tuning split first (items disjoint from\n"
                   "the evaluation items; one method's keys are crossed); each method's best\n"
                   "point is used for the evaluation, e.g. one_step:loss_scale=0.3,1,3")  # fmt: skip
    p.add_argument("--tune-lr", nargs="*", type=float, default=[],
                   help="shorthand for --tune doodl:optimizer.init_args.lr=...")  # fmt: skip
    p.add_argument("--tune-clip", nargs="*", type=float, default=[],
                   help="shorthand for --tune doodl:optimizer.init_args.clip=...")  # fmt: skip
    p.add_argument("--tune-n", type=int, default=12, help="tuning items per application")
    p.add_argument("--unmatched", action="store_true",
                   help="allow best-of-N and DOODL to differ by more than 2 %% in UNet calls")  # fmt: skip
    p.add_argument("--reps", type=int, default=200, help="bootstrap resamples for FID")
    p.add_argument("--paired", nargs="*", default=["doodl"],
                   help="columns to compare item by item against every other column "
                   "(paired differences on the same items and seeds)")  # fmt: skip
    p.add_argument("--curve", nargs="*", default=[], metavar="METRIC",
                   help="plot METRIC against UNet calls, a line per method; runs named\n"
                   "FAMILY@LABEL (e.g. --variant doodl@m2:doodl:opt_steps=2) join FAMILY's line")  # fmt: skip
    p.add_argument("--config-dir", default=str(BASE_CONFIGS),
                   help="the base configs each method's run starts from (configs/benchmark)")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark the arguments describe; print one table per application and write
    ``<out>/summary.md``."""
    a = parser().parse_args(argv)
    sets = parse_sets(a.set)
    variants = parse_variants(a.variant)
    try:
        grid = parse_grid(a.tune)
    except ValueError as e:
        raise SystemExit(f"--tune: {e}") from None
    for key, values in (("lr", a.tune_lr), ("clip", a.tune_clip)):
        if values:
            if f"optimizer.init_args.{key}" in grid.get("doodl", {}):
                raise SystemExit(f"--tune-{key} repeats --tune doodl:optimizer.init_args.{key}")
            grid.setdefault("doodl", {})[f"optimizer.init_args.{key}"] = list(values)
    out = Path(a.out)
    command = "doodl-pl benchmark " + shlex.join(sys.argv[1:] if argv is None else argv)
    summary = [
        f"# Shapes-64 benchmark\n\n`{command}` ({a.n} items per application, {a.split} split)\n"
    ]
    # A column that stopped under its own `accept` rule is judged at that rule; the others at
    # the application's (GUIDE_ACCEPTS).
    evaluator = Evaluator(eval_config(reps=a.reps, accept_own=True))
    for app in a.apps:
        app_sets = {k: dict(v) for k, v in sets.items()}
        evaluator.cfg.accept, evaluator.cfg.judge = GUIDE_ACCEPTS.get(app, (None, None))
        best, tuned = tune(app, a, evaluator, out, sets, grid)
        for method, over in best.items():
            app_sets.setdefault(method, {}).update(over)
        app_dir = out / app
        items = build_items(app, a.n, a.split, app_dir / "items")
        # DOODL first: best-of-N's N comes from its counted UNet calls per item. Under an
        # `accept` rule items stop early by design: both get the same budget (N from DOODL's
        # settings) and spend what they need.
        done = {}
        stops = "accept" in app_sets.get("doodl", {})
        doodl = (None if stops else app_dir / "doodl", app_sets.get("doodl"))
        for m in sorted(a.methods, key=lambda m: m != "doodl"):
            done[m] = run_method(app, m, items, app_dir / m, a, app_sets.get(m), doodl)
        if done.get("doodl") and done.get("best_of_n") and not (a.unmatched or stops):
            try:
                calls = check_equal_calls(done["doodl"], done["best_of_n"])
            except ValueError as e:
                raise SystemExit(f"benchmark {app}: {e} (or pass --unmatched)") from None
            print(f"   equal compute: DOODL {calls[0]:.0f}, best-of-N {calls[1]:.0f} UNet calls "
                  "per item", file=sys.stderr)  # fmt: skip
        runs = [done[m] for m in a.methods]
        runs += [
            run_method(app, m, items, app_dir / name, a, {**app_sets.get(m, {}), **over},
                       (None, app_sets.get("doodl")))  # N from DOODL's final settings
            for name, m, over in variants
        ]  # fmt: skip
        results, paths = evaluate(evaluator, app_dir, runs, items, f"Shapes-64 {app}")
        grid_png = side_by_side(
            runs, app_dir / "evaluation" / "grid.png", [r.name for r in runs], max_items=8
        )
        table = markdown(results)
        for metric in a.curve:
            path = budget_curve(
                results, metric, app_dir / "evaluation" / f"curve_{metric}.png", f"Shapes-64 {app}"
            )
            table += f"\nCurve of {metric} against UNet calls: `{path}`\n"
        for focus in a.paired:
            paired = paired_markdown(results, focus)
            if paired:
                table += (
                    f"\nPaired differences (same items and seeds, 95 % t interval):\n\n{paired}"
                )
        head = ", ".join(HEADLINE[app])
        print(f"\n## {app}  (headline: {head})\n\n{tuned}\n{table}")
        summary.append(
            f"## {app}\n\nHeadline: {head}. Plot: `{paths['plot']}`, grid: `{grid_png}`.\n\n{tuned}\n{table}"
        )
        (out / f"summary_{app}.md").write_text(summary[-1])
    (out / "summary.md").write_text("\n".join(summary))
    print(
        f"benchmark: wrote {out / 'summary.md'} and <app>/evaluation/ under {out}", file=sys.stderr
    )
