#!/usr/bin/env python
"""The base rate of every (prompt word, target class) pair on Shapes-64: vanilla draws of
"a {color} {word}" for each word, read by the judge (``doodl_pl.shapes64.rarity``). The rarity
sweep's target sets are chosen from this table (on the tune split).

    .venv/bin/python scripts/rarity_scan.py --split tune --per-word 64 --out outputs/rarity_tune
    # one rarity bin: rejection sampling, DOODL and the hybrid on (word, class) pairs
    .venv/bin/python scripts/rarity_scan.py --sweep diamond:pentagon,cross:star,circle:hexagon \\
        --split eval --n 48 --out outputs/rare_eval
    # the same with rejection sampling also allowed 100 draws (fits already done are skipped)
    .venv/bin/python scripts/rarity_scan.py --sweep diamond:pentagon,cross:star,circle:hexagon \
        --split eval --n 48 --rs-draws 100 --out outputs/rare_eval
    # DOODL whose images the shipped guide must also accept at 0.99 (`Verified`), from the seed
    # and from the best of 9 draws, beside them
    .venv/bin/python scripts/rarity_scan.py --sweep diamond:pentagon,cross:star,circle:hexagon \
        --split eval --n 48 --verified --out outputs/rare_eval
    # the sweep's plot from its bins' folders
    .venv/bin/python scripts/rarity_scan.py --plot docs/rarity_sweep.png outputs/half_eval \
        outputs/tenth_eval outputs/rare_eval outputs/rarest_eval
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from doodl_pl.evaluation import load_run
from doodl_pl.main import main as doodl_main
from doodl_pl.shapes64.assets import GUIDE_CLASSIFIER, ROBUST_CLASSIFIER
from doodl_pl.shapes64.benchmark import fit_run, method_config
from doodl_pl.shapes64.guides import validity
from doodl_pl.shapes64.rarity import (
    base_rates,
    cost_ratios,
    parse_pairs,
    plot_sweep,
    sweep_point,
    target_items,
    word_items,
)
from doodl_pl.shapes64.world import SHAPES


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--split", default="tune", choices=["tune", "eval"])
    p.add_argument("--per-word", type=int, default=64, help="vanilla draws per prompt word")
    p.add_argument("--sweep", default=None, metavar="WORD:CLASS,...",
                   help="instead of the scan: run rejection sampling, DOODL (EOT of the robust\n"
                   "guide) and the hybrid on --n items of these pairs and evaluate them")  # fmt: skip
    p.add_argument("--n", type=int, default=48, help="--sweep items")
    p.add_argument("--rs-draws", type=int, default=25,
                   help="--sweep: rejection sampling's cap in draws per item (25: the DOODL\n"
                   "budget; other caps run beside it as rejection_sampling_<N>)")  # fmt: skip
    p.add_argument("--verified", action="store_true",
                   help="--sweep: also DOODL steered by EOT of the robust guide, Verified by the\n"
                   "shipped guide, stopping at 0.99, from the seed and from the best of 9 draws\n"
                   "(5 steps), scored at 0.99 in evaluation_099/")  # fmt: skip
    p.add_argument("--hybrid", nargs="+", default=[], metavar="K:M",
                   help="--sweep: also hybrids that draw K candidates at rejection sampling's\n"
                   "γ 0.5 (its first K draws), stop at the first accepted, else take M DOODL\n"
                   "steps from the best, as hybrid_k<K>_m<M> (draws one at a time)")  # fmt: skip
    p.add_argument("--out", default="outputs/rarity")
    p.add_argument("--plot", nargs="+", metavar=("PNG", "BIN_DIR"), default=None,
                   help="only plot: calls per accepted valid image against the base rate of the\n"
                   "--sweep folders given, base rates from --rates")  # fmt: skip
    p.add_argument("--rates", default="outputs/rarity_tune/rarity.json",
                   help="--plot: the tune scan's rarity.json")  # fmt: skip
    a = p.parse_args()
    if a.plot:
        rates = json.loads(Path(a.rates).read_text())["rates"]
        points = [sweep_point(Path(d), rates) for d in a.plot[1:]]
        for pt in points:
            print(pt["bin"], f"base rate {pt['base_rate']:.3f}",
                  {k: round(v["value"]) if v["value"] < 1e12 else "none" for k, v in pt["methods"].items()})  # fmt: skip
        for d in a.plot[1:]:
            ratios = cost_ratios(Path(d))
            print(f"{Path(d).name}: calls per accepted valid image / rejection sampling's, paired: "
                  + ", ".join(f"{k} {v}" for k, v in ratios.items()))  # fmt: skip
        plot_sweep(points, Path(a.plot[0]))
        print(f"wrote {a.plot[0]}")
        return
    out = Path(a.out)
    if a.sweep:
        sweep(a, out)
        return
    items = word_items(a.split, a.per_word, out / "items.jsonl")
    run_dir = out / "vanilla"
    over = {"sampler": "bdia", "gamma": 0.5, "num_inference_steps": 20, "loss": None}
    cfg = method_config("vocabulary", "vanilla", items, run_dir, batch_size=32, overrides=over)
    fit_run(cfg, run_dir)  # resumes a killed run
    run = load_run(run_dir, items)
    judge = validity()
    words = [r["id"].rsplit("_", 1)[0] for r in run.rows]
    rates = base_rates(words, judge.predict(run.tensor()).tolist())
    print(f"\nShare of {a.per_word} vanilla draws (BDIA γ 0.5, T 20, {a.split} seeds) the judge reads "
          "as each class, per prompt word\n")  # fmt: skip
    print("| prompt word | " + " | ".join(SHAPES) + " |")
    print("|---|" + "---|" * len(SHAPES))
    for word, row in rates.items():
        print(f"| {word} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
    report = {
        "args": vars(a),
        "classes": list(SHAPES),
        "rates": {k: v.tolist() for k, v in rates.items()},
    }
    (out / "rarity.json").write_text(json.dumps(report, indent=1))
    print(f"\nwrote {out / 'rarity.json'}")


def hybrid_split(km: str) -> tuple[int, int]:
    """``--hybrid K:M`` → (K, M), within the 500-call budget."""
    try:
        k, m = (int(v) for v in km.split(":"))
    except ValueError:
        raise SystemExit(f"--hybrid {km!r}: expected K:M, e.g. 15:3") from None
    if k < 1 or m < 1 or k + 3 * m + 1 > 25:
        raise SystemExit(f"--hybrid {km}: K, M >= 1 with K + 3M + 1 <= 25 (500 UNet calls)")
    return k, m


def sweep(a: argparse.Namespace, out: Path) -> None:
    """The settings of docs/benchmarks.md's "chosen options on the eval split", 500 UNet calls
    at most per item, every method stopping at a target probability of 0.9 (``--verified``: its
    column at 0.99, which both guides must reach)."""
    hybrids = [hybrid_split(km) for km in a.hybrid]  # bad input fails before any work
    items = target_items(parse_pairs(a.sweep), a.n, a.split, out / "items.jsonl")
    guide = {"class_path": "doodl_pl.losses.ClassifierLoss",
             "init_args": {**ROBUST_CLASSIFIER, "num_classes": len(SHAPES), "input_size": 64}}  # fmt: skip
    eot = {"class_path": "doodl_pl.losses.EOT", "init_args": {"loss": guide, "copies": 4}}
    chain = {"sampler": "bdia", "num_inference_steps": 20, "accept": {"class_prob": 0.9}}
    doodl = chain | {"loss": [eot], "opt_steps": 8, "optimizer.init_args.lr": 0.5,
                     "optimizer.init_args.clip": 0.3}  # fmt: skip

    def rejection(draws: int) -> tuple[str, dict]:
        return ("best_of_n", chain | {"loss": [guide], "gamma": 0.5, "candidate_batch": 1,
                                      "n_candidates": draws})  # fmt: skip

    runs = {
        "rejection_sampling": rejection(25),
        "doodl": ("doodl", doodl),
        "hybrid": ("doodl", doodl | {"init_candidates": 9, "opt_steps": 5}),
    }
    for k, m in hybrids:
        # One draw at a time, as rejection sampling's: an item accepted at its j-th draw costs
        # j generations, not a whole batch of them.
        runs[f"hybrid_k{k}_m{m}"] = ("doodl", doodl | {"init_candidates": k, "opt_steps": m,
                                                        "gamma": 0.5, "candidate_batch": 1})  # fmt: skip
    if a.rs_draws != 25:
        runs[f"rejection_sampling_{a.rs_draws}"] = rejection(a.rs_draws)
    strict = {}
    if a.verified:
        shipped = guide | {"init_args": guide["init_args"] | GUIDE_CLASSIFIER}
        verified = {"class_path": "doodl_pl.losses.Verified",
                    "init_args": {"loss": eot, "verifier": shipped}}  # fmt: skip
        strict["doodl_verified"] = ("doodl", doodl | {"loss": [verified],
                                                      "accept": {"class_prob": 0.99}})  # fmt: skip
        # The same with a best-of-9 start (docs/benchmarks.md, "A best-of-k start for the
        # verified DOODL": chosen on the common bin's tune split).
        strict["hybrid_verified"] = ("doodl", strict["doodl_verified"][1] | {
            "init_candidates": 9, "opt_steps": 5, "gamma": 0.5})  # fmt: skip
    for name, (method, over) in (runs | strict).items():
        run_dir = out / name
        cfg = method_config("vocabulary", method, items, run_dir, batch_size=8, overrides=over)
        fit_run(cfg, run_dir)
    # Each column is scored at the threshold it stops at.
    for names, least, folder in ((runs, 0.9, "evaluation"), (strict, 0.99, "evaluation_099")):
        if names:
            doodl_main(["evaluate", *(str(out / n) for n in names), "--names", *names, "--items",
                        str(items), "--accept", f"guide_class_prob={least}", "--judge", "validity",
                        "--fid-reference", str(out / "fid_reference"), "--out", str(out / folder)])  # fmt: skip
            for name, ratio in cost_ratios(out, folder=folder, baseline=next(iter(names))).items():
                print(f"{name}: {ratio}× the first column's calls per accepted valid image")


if __name__ == "__main__":
    main()
