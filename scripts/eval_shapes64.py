#!/usr/bin/env python
"""Quality of the shipped Shapes-64 models, on held-out seeds the models never trained on.

Prints every figure of the Shapes-64 quality contract; ``--json PATH`` also writes them.

    .venv/bin/python scripts/eval_shapes64.py              # all parts that have weights
    .venv/bin/python scripts/eval_shapes64.py --parts vae clip
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from doodl_pl.evaluation.stats import proportion
from doodl_pl.shapes64 import COLORS, SHAPE_WORD, SHAPES
from doodl_pl.shapes64.assets import CLIP, EVAL_CLASSIFIER, GUIDE_CLASSIFIER, HEAD, SD, available
from doodl_pl.shapes64.dataset import load_split

EVAL_SEEDS = 7_000_000  # first one-object seed of the reported t2i figures


def ci95(successes: float, n: int) -> str:
    """Wilson 95 % interval of a proportion, as text."""
    if n == 0:
        return "n/a"
    e = proportion(np.arange(n) < successes)
    return f"[{e.lo:.3f}, {e.hi:.3f}]"


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def classifier(spec):
    from doodl_pl.losses import ClassifierLoss

    return ClassifierLoss(num_classes=9, input_size=64, target=0, **spec)


@torch.no_grad()
def predict_shapes(clf, images: torch.Tensor) -> np.ndarray:
    return np.concatenate(
        [clf.logits(images[i : i + 256]).argmax(1).numpy() for i in range(0, len(images), 256)]
    )


@torch.no_grad()
def part_vae(out, n):
    from doodl_pl.backbones import StableDiffusion

    sd = StableDiffusion(SD)
    imgs = torch.cat(
        [to_tensor(load_split("eval_one", n)[0]), to_tensor(load_split("eval_two", n)[0])]
    )
    psnr = []
    for i in range(0, len(imgs), 64):
        x = imgs[i : i + 64]
        rec = sd.decode(sd.encode(x))
        mse = ((rec - x) ** 2).mean(dim=(1, 2, 3))
        psnr += (10 * torch.log10(1 / mse.clamp_min(1e-10))).tolist()
    out["vae_psnr_db"] = float(np.mean(psnr))
    out["vae_psnr_db_std"] = float(np.std(psnr))
    print(
        f"VAE reconstruction PSNR: {np.mean(psnr):.2f} dB (± {np.std(psnr):.2f} sd, "
        f"{len(psnr)} held-out renders; target ≥ 28)"
    )


@torch.no_grad()
def part_classifiers(out, n):
    images, records = load_split("eval_one", n)
    x = to_tensor(images)
    truth = np.array([SHAPES.index(r["objects"][0]["shape"]) for r in records])
    have = available()
    for name, spec, key in (
        ("guide_classifier", GUIDE_CLASSIFIER, "classifier"),
        ("eval_classifier", EVAL_CLASSIFIER, "eval_classifier"),
    ):
        if not have[key]:
            print(f"{name}: skipped, weights missing")
            continue
        hits = int((predict_shapes(classifier(spec), x) == truth).sum())
        out[f"{name}_accuracy"] = hits / len(truth)
        target = " (target ≥ 0.97)" if name == "guide_classifier" else ""
        print(
            f"{name} accuracy on clean held-out renders: {hits / len(truth):.4f} "
            f"{ci95(hits, len(truth))}{target}"
        )


@torch.no_grad()
def part_clip(out, n):
    from doodl_pl.losses import ClipModel

    clip = ClipModel(CLIP)
    images, records = load_split("eval_one", n)
    emb = torch.cat([clip.encode_image(to_tensor(images[i : i + 256])) for i in range(0, n, 256)])
    words = sorted(set(SHAPE_WORD.values()))
    colors = list(COLORS)
    shape_hits = color_hits = 0
    for e, rec in zip(emb, records, strict=True):
        o = rec["objects"][0]
        shape_txt = clip.encode_text(
            [f"{'an' if o['color'][0] in 'aeiou' else 'a'} {o['color']} {w}" for w in words]
        )
        color_txt = clip.encode_text(
            [f"{'an' if c[0] in 'aeiou' else 'a'} {c} {o['word']}" for c in colors]
        )
        shape_hits += words[int((shape_txt @ e).argmax())] == o["word"]
        color_hits += colors[int((color_txt @ e).argmax())] == o["color"]
    out["clip_zero_shot_shape_top1"] = shape_hits / n
    out["clip_zero_shot_color_top1"] = color_hits / n
    print(
        f"CLIP zero-shot shape top-1 ({len(words)} words): {shape_hits / n:.4f} {ci95(shape_hits, n)} (target ≥ 0.80)"
    )
    print(
        f"CLIP zero-shot color top-1 (6 colors): {color_hits / n:.4f} {ci95(color_hits, n)} (target ≥ 0.90)"
    )


@torch.no_grad()
def part_aesthetic(out, n):
    from doodl_pl.losses import AestheticLoss

    head = AestheticLoss(CLIP, HEAD)
    images, records = load_split("eval_one", n)
    pred = torch.cat([head.score(to_tensor(images[i : i + 256])) for i in range(0, n, 256)]).numpy()
    true = np.array([r["aesthetic"] for r in records])
    r = float(np.corrcoef(pred, true)[0, 1])
    out["aesthetic_pearson_r"] = r
    z, se = np.arctanh(r), 1 / math.sqrt(n - 3)
    print(
        f"aesthetic head Pearson r: {r:.4f} [{np.tanh(z - 1.96 * se):.3f}, {np.tanh(z + 1.96 * se):.3f}] (target ≥ 0.8)"
    )


@torch.no_grad()
def generate(sd, prompts, seeds, steps=50, scale=7.5, batch=16):
    from doodl_pl.sampling import EdictChain, Schedule

    schedule = Schedule.from_scheduler(sd.scheduler, steps)
    out = []
    for i in range(0, len(prompts), batch):
        p, s = prompts[i : i + batch], seeds[i : i + batch]
        x = torch.stack(
            [torch.randn(sd.latent_shape(), generator=torch.Generator().manual_seed(k)) for k in s]
        )
        cond = sd.condition(p, None, scale)
        x0, _ = EdictChain(sd.eps_model, schedule, cond).sample(x, x)
        out.append((sd.decode(x0).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def save_grid(path: str, images: np.ndarray, rows: int) -> None:
    """Write ``images`` (grouped by shape word) as a grid, a row per shape word, enlarged 2×."""
    from PIL import Image

    if len(images) % rows:
        raise ValueError(f"--grid: {len(images)} images do not fill {rows} rows")
    cols = len(images) // rows
    h, w = images.shape[1:3]
    g = images.reshape(rows, cols, h, w, 3).transpose(0, 2, 1, 3, 4)
    g = g.reshape(rows * h, cols * w, 3)
    Image.fromarray(g).resize((cols * w * 2, rows * h * 2), Image.NEAREST).save(path)
    print(f"one-object images (a row per shape word): {path}")


@torch.no_grad()
def part_t2i(out, seeds_per_prompt, n_two, sd_dir=SD, grid=None, seed_base=EVAL_SEEDS):
    from doodl_pl.backbones import StableDiffusion
    from doodl_pl.shapes64.analysis import find_objects, isolate, relation_of

    sd = StableDiffusion(sd_dir)
    clf = classifier(EVAL_CLASSIFIER)
    named = [s for s in SHAPES if SHAPE_WORD[s] == s]
    prompts, truth, seeds = [], [], []
    for c in COLORS:
        for s in named:
            for _ in range(seeds_per_prompt):
                prompts.append(f"{'an' if c[0] in 'aeiou' else 'a'} {c} {s}")
                truth.append((c, s))
                seeds.append(seed_base + len(seeds))
    t0 = time.time()
    imgs = generate(sd, prompts, seeds)
    color_ok = shape_ok = 0
    read_as: dict[str, dict[str, int]] = {s: {} for s in named}
    for img, (c, s) in zip(imgs, truth, strict=True):
        found = find_objects(img)
        pred = "nothing"
        if found:
            color_ok += found[0].color == c
            i = int(predict_shapes(clf, to_tensor(isolate(img, found[0], found)[None]))[0])
            pred = SHAPES[i]
            shape_ok += SHAPE_WORD[pred] == s
        read_as[s][pred] = read_as[s].get(pred, 0) + 1
    n = len(prompts)
    out.update(t2i_one_color=color_ok / n, t2i_one_shape=shape_ok / n, t2i_one_n=n)
    print(
        f"vanilla EDICT (T=50, CFG 7.5), 'a {{color}} {{shape}}' x {n}: color right "
        f"{color_ok / n:.3f} {ci95(color_ok, n)} (target ≥ 0.90), shape right "
        f"{shape_ok / n:.3f} {ci95(shape_ok, n)} (target ≥ 0.80)  [{time.time() - t0:.0f} s]"
    )
    out["t2i_one_read_as"] = read_as
    for s, counts in read_as.items():
        ranked = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
        print(f"  '{s}' prompts read as: {ranked}")
    if grid:
        by_shape = sorted(range(n), key=lambda i: named.index(truth[i][1]))
        save_grid(grid, imgs[by_shape], len(named))
    if n_two == 0:
        return
    _, records = load_split("eval_two", n_two)
    imgs = generate(sd, [r["caption"] for r in records], [7_500_000 + i for i in range(n_two)])
    full = parts = 0
    for img, rec in zip(imgs, records, strict=True):
        found = find_objects(img)
        by = {f.color: f for f in found}
        a, b = rec["objects"]
        if len(found) != 2 or a["color"] not in by or b["color"] not in by:
            continue
        parts += 1
        fa, fb = by[a["color"]], by[b["color"]]
        shapes = [
            SHAPE_WORD[SHAPES[int(predict_shapes(clf, to_tensor(isolate(img, f, found)[None]))[0])]]
            for f in (fa, fb)
        ]
        full += shapes == [a["word"], b["word"]] and relation_of(fa, fb) == rec["relation"]
    out.update(t2i_two_full_match=full / n_two, t2i_two_colors_found=parts / n_two, t2i_two_n=n_two)
    print(
        f"vanilla EDICT two-object prompts x {n_two}: both colors found {parts / n_two:.3f}, "
        f"full match (objects, shapes, relation) {full / n_two:.3f} {ci95(full, n_two)}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--parts", nargs="*", default=["vae", "classifiers", "clip", "aesthetic", "t2i"])
    p.add_argument("--n", type=int, default=1000, help="held-out renders per check")
    p.add_argument("--seeds-per-prompt", type=int, default=2)
    p.add_argument("--two", type=int, default=64, help="two-object prompts")
    p.add_argument("--json", default=None)
    p.add_argument("--sd", default=SD, help="text-to-image pipeline to judge (default: shipped)")
    p.add_argument("--grid", default=None, help="write the one-object t2i images to this PNG")
    p.add_argument(
        "--seed-base",
        type=int,
        default=EVAL_SEEDS,
        help="first one-object seed; 8000000 with --seeds-per-prompt 4 --two 0 is the\n"
        "'fresh seeds' check that runs are chosen on (docs/shapes64.md)",
    )
    a = p.parse_args()
    torch.manual_seed(0)
    have = available()
    need = {
        "vae": ["vae"],
        "classifiers": ["classifier"],
        "clip": ["clip"],
        "aesthetic": ["clip", "aesthetic"],
        "t2i": ["sd", "eval_classifier"],
    }
    out: dict = {}
    for part in a.parts:
        missing = [k for k in need[part] if not have[k]]
        if missing:
            print(f"{part}: skipped, weights missing: {missing} (bash scripts/train_shapes64.sh)")
            continue
        if part == "t2i":
            part_t2i(out, a.seeds_per_prompt, a.two, a.sd, a.grid, a.seed_base)
        else:
            globals()[f"part_{part}"](out, a.n)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
