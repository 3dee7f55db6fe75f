"""Memory and FLOPs of one DOODL step at SD 1.5 / SD 2.1 / SDXL's real size, with each lever.

    .venv/bin/python scripts/size_step.py                  # the table in docs/benchmarks.md
    .venv/bin/python scripts/size_step.py --device cuda    # also run each row on a GPU: seconds
                                                           # per step and the allocator's peak

Measured on the ``meta`` device (shapes only; seconds on any machine): see ``doodl_pl.sizing``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from doodl_pl.sizing import Setting, format_flops, format_table, measure_step, plot_measured

ALL = dict(unet_checkpointing=True, vae_checkpointing=True, guide_checkpointing=True,
           guide_dtype="float16", offload_text_encoders=True, sequential_decode=True)  # fmt: skip
LEVERS = {
    "none": {},
    "math-attention": {"attention": "math"},
    "unet-ckpt": {"unet_checkpointing": True},
    "vae-ckpt": {"vae_checkpointing": True},
    "guide-ckpt": {"guide_checkpointing": True},
    "guide-fp16": {"guide_dtype": "float16"},
    "offload-text": {"offload_text_encoders": True},
    "seq-decode": {"sequential_decode": True},
    "all": ALL,
    "all+bdia": dict(ALL, sampler="bdia"),  # one final latent to decode and score, not two
    # "all" before sequential_decode joined it (2026-12-04): the first GPU rows in the docs
    "five": dict(ALL, sequential_decode=False),
    "five+bdia": dict(ALL, sequential_decode=False, sampler="bdia"),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backbones", nargs="+", default=["sd15", "sd21", "sdxl"])
    p.add_argument("--engines", nargs="+", default=["reversible", "checkpoint", "autograd"])
    p.add_argument("--levers", nargs="+", choices=list(LEVERS),
                   default=[k for k in LEVERS if not k.startswith("five")])  # fmt: skip
    p.add_argument("--dtype", default="float16")
    p.add_argument("--steps", type=int, default=50, help="T (memory depends on it off reversible)")
    p.add_argument("--classifier", action="store_true", help="add the timm ResNet-50 guide")
    p.add_argument("--device", default=None, help="also run each row there (e.g. cuda)")
    p.add_argument("--json", default=None, help="write the rows here")
    p.add_argument("--plot", nargs="+", metavar=("PNG", "JSON"), default=None,
                   help="only plot: measured peak against estimate of the rows in the JSON\n"
                   "files (written with --device), to PNG")  # fmt: skip
    a = p.parse_args()
    if a.plot:
        rows = [r for f in a.plot[1:] for r in json.loads(Path(f).read_text())]
        plot_measured(rows, a.plot[0])
        print(f"wrote {a.plot[0]}")
        return
    rows = []
    for backbone in a.backbones:
        for engine in a.engines:
            for name in a.levers if engine == "reversible" else ["none"]:
                s = Setting(backbone, a.dtype, engine, steps=a.steps, classifier=a.classifier)
                s = replace(s, **LEVERS[name])
                row = measure_step(s)
                if a.device and engine == "reversible":
                    from doodl_pl.real_step import time_step

                    try:
                        row.update(time_step(s, a.device))
                    except Exception as err:  # e.g. out of memory: record it, go on
                        row["measured_error"] = f"{type(err).__name__}: {err}"[:300]
                rows.append(row)
                print(format_table([row]).splitlines()[-1], flush=True)
                if "step_s" in row or "measured_error" in row:
                    print(_measured(row), flush=True)
                if a.json:  # after every row: a run cut short keeps what it measured
                    with open(a.json, "w") as f:
                        json.dump(rows, f, indent=1)
    print()
    print(format_table(rows))
    print()
    print(format_flops([r for r in rows if r["engine"] == "reversible"]))


def _measured(row: dict) -> str:
    if "measured_error" in row:
        return f"  measured: {row['measured_error']}"
    peak = row.get("measured_peak_gb")
    return f"  measured: {row['step_s']:.2f} s/step, allocator peak " + (
        "n/a" if peak is None else f"{peak:.2f} GiB"
    )


if __name__ == "__main__":
    main()
