#!/usr/bin/env python
"""Quality of the shipped Shapes-64 models, on held-out seeds the models never trained on.

Prints every figure of the Shapes-64 quality contract (``doodl_pl.shapes64.quality``);
``--json PATH`` also writes them.

    .venv/bin/python scripts/eval_shapes64.py              # all parts that have weights
    .venv/bin/python scripts/eval_shapes64.py --parts vae clip
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from doodl_pl.backbones import DecoderInversion, StableDiffusion
from doodl_pl.evaluation.validity import Validity
from doodl_pl.losses import AestheticLoss, ClipModel, ClipSpec
from doodl_pl.shapes64 import quality
from doodl_pl.shapes64.assets import (
    CLIP,
    CLIP_REL,
    EVAL_CLASSIFIER,
    GUIDE_CLASSIFIER,
    HEAD,
    ROBUST_CLASSIFIER,
    SD,
    available,
)
from doodl_pl.shapes64.dataset import load_split
from doodl_pl.shapes64.items import build_items

EVAL_SEEDS = 7_000_000  # first one-object seed of the reported t2i figures
NEEDS = {
    "vae": ["vae"],
    "vae_content": ["vae", "eval_classifier"],
    "classifiers": ["classifier"],
    "clip": ["clip"],
    "clip_swaps": ["clip"],
    "entity": ["clip", "classifier_robust"],
    "aesthetic": ["clip", "aesthetic"],
    "t2i": ["sd", "eval_classifier"],
}


def _refinement(a: argparse.Namespace) -> tuple[DecoderInversion | None, str]:
    """``--refine-steps``' decoder inversion (None for 0) and the words that say so."""
    if not a.refine_steps:
        return None, ""
    refine = DecoderInversion(a.refine_steps, a.refine_lr)
    return refine, f", latents refined by {refine}"


def part_vae(out: dict, a: argparse.Namespace) -> None:
    images = np.concatenate([load_split("eval_one", a.n)[0], load_split("eval_two", a.n)[0]])
    refine, how = _refinement(a)
    values = quality.vae_psnr(StableDiffusion(a.sd), images, refine=refine)
    out.update(vae_psnr_db=float(np.mean(values)), vae_psnr_db_std=float(np.std(values)))
    print(f"VAE reconstruction PSNR{how}: {np.mean(values):.2f} dB (± {np.std(values):.2f} sd, "
          f"{len(values)} held-out renders; target ≥ 28)")  # fmt: skip


def part_vae_content(out: dict, a: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = build_items("aesthetic", a.n, a.items_split, tmp)
        items = [json.loads(line) for line in path.read_text().splitlines()]
        judge = quality.judge()
        refine, how = _refinement(a)
        kept = quality.vae_content_kept(StableDiffusion(a.sd), judge, items, refine)
        ceiling = quality.vae_content_kept(None, judge, items)
    out.update({f"vae_roundtrip_{k}": e.value for k, e in kept.items()})
    out.update({f"renders_{k}": e.value for k, e in ceiling.items()})
    print(f"VAE round trip alone{how}, {a.n} aesthetic-edit photos ({a.items_split} split): "
          + ", ".join(f"{k} {e}" for k, e in kept.items()))  # fmt: skip
    print("  the same checks on the renders themselves (the judge's ceiling): "
          + ", ".join(f"{k} {e}" for k, e in ceiling.items()))  # fmt: skip


def part_classifiers(out: dict, a: argparse.Namespace) -> None:
    images, records = load_split("eval_one", a.n)
    shapes = [r["objects"][0]["shape"] for r in records]
    # What the generator can draw at best: each render through the VAE (encode, decode).
    sd = StableDiffusion(a.sd) if available()["vae"] else None
    roundtrip = None if sd is None else quality.vae_roundtrip(sd, images)
    have = available()
    nets = [
        ("guide_classifier", GUIDE_CLASSIFIER, "classifier"),
        ("robust_classifier", ROBUST_CLASSIFIER, "classifier_robust"),
        ("eval_classifier", EVAL_CLASSIFIER, "eval_classifier"),
    ]
    for path in a.classifier:
        nets.append((Path(path).stem, {"model_name": "resnet10t", "checkpoint_path": path}, None))
    for name, spec, key in nets:
        if key is not None and not have[key]:
            print(f"{name}: skipped, weights missing")
            continue
        net = Validity(**spec, num_classes=9, input_size=64)
        acc = quality.classifier_accuracy(net, images, shapes)
        out[f"{name}_accuracy"] = acc.value
        target = " (target ≥ 0.97)" if name == "guide_classifier" else ""
        print(f"{name} accuracy on clean held-out renders: {acc}{target}")
        if roundtrip is not None:
            rt = quality.classifier_accuracy(net, roundtrip, shapes)
            out[f"{name}_vae_roundtrip_accuracy"] = rt.value
            print(f"{name} accuracy on the same renders after the VAE round trip: {rt}")


def _clip_renders(a: argparse.Namespace, kind: str):
    """The renders (and records) the CLIP parts read: ``<clip_split>_<kind>``, through the VAE
    round trip with ``--roundtrip`` (as the generator's decoder draws them)."""
    images, records = load_split(f"{a.clip_split}_{kind}", a.n)
    if a.roundtrip:
        images = quality.vae_roundtrip(StableDiffusion(a.sd), images)
    return images, records


def part_clip(out: dict, a: argparse.Namespace) -> None:
    images, records = _clip_renders(a, "one")
    zs = quality.clip_zero_shot(ClipModel(_clip_spec(a)), images, records)
    out.update(
        clip_zero_shot_shape_top1=zs["shape"].value, clip_zero_shot_color_top1=zs["color"].value
    )
    print(f"CLIP zero-shot on {len(records)} {a.clip_split}_one renders{_after(a)}:")
    print(f"CLIP zero-shot shape top-1 ({quality.N_WORDS} words): {zs['shape']} (target ≥ 0.80)")
    print(f"CLIP zero-shot color top-1 (6 colors): {zs['color']} (target ≥ 0.90)")
    out["clip_zero_shot_position_top1"] = zs["position"].value
    print(f"CLIP zero-shot position top-1 (9 phrases; chance 0.11): {zs['position']}")


def _after(a: argparse.Namespace) -> str:
    return " after the VAE round trip" if a.roundtrip else ""


def _clip_spec(a: argparse.Namespace) -> ClipSpec:
    """The CLIP the options name: ``--clip`` (with ``--clip-base``), ``--relation-clip``, or the
    shipped CLIP."""
    if a.clip:
        return ClipSpec(*a.clip, base=a.clip_base)
    return CLIP_REL if a.relation_clip else CLIP


def part_clip_swaps(out: dict, a: argparse.Namespace) -> None:
    images, records = _clip_renders(a, "two")
    clip = ClipModel(_clip_spec(a))
    acc = quality.clip_swap_accuracy(clip, images, records)
    out.update({f"clip_swap_{k}": e.value for k, e in acc.items()})
    print(
        f"CLIP true caption over a hard negative, {len(records)} two-object renders of {a.clip_split}_two{_after(a)} (target ≥ 0.90 each):"
    )
    for kind, e in acc.items():
        print(f"  {kind:9s} swapped: {e}")
    sens = quality.clip_relation_sensitivity(clip, records[:64])
    out.update({f"clip_relation_{k}": v for k, v in sens.items()})
    print(f"  relations, {sens['n']} of 64 scenes (like pairs skipped): cos(caption, relation reversed) {sens['text_cos']:.4f}; "
          f"cos(render, objects' positions exchanged) {sens['image_cos']:.4f}; "
          f"score gap true − reversed {sens['score_gap']:+.4f}")  # fmt: skip


def part_entity(out: dict, a: argparse.Namespace) -> None:
    """What the personalization guide tells apart (issue 28 #2), and two candidate guides."""
    from doodl_pl.evaluation.fid import ClassifierFeatures, ClipFeatures
    from doodl_pl.losses import ClassifierLoss, CLIPImageLoss
    from doodl_pl.shapes64 import entity

    cases = entity.entity_cases(a.n, EVAL_SEEDS + 500_000)
    spec = _clip_spec(a)
    clip = ClipModel(spec)
    robust = ClassifierLoss(**ROBUST_CLASSIFIER, num_classes=9, input_size=64)
    with tempfile.TemporaryDirectory() as tmp:
        guides = {
            "CLIPImageLoss as the demo runs it (8 cuts, min_cut 0.75)": entity.loss_guide(
                CLIPImageLoss([spec], n_cuts=8, min_cut=0.75), Path(tmp)
            ),
            "CLIP image embedding, whole image": entity.feature_guide(ClipFeatures(clip)),
            "robust guide classifier's pre-logit features": entity.feature_guide(
                ClassifierFeatures(robust)
            ),
        }
        print(f"Entity discrimination, {len(cases)} held-out outlined entities moved to a new place "
              "and background: share where the guide puts the entity closer to its reference than "
              "the near miss (target ≥ 0.90 each)")  # fmt: skip
        for name, guide in guides.items():
            d = entity.discrimination(guide, cases)
            out[f"entity_{name}"] = {k: e.value for k, e in d.items()}
            print(f"  {name}:")
            for kind, e in d.items():
                print(f"    {kind:10s} {e}")


def part_aesthetic(out: dict, a: argparse.Namespace) -> None:
    images, records = load_split("eval_one", a.n)
    r = quality.aesthetic_correlation(AestheticLoss(CLIP, HEAD), images, records)
    out["aesthetic_pearson_r"] = r.value
    print(f"aesthetic head Pearson r: {r} (target ≥ 0.8)")


def part_t2i(out: dict, a: argparse.Namespace) -> None:
    sd, checks = StableDiffusion(a.sd), quality.judge()
    t0 = time.time()
    one = quality.t2i_one_object(sd, checks, a.seeds_per_prompt, a.seed_base)
    n = one.color.n
    out.update(t2i_one_color=one.color.value, t2i_one_shape=one.shape.value, t2i_one_n=n)
    out["t2i_one_read_as"] = one.read_as
    print(f"vanilla EDICT (T=50, CFG 7.5), 'a {{color}} {{shape}}' x {n}: color right {one.color} "
          f"(target ≥ 0.90), shape right {one.shape} (target ≥ 0.80)  [{time.time() - t0:.0f} s]")  # fmt: skip
    for s, counts in one.read_as.items():
        ranked = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
        print(f"  '{s}' prompts read as: {ranked}")
    if a.grid:
        from doodl_pl.evaluation.results import image_grid

        image_grid(one.images, len(one.order), a.grid)
        print(f"one-object images (a row per shape word): {a.grid}")
    if a.two:
        _, records = load_split("eval_two", a.two)
        two = quality.t2i_two_object(sd, checks, records)
        out.update(t2i_two_full_match=two["full_match"].value,
                   t2i_two_colors_found=two["colors_found"].value, t2i_two_n=a.two)  # fmt: skip
        print(f"vanilla EDICT two-object prompts x {a.two}: both colors found "
              f"{two['colors_found'].value:.3f}, full match (objects, shapes, relation) "
              f"{two['full_match']}")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--parts", nargs="*", default=list(NEEDS), choices=list(NEEDS))
    p.add_argument("--n", type=int, default=1000, help="held-out renders per check")
    p.add_argument("--seeds-per-prompt", type=int, default=2)
    p.add_argument("--two", type=int, default=64, help="two-object prompts")
    p.add_argument("--json", default=None)
    p.add_argument(
        "--sd", default=SD, help="text-to-image pipeline (its VAE too) to judge (default: shipped)"
    )
    p.add_argument("--items-split", default="tune", choices=["tune", "eval"],
                   help="benchmark split of the photos for --parts vae_content")  # fmt: skip
    p.add_argument("--refine-steps", type=int, default=0,
                   help="--parts vae, vae_content: refine each latent by this many decoder-inversion steps")  # fmt: skip
    p.add_argument("--refine-lr", type=float, default=0.05, help="their Adam step size")
    p.add_argument("--clip", nargs=2, metavar=("CONFIG_JSON", "WEIGHTS"),
                   help="the CLIP for --parts clip, clip_swaps, entity (default: shipped)")  # fmt: skip
    p.add_argument("--clip-base", default=None, metavar="WEIGHTS",
                   help="weights that fill in the tensors --clip's file leaves out (ClipSpec base)")  # fmt: skip
    p.add_argument("--clip-split", default="eval", choices=["eval", "tune"],
                   help="renders for --parts clip (<split>_one) and clip_swaps (<split>_two);\n"
                   "choose CLIP variants on tune")  # fmt: skip
    p.add_argument("--roundtrip", action="store_true",
                   help="--parts clip, clip_swaps: read the renders after the VAE round trip")  # fmt: skip
    p.add_argument("--relation-clip", action="store_true",
                   help="use the shipped relation CLIP (shapes64/clip_rel) for those parts")  # fmt: skip
    p.add_argument("--classifier", nargs="+", default=[], metavar="WEIGHTS",
                   help="--parts classifiers: also read these resnet10t .safetensors files")  # fmt: skip
    p.add_argument("--grid", default=None, help="write the one-object t2i images to this PNG")
    p.add_argument("--seed-base", type=int, default=EVAL_SEEDS,
                   help="first one-object seed; 8000000 with --seeds-per-prompt 4 --two 0 is the\n"
                   "'fresh seeds' check that runs are chosen on (docs/shapes64.md)")  # fmt: skip
    a = p.parse_args()
    torch.manual_seed(0)
    have = available()
    out: dict = {}
    parts = {"vae": part_vae, "vae_content": part_vae_content, "classifiers": part_classifiers, "clip": part_clip,
             "clip_swaps": part_clip_swaps, "entity": part_entity, "aesthetic": part_aesthetic,
             "t2i": part_t2i}  # fmt: skip
    for part in a.parts:
        missing = [k for k in NEEDS[part] if not have[k]]
        if missing:
            print(f"{part}: skipped, weights missing: {missing} (bash scripts/train_shapes64.sh)")
            continue
        with torch.no_grad():
            parts[part](out, a)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
