"""Quality of the Shapes-64 models on held-out seeds: every figure of the quality contract
(``docs/shapes64.md``). ``scripts/eval_shapes64.py`` prints them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..backbones.decoder_inversion import DecoderInversion
from ..backbones.stable_diffusion import StableDiffusion
from ..evaluation.stats import Estimate, mean, proportion
from ..evaluation.validity import Validity
from ..losses.aesthetic import AestheticLoss
from ..losses.clip_models import ClipModel
from ..sampling.edict import EdictChain
from ..sampling.schedule import Schedule
from .analysis import find_objects, relation_of
from .checks import Shapes64Checks
from .dataset import scene_from_record
from .guides import validity
from .negatives import KINDS, OPPOSITE, describe, hard_negatives, places_exchanged, relation_matters
from .render import render
from .world import COLORS, GRID_POS, SHAPE_WORD, SHAPES, article, position_phrase

__all__ = [
    "T2iOneObject",
    "one_object_prompts",
    "aesthetic_correlation",
    "classifier_accuracy",
    "clip_relation_sensitivity",
    "clip_swap_accuracy",
    "clip_zero_shot",
    "generate",
    "judge",
    "psnr",
    "t2i_one_object",
    "t2i_two_object",
    "to_tensor",
    "to_uint8",
    "vae_content_kept",
    "vae_psnr",
    "vae_roundtrip",
]


#: Shape words of the world (the hidden polygon classes share one): the zero-shot choices.
N_WORDS = len(set(SHAPE_WORD.values()))


def to_tensor(images: np.ndarray) -> Tensor:
    """uint8 ``(N, H, W, 3)`` → float ``(N, 3, H, W)`` in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def to_uint8(images: Tensor) -> np.ndarray:
    """float ``(N, 3, H, W)`` in [0, 1] (clamped) → uint8 ``(N, H, W, 3)``: :func:`to_tensor`'s
    inverse."""
    return (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """Per-image PSNR in dB of images in [0, 1]."""
    mse = ((a - b) ** 2).flatten(1).mean(dim=1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


def judge(spec: dict | None = None) -> Shapes64Checks:
    """The ground-truth checks, read by the evaluation classifier (``spec``: timm name and
    weights; default the shipped one)."""
    return Shapes64Checks(validity(spec))


def _round_trip(sd: StableDiffusion, x: Tensor, refine: DecoderInversion | None) -> Tensor:
    """``x`` through the VAE: posterior mean, refined by ``refine`` when given, decoded without
    the clamp (the caller clamps, or reads what lies past [0, 1])."""
    z = sd.encode(x)
    if refine is not None:
        z = refine(sd, x, z)
    return sd.decode(z, clamp=False)


@torch.no_grad()
def vae_roundtrip(sd: StableDiffusion, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """Each uint8 render through the VAE (posterior mean, decode), as uint8 again."""
    x = to_tensor(images)
    return np.concatenate(
        [
            to_uint8(_round_trip(sd, x[i : i + batch], None).clamp(0, 1))
            for i in range(0, len(x), batch)
        ]
    )


@torch.no_grad()
def vae_psnr(
    sd: StableDiffusion,
    images: np.ndarray,
    batch: int = 64,
    refine: DecoderInversion | None = None,
) -> list[float]:
    """PSNR of each image's VAE round trip (posterior mean, refined by ``refine`` when given)."""
    x = to_tensor(images)
    out: list[float] = []
    for i in range(0, len(x), batch):
        part = x[i : i + batch]
        out += psnr(_round_trip(sd, part, refine).clamp(0, 1), part).tolist()
    return out


@torch.no_grad()
def classifier_accuracy(classifier: Validity, images: np.ndarray, shapes: list[str]) -> Estimate:
    """Top-1 accuracy on one-object renders whose shapes are ``shapes``."""
    pred = classifier.predict(to_tensor(images)).tolist()
    return proportion([SHAPES[p] == s for p, s in zip(pred, shapes, strict=True)])


@torch.no_grad()
def clip_zero_shot(clip: ClipModel, images: np.ndarray, records: list[dict]) -> dict[str, Estimate]:
    """Zero-shot top-1 over the shape words (color fixed), over the colors (word fixed) and over
    the nine position phrases (color and word fixed)."""
    emb = torch.cat(
        [clip.encode_image(to_tensor(images[i : i + 256])) for i in range(0, len(images), 256)]
    )
    words = sorted(set(SHAPE_WORD.values()))
    places = [p for row in GRID_POS for p in row]
    shape_ok, color_ok, place_ok = [], [], []
    for e, rec in zip(emb, records, strict=True):
        o = rec["objects"][0]
        by_word = clip.encode_text([f"{article(o['color'])} {o['color']} {w}" for w in words])
        by_color = clip.encode_text([f"{article(c)} {c} {o['word']}" for c in COLORS])
        name = f"{article(o['color'])} {o['color']} {o['word']}"
        by_place = clip.encode_text([f"{name} {p}" for p in places])
        shape_ok.append(words[int((by_word @ e).argmax())] == o["word"])
        color_ok.append(list(COLORS)[int((by_color @ e).argmax())] == o["color"])
        place_ok.append(places[int((by_place @ e).argmax())] == position_phrase(o["cx"], o["cy"]))
    return {
        "shape": proportion(shape_ok),
        "color": proportion(color_ok),
        "position": proportion(place_ok),
    }


@torch.no_grad()
def clip_swap_accuracy(
    clip: ClipModel, images: np.ndarray, records: list[dict]
) -> dict[str, Estimate]:
    """Per kind of hard negative (:data:`~doodl_pl.shapes64.negatives.KINDS`), how often the CLIP
    scores a two-object render's true caption above the caption changed in that one way."""
    wins: dict[str, list[bool]] = {k: [] for k in KINDS}
    for i in range(0, len(images), 64):
        emb = clip.encode_image(to_tensor(images[i : i + 64]))
        for e, rec in zip(emb, records[i : i + 64], strict=True):
            scene = scene_from_record(rec)
            negatives = hard_negatives(scene)
            true = describe(scene.objects[0], scene.relation, scene.objects[1])
            txt = clip.encode_text([true, *negatives.values()])
            sims = (txt @ e).tolist()
            for kind, sim in zip(negatives, sims[1:], strict=True):
                wins[kind].append(sims[0] > sim)
    return {k: proportion(v) for k, v in wins.items()}


@torch.no_grad()
def clip_relation_sensitivity(clip: ClipModel, records: list[dict]) -> dict[str, float]:
    """Where a CLIP loses relations, on two-object scenes: the median cosine between a caption
    and its relation-reversed twin (text side), between a render and the same scene with the two
    objects' positions exchanged (image side), and the mean score gap true − reversed, over the
    ``n`` scenes measured: scenes of two like objects (same color and shape word) are skipped,
    as reversing them says the same."""
    text_cos, image_cos, gap = [], [], []
    for rec in records:
        scene = scene_from_record(rec)
        if not relation_matters(scene):
            continue  # two like objects: the reversed caption says the same scene
        a, b = scene.objects
        reversed_ = describe(a, OPPOSITE[scene.relation], b)
        t = clip.encode_text([describe(a, scene.relation, b), reversed_])
        moved = places_exchanged(scene)
        im = clip.encode_image(to_tensor(np.stack([render(scene), render(moved)])))
        text_cos.append(float(t[0] @ t[1]))
        image_cos.append(float(im[0] @ im[1]))
        gap.append(float(im[0] @ t[0] - im[0] @ t[1]))
    return {
        "n": len(text_cos),
        "text_cos": float(np.median(text_cos)),
        "image_cos": float(np.median(image_cos)),
        "score_gap": float(np.mean(gap)),
    }


@torch.no_grad()
def aesthetic_correlation(head: AestheticLoss, images: np.ndarray, records: list[dict]) -> Estimate:
    """Pearson r of predicted against true aesthetic scores, Fisher-z 95 % interval."""
    pred = torch.cat(
        [head.score(to_tensor(images[i : i + 256])) for i in range(0, len(images), 256)]
    )
    true = np.array([r["aesthetic"] for r in records])
    r = float(np.corrcoef(pred.numpy(), true)[0, 1])
    z, se = math.atanh(r), 1 / math.sqrt(len(true) - 3)
    return Estimate(r, math.tanh(z - 1.96 * se), math.tanh(z + 1.96 * se), len(true), "fisher-z")


@torch.no_grad()
def vae_content_kept(
    sd: StableDiffusion | None,
    checks: Shapes64Checks,
    items: list[dict],
    refine: DecoderInversion | None = None,
    batch: int = 64,
) -> dict:
    """On edit items (their ``image`` and ``truth``): how much of the content survives the VAE
    round trip alone (encode → posterior mean, refined by ``refine`` when given → decode), as the
    edit checks read it, and ``pixels_past_range``: the share of pixels the decoder puts outside
    [0, 1] (the clamp passes no gradient there). ``sd=None`` reads the renders themselves: the
    judge's own ceiling."""
    from ..data.images import load_image

    per: dict[str, list[bool]] = {"content_kept": [], "shape": [], "outline": [], "color": []}
    past: list[float] = []
    for i in range(0, len(items), batch):
        part = items[i : i + batch]
        x = torch.cat([load_image(item["image"])[None] for item in part])
        if sd is not None:
            raw = _round_trip(sd, x, refine)
            past += ((raw < 0) | (raw > 1)).flatten(1).float().mean(1).tolist()
            out = to_uint8(raw.clamp(0, 1))
        else:
            out = to_uint8(x)
        for item, image, source in zip(part, out, to_uint8(x), strict=True):
            result = checks.check(image, item["truth"], source)
            for k in per:
                per[k].append(result.get(k, 0.0) == 1.0)
    kept = {k: proportion(v) for k, v in per.items()}
    return kept | ({"pixels_past_range": mean(past)} if past else {})


@torch.no_grad()
def generate(
    sd: StableDiffusion,
    prompts: list[str],
    seeds: list[int],
    steps: int = 50,
    scale: float = 7.5,
    batch: int = 16,
) -> np.ndarray:
    """Vanilla EDICT images (uint8 ``(N, H, W, 3)``); each x_T from its seed alone, as
    :meth:`~doodl_pl.modules.base.GenerationModule.noise` draws it."""
    schedule = Schedule.from_scheduler(sd.scheduler, steps)
    out = []
    for i in range(0, len(prompts), batch):
        p, s = prompts[i : i + batch], seeds[i : i + batch]
        x = torch.stack(
            [torch.randn(sd.latent_shape(), generator=torch.Generator().manual_seed(k)) for k in s]
        )
        x0, _ = EdictChain(sd.eps_model, schedule, sd.condition(p, None, scale)).sample(x, x)
        out.append(to_uint8(sd.decode(x0)))
    return np.concatenate(out)


@dataclass
class T2iOneObject:
    """One-object text-to-image quality: ``a {color} {shape}`` for every named shape and color."""

    color: Estimate
    shape: Estimate
    read_as: dict[str, dict[str, int]] = field(default_factory=dict)
    images: np.ndarray | None = None
    order: list[str] = field(default_factory=list)


def one_object_prompts(seeds_per_prompt: int, seed_base: int) -> tuple[list[str], list, list[int]]:
    """Prompts, (color, shape) truths and seeds: every color × named shape × seeds_per_prompt."""
    named = [s for s in SHAPES if SHAPE_WORD[s] == s]
    prompts, truth, seeds = [], [], []
    for c in COLORS:
        for s in named:
            for _ in range(seeds_per_prompt):
                prompts.append(f"{article(c)} {c} {s}")
                truth.append((c, s))
                seeds.append(seed_base + len(seeds))
    return prompts, truth, seeds


@torch.no_grad()
def t2i_one_object(
    sd: StableDiffusion, checks: Shapes64Checks, seeds_per_prompt: int, seed_base: int
) -> T2iOneObject:
    """Color and shape right (the evaluation classifier on the isolated object), and what each
    shape's prompts were read as."""
    prompts, truth, seeds = one_object_prompts(seeds_per_prompt, seed_base)
    images = generate(sd, prompts, seeds)
    named = list(dict.fromkeys(s for _, s in truth))
    color_ok, shape_ok = [], []
    read_as: dict[str, dict[str, int]] = {s: {} for s in named}
    for img, (c, s) in zip(images, truth, strict=True):
        found = find_objects(img)
        pred = checks.shape_of(img, found[0], found) if found else "nothing"
        color_ok.append(bool(found) and found[0].color == c)
        shape_ok.append(bool(found) and SHAPE_WORD[pred] == s)
        read_as[s][pred] = read_as[s].get(pred, 0) + 1
    order = sorted(range(len(truth)), key=lambda i: named.index(truth[i][1]))
    return T2iOneObject(proportion(color_ok), proportion(shape_ok), read_as, images[order], named)


@torch.no_grad()
def t2i_two_object(
    sd: StableDiffusion, checks: Shapes64Checks, records: list[dict], seed_base: int = 7_500_000
) -> dict[str, Estimate]:
    """On two-object captions: both colors found, and full match (colors, shape words and
    relation)."""
    images = generate(
        sd, [r["caption"] for r in records], [seed_base + i for i in range(len(records))]
    )
    found_both, full = [], []
    for img, rec in zip(images, records, strict=True):
        found = find_objects(img)
        by = {f.color: f for f in found}
        a, b = rec["objects"]
        ok = len(found) == 2 and a["color"] in by and b["color"] in by
        found_both.append(ok)
        if not ok:
            full.append(False)
            continue
        fa, fb = by[a["color"]], by[b["color"]]
        words = [SHAPE_WORD[checks.shape_of(img, f, found)] for f in (fa, fb)]
        full.append(words == [a["word"], b["word"]] and relation_of(fa, fb) == rec["relation"])
    return {"colors_found": proportion(found_both), "full_match": proportion(full)}
