"""Recipe: the Shapes-64 CLIP (open_clip), trained contrastively on (render, caption) pairs."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...hub import resolve
from ...utils.weights import load_weights, save_weights
from ..dataset import scene_from_record
from ..negatives import hard_negatives
from ..world import caption
from .base import MAX_TOKENS, Recipe, to01
from .views import RoundTrip, perturb

__all__ = ["CLIP_CONFIG", "ClipRecipe"]

TOKENS = "token_embedding.weight"

CLIP_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {
        "image_size": 64,
        "layers": 4,
        "width": 128,
        "patch_size": 8,
        "head_width": 32,
        "mlp_ratio": 2.0,
    },
    "text_cfg": {
        "context_length": MAX_TOKENS,
        "vocab_size": 49408,
        "width": 64,
        "heads": 4,
        "layers": 3,
        "mlp_ratio": 2.0,
    },
}


class ClipRecipe(Recipe):
    """A small open_clip model trained contrastively on (render, caption) pairs.

    Exports ``<name>.json`` (the open_clip model config) and ``<name>.safetensors``.

    Args:
        model_cfg: the open_clip model config (default :data:`CLIP_CONFIG`).
        hard_negatives: weight of a hard-negative term (NegCLIP): each two-object image's
            caption must also beat that caption's hard negatives
            (:func:`~doodl_pl.shapes64.negatives.hard_negatives`) in a softmax of their own;
            ``None`` leaves it out.
        init_weights: start from these weights (safetensors of the same config), e.g. to
            fine-tune the shipped CLIP (with ``tokens_from``, a file without the token table);
            ``None`` starts from scratch.
        entity_negatives: weight of an image term (issue 28 #2): each outlined one-object image
            (at most 16 a batch) must embed closer to the same entity moved to a new place and
            background than to its near misses (another outline colour, fill or shape, the
            outline removed; :func:`~doodl_pl.shapes64.entity.near_misses`); ``None`` leaves
            it out.
        freeze_text: train the image tower (and the logit scale) alone; the text tower stays
            bit-identical, so the text-to-image model, whose text encoder it is, stays valid.
        relation_images: weight of an image-side relation term: each two-object image's
            caption must score it above the same scene with the two objects' places exchanged
            (at most 32 a batch); ``None`` leaves it out.
        relation_texts: weight of a text-only relation term: each two-object caption ("A above
            B") must embed closer to its paraphrase ("B below A") than to its relation reversed
            ("A below B"). It breaks the symmetry in which neither tower encodes order (issue 28
            #3: without it relations stayed at chance); ``None`` leaves it out.
        tokens_from: weights (safetensors) of a CLIP with this text width whose token table
            this model takes and keeps frozen; the export then leaves the table out, to be
            loaded with ``ClipSpec(base=…)`` (6 MiB of a small CLIP's 7 are the table).
        image_from: weights of a CLIP of this config whose image tower (``visual.*``) this
            model starts from, e.g. the shipped CLIP's, which already reads shapes.
        roundtrip: share of each batch's images first passed through the VAE in ``vae_dir``
            (and, for ``relation_images``, their places-exchanged twins too), so the image
            tower sees renders as the generator's decoder draws them (issue 25 #2, a robust
            CLIP); 0: clean renders only.
        augment: blur, shifts and pixel noise of standard deviation up to ``noise`` on every
            image the image tower is trained on.
        lr, export_dir: optimiser and output.
        name: the exported model's name.
    """

    def __init__(
        self,
        model_cfg: dict | None = None,
        hard_negatives: float | None = None,
        init_weights: str | None = None,
        entity_negatives: float | None = None,
        freeze_text: bool = False,
        relation_images: float | None = None,
        relation_texts: float | None = None,
        tokens_from: str | None = None,
        image_from: str | None = None,
        roundtrip: float = 0.0,
        augment: bool = False,
        noise: float = 0.05,
        vae_dir: str = "pkg:shapes64/sd/vae",
        lr: float = 5e-4,
        export_dir: str = "pkg:shapes64/clip",
        name: str = "shapes64-clip",
        warmup: int = 200,
    ) -> None:
        super().__init__(lr, export_dir, warmup=warmup)
        import open_clip

        self.name, self.cfg = name, model_cfg or CLIP_CONFIG
        # open_clip builds models by registered config name; register it from a scratch folder
        # (the export folder gets its copy at export, not when a recipe is merely built).
        cfg_path = Path(tempfile.mkdtemp()) / f"{name}.json"
        cfg_path.write_text(json.dumps(self.cfg, indent=1))
        open_clip.add_model_config(str(cfg_path))
        self.model = open_clip.create_model(name, pretrained=None)
        self.tokens_from = tokens_from
        table = None if tokens_from is None else load_weights(resolve(tokens_from))[TOKENS]
        if init_weights is not None:
            state = dict(load_weights(resolve(init_weights)))
            if table is not None:  # a model trained with `tokens_from` was saved without it
                state[TOKENS] = table
            self.model.load_state_dict({k: v.float() for k, v in state.items()})
        if image_from is not None:
            visual = {
                k: v.float()
                for k, v in load_weights(resolve(image_from)).items()
                if k.startswith("visual.")
            }
            self.model.load_state_dict(visual, strict=False)
        if table is not None:
            self.model.token_embedding.weight.data.copy_(table.float())
            self.model.token_embedding.weight.requires_grad_(False)
        if freeze_text:
            for key, p in self.model.named_parameters():
                if not key.startswith(("visual.", "logit_scale")):
                    p.requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(name)
        weights = {
            "hard_negatives": hard_negatives,
            "entity_negatives": entity_negatives,
            "relation_images": relation_images,
            "relation_texts": relation_texts,
        }
        for key, w in weights.items():
            if w is not None and w <= 0:
                raise ValueError(f"`{key}` must be > 0 or null, got {w}")
        if not noise >= 0:
            raise ValueError(f"`noise` must be >= 0, got {noise}")
        self.roundtrip = RoundTrip(roundtrip, vae_dir)
        self.augment, self.noise = augment, noise
        self.hard_negatives, self.entity_negatives = hard_negatives, entity_negatives
        self.relation_images, self.relation_texts = relation_images, relation_texts
        from ...losses.clip_models import OPENAI_MEAN, OPENAI_STD

        self.register_buffer("mean", torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(OPENAI_STD).view(1, 3, 1, 1), persistent=False)

    def training_step(self, batch, _):
        idx = batch[1].tolist()
        scenes = [scene_from_record(self.records[j]) for j in idx]
        texts = [
            caption(s, np.random.default_rng([j, self.global_step]))
            for s, j in zip(scenes, idx, strict=True)
        ]
        negatives = [
            list(hard_negatives(s).values()) if self.hard_negatives else [] for s in scenes
        ]
        img = self._encode_images(self.roundtrip(to01(batch[0])))
        tokens = self.tokenizer(texts + [t for ns in negatives for t in ns]).to(self.device)
        txt = F.normalize(self.model.encode_text(tokens), dim=-1)
        scale = self.model.logit_scale.exp().clamp(max=100)
        n = len(texts)
        logits = scale * img @ txt[:n].T
        # identical captions in a batch are positives too
        same = torch.tensor([[a == b for b in texts] for a in texts], device=self.device).float()
        target = same / same.sum(1, keepdim=True)
        loss = (
            -(target * logits.log_softmax(1)).sum(1).mean()
            - (target * logits.T.log_softmax(1)).sum(1).mean()
        ) / 2
        self.log("train/loss", loss, prog_bar=True)
        if self.hard_negatives:
            # each two-object image: its caption against that caption's hard negatives
            terms, start = [], n
            for i, ns in enumerate(negatives):
                if ns:
                    cand = torch.cat([txt[i : i + 1], txt[start : start + len(ns)]])
                    terms.append(-(scale * cand @ img[i]).log_softmax(0)[0])
                    start += len(ns)
            if terms:
                hn = torch.stack(terms).mean()
                self.log("train/hard_negatives", hn, prog_bar=True)
                loss = loss + self.hard_negatives * hn
        terms = (
            ("entity_negatives", lambda: self._entity_term(scenes, idx, img, scale)),
            ("relation_texts", lambda: self._relation_text_term(scenes)),
            ("relation_images", lambda: self._relation_term(scenes, img, txt[:n], scale)),
        )
        for key, term_of in terms:
            weight = getattr(self, key)
            term = term_of() if weight else None
            if term is not None:
                self.log(f"train/{key}", term, prog_bar=True)
                loss = loss + weight * term
        return loss

    def _encode_images(self, x01):
        """Unit image embeddings of images in [0, 1], perturbed first when ``augment``."""
        if self.augment:
            x01 = perturb(x01, self.noise)
        return F.normalize(self.model.encode_image((x01 - self.mean) / self.std), dim=-1)

    def _relation_text_term(self, scenes):
        """A text-only term: each two-object caption ("A above B") must embed closer to its
        paraphrase ("B below A") than to its relation reversed ("A below B"), so the text tower
        encodes order whatever the images do; ``None`` when the batch has no such scene."""
        from ..negatives import OPPOSITE, describe, relation_matters

        texts = []
        for s in scenes:
            if not relation_matters(s) or len(texts) == 3 * 32:
                continue
            (a, b), rel = s.objects, s.relation
            texts += [
                describe(a, rel, b),
                describe(b, OPPOSITE[rel], a),
                describe(a, OPPOSITE[rel], b),
            ]
        if not texts:
            return None
        emb = F.normalize(self.model.encode_text(self.tokenizer(texts).to(self.device)), dim=-1)
        anchor, pos, neg = emb.view(-1, 3, emb.shape[-1]).unbind(1)
        logits = 10.0 * torch.stack([(anchor * pos).sum(-1), (anchor * neg).sum(-1)], dim=1)
        return -logits.log_softmax(1)[:, 0].mean()

    def _relation_term(self, scenes, img, txt, scale):
        """Each two-object image's caption against the same scene with the two objects'
        places exchanged (an image-side hard negative); ``None`` when the batch has none."""
        from ..negatives import places_exchanged, relation_matters
        from ..render import render

        # two like objects are left out: exchanging their places leaves the caption true
        rows = [k for k, s in enumerate(scenes) if relation_matters(s)][:32]
        renders = [render(places_exchanged(scenes[k])) for k in rows]
        if not rows:
            return None
        x = to01(torch.from_numpy(np.stack(renders)).permute(0, 3, 1, 2).to(self.device))
        # the twins of round-tripped images are round-tripped too, so that the decoder's
        # traces tell neither apart
        decoded = torch.tensor(
            [k < self.roundtrip.rows(len(scenes)) for k in rows], device=x.device
        )
        x[decoded] = self.roundtrip.decode(x[decoded])
        moved = self._encode_images(x)
        true = (img[rows] * txt[rows]).sum(-1)
        false = (moved * txt[rows]).sum(-1)
        logits = scale * torch.stack([true, false], dim=1)
        return -logits.log_softmax(1)[:, 0].mean()

    def _entity_term(self, scenes, idx, img, scale):
        """Each outlined one-object image against its entity moved (the positive) and that
        entity's near misses, in a softmax of their own; ``None`` when the batch has none."""
        from ..entity import KINDS, near_misses
        from ..render import render

        anchors = [k for k, s in enumerate(scenes) if len(s.objects) == 1 and s.objects[0].outline]
        if not anchors:
            return None
        anchors = anchors[:16]
        renders = []
        for k in anchors:
            rng = np.random.default_rng([idx[k], self.global_step, 28])
            case = near_misses(scenes[k].objects[0], scenes[k].background, rng)
            renders += [render(case[key]) for key in ("positive", *KINDS)]
        x = torch.from_numpy(np.stack(renders)).permute(0, 3, 1, 2).to(self.device)
        cand = self._encode_images(to01(x))
        cand = cand.view(len(anchors), 1 + len(KINDS), -1)
        logits = scale * torch.einsum("akd,ad->ak", cand, img[anchors])
        return -logits.log_softmax(1)[:, 0].mean()

    def export(self) -> None:
        (self.export_dir / f"{self.name}.json").write_text(json.dumps(self.cfg, indent=1))
        skip = {TOKENS} if self.tokens_from is not None else set()
        save_weights(
            {k: v.half() for k, v in self.model.state_dict().items() if k not in skip},
            self.export_dir / f"{self.name}.safetensors",
        )
