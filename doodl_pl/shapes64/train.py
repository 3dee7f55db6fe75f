"""Training recipes for the Shapes-64 models, as LightningModules run by ``doodl-pl-train``.

Each recipe exports its model in the standard format of its library (diffusers directory,
open_clip config + safetensors, timm safetensors, aesthetic-head safetensors), fp16 on disk.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..hub import resolve
from ..utils.weights import save_weights
from .dataset import load_split, scene_from_record
from .world import SHAPES, caption

__all__ = [
    "AestheticRecipe",
    "ClassifierRecipe",
    "ClipRecipe",
    "ShapesData",
    "TextToImageRecipe",
    "VaeRecipe",
    "main",
]

MAX_TOKENS = 16


class _Indexed(Dataset):
    def __init__(self, images: np.ndarray, indices: np.ndarray) -> None:
        self.images, self.indices = images, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        j = int(self.indices[i])
        return torch.from_numpy(self.images[j]).permute(2, 0, 1), j


class ShapesData(pl.LightningDataModule):
    """Rendered scenes of one split; batches are ``(uint8 images (B, 3, 64, 64), indices)``.

    Args:
        split: a :data:`~doodl_pl.shapes64.dataset.SPLITS` name.
        n: number of scenes (the split's first ``n`` seeds).
        batch_size: batch size.
        val_size: scenes held out for validation (the last ones).
        workers: processes used to render a missing cache.
    """

    def __init__(
        self,
        split: str = "train",
        n: int = 60000,
        batch_size: int = 64,
        val_size: int = 512,
        workers: int = 2,
    ) -> None:
        super().__init__()
        self.split, self.n, self.batch_size = split, n, batch_size
        self.val_size, self.workers = val_size, workers
        self.images: np.ndarray | None = None
        self.records: list[dict] = []

    def setup(self, stage: str) -> None:
        if self.images is None:
            self.images, self.records = load_split(self.split, self.n, self.workers)

    def train_dataloader(self) -> DataLoader:
        idx = np.arange(self.n - self.val_size)
        return DataLoader(
            _Indexed(self.images, idx),
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=0,
        )

    def val_dataloader(self) -> DataLoader:
        idx = np.arange(self.n - self.val_size, self.n)
        return DataLoader(_Indexed(self.images, idx), batch_size=self.batch_size, num_workers=0)


class _Recipe(pl.LightningModule):
    """Shared: AdamW with warmup + cosine decay, records access, export at the end of training."""

    def __init__(self, lr: float, export_dir: str, warmup: int = 200) -> None:
        super().__init__()
        self.lr, self.warmup = lr, warmup
        self.export_dir = Path(resolve(export_dir))

    @property
    def records(self) -> list[dict]:
        return self.trainer.datamodule.records

    def trainable(self):
        return [p for p in self.parameters() if p.requires_grad]

    def param_groups(self) -> list[dict]:
        """The optimiser's parameter groups; the warmup + cosine schedule scales each one."""
        return [{"params": self.trainable()}]

    def progress(self, step: int) -> float:
        """Fraction of training done: by steps, or by the ``max_time`` budget if that ends first
        (so the cosine reaches zero when the clock does, and a resumed run picks up the clock)."""
        from lightning.pytorch.callbacks import Timer

        done = (step - self.warmup) / max(1, self.trainer.max_steps - self.warmup)
        for cb in self.trainer.callbacks:
            if isinstance(cb, Timer):
                elapsed, left = cb.time_elapsed(), cb.time_remaining()
                if left is not None and elapsed + left > 0:
                    done = max(done, elapsed / (elapsed + left))
        return min(1.0, max(0.0, done))

    def configure_optimizers(self):
        # The fused kernel takes ~12 ms a step on 2 CPU cores against ~35 ms for the loop.
        fused = self.device.type in ("cpu", "cuda")
        opt = torch.optim.AdamW(self.param_groups(), lr=self.lr, weight_decay=1e-2, fused=fused)

        def schedule(step: int) -> float:
            if step < self.warmup:
                return (step + 1) / self.warmup
            return 0.5 * (1 + math.cos(math.pi * self.progress(step)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return [opt], [{"scheduler": sched, "interval": "step"}]

    def on_train_end(self) -> None:
        """Export when training ended by itself (max_steps or the max_time budget), not when it
        was interrupted; a resumed run exports at its end."""
        if not self.trainer.interrupted and self.trainer.is_global_zero:
            self.export_dir.mkdir(parents=True, exist_ok=True)
            self.export()
            print(f"exported to {self.export_dir}")

    def export(self) -> None:
        raise NotImplementedError


def _to01(images: Tensor) -> Tensor:
    return images.float() / 255.0


# -- VAE -------------------------------------------------------------------------------------------
class VaeRecipe(_Recipe):
    """``AutoencoderKL`` 64×64×3 → 16×16×4; scaling factor = 1 / std of the latents.

    Args:
        block_out_channels: channels per resolution (3 levels: downsampling factor 4).
        kl_weight: weight of the KL term (small, as in SD's VAE).
        lr, export_dir: optimiser and output.
    """

    def __init__(
        self,
        block_out_channels: tuple[int, ...] = (32, 32, 64),
        layers_per_block: int = 1,
        kl_weight: float = 1e-6,
        lr: float = 1e-3,
        export_dir: str = "pkg:shapes64/sd/vae",
    ) -> None:
        super().__init__(lr, export_dir)
        from diffusers import AutoencoderKL

        n = len(block_out_channels)
        self.vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * n,
            up_block_types=("UpDecoderBlock2D",) * n,
            block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block,
            norm_num_groups=16,
            sample_size=64,
        )
        self.kl_weight = kl_weight

    def training_step(self, batch, _):
        x = _to01(batch[0]) * 2 - 1
        post = self.vae.encode(x).latent_dist
        rec = self.vae.decode(post.sample()).sample
        mse = F.mse_loss(rec, x)
        loss = mse + 0.1 * F.l1_loss(rec, x) + self.kl_weight * post.kl().mean()
        self.log("train/mse", mse, prog_bar=True)
        return loss

    @torch.no_grad()
    def validation_step(self, batch, _):
        x = _to01(batch[0])
        rec = (self.vae.decode(self.vae.encode(x * 2 - 1).latent_dist.mean).sample / 2 + 0.5).clamp(
            0, 1
        )
        mse = ((rec - x) ** 2).mean(dim=(1, 2, 3))
        self.log("val/psnr", (10 * torch.log10(1 / mse.clamp_min(1e-10))).mean(), prog_bar=True)

    @torch.no_grad()
    def export(self) -> None:
        images = self.trainer.datamodule.images[:2048]
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
        z = torch.cat(
            [self.vae.encode(x[i : i + 256]).latent_dist.mean for i in range(0, len(x), 256)]
        )
        self.vae.register_to_config(scaling_factor=float(1.0 / z.std()))
        vae = copy.deepcopy(self.vae).to(torch.float16)
        vae.save_pretrained(self.export_dir, safe_serialization=True)


# -- text-to-image --------------------------------------------------------------------------------
class TextToImageRecipe(_Recipe):
    """``CLIPTextModel`` + ε-prediction ``UNet2DConditionModel`` trained jointly on VAE latents.

    SD-1 noise schedule (1000 steps, scaled_linear 0.00085 → 0.012); 10 % caption dropout;
    captions re-drawn from the spec's grammar each time a scene is seen; EMA weights exported.

    Args:
        vae_dir: the trained VAE (``pkg:shapes64/sd/vae``).
        text_encoder: an open_clip model config (JSON) and weights file; the text tower becomes
            the pipeline's ``CLIPTextModel``, frozen as SD-1's is unless ``text_lr`` is set.
            ``None`` trains a ``text_width`` × ``text_layers`` text encoder jointly instead.
        text_lr: with ``text_encoder``, fine-tune the CLIP text tower at this learning rate
            (a small CLIP's token states for e.g. "square" and "cross" are close); ``None``
            keeps it frozen.
        pooled_text_heads: heads of diffusers' ``TextTimeEmbedding`` (``addition_embed_type
            = "text"``), which adds an attention-pooled prompt embedding to the time embedding
            so every ResNet block sees the prompt, also at levels without cross-attention;
            ``None`` leaves it out (as SD-1).
        block_out_channels, layers_per_block, text_width, text_layers: model sizes.
        attention_heads: heads per UNet level (diffusers' ``attention_head_dim``); few wide heads
            run about twice as fast on CPU as many narrow ones.
        attention_levels: per UNet level, whether it has (self + cross) attention blocks; default
            every level but the lowest. Leaving out the 16×16 level halves the step time on CPU
            (its self-attention over 256 positions dominates); the mid block always attends.
        caption_dropout: probability of the empty prompt.
        ema_decay: decay of the exported exponential moving average.
        snr_gamma: Min-SNR-γ loss weighting (Hang et al. 2023, eq. 5 for ε-prediction:
            ``min(SNR_t, γ) / SNR_t``), which stops the easy low-noise steps from dominating;
            ``None`` for the plain ε MSE.
        snr_floor: with ``snr_gamma``, also clamp SNR_t from below in that weight
            (``clamp(SNR_t, floor, γ) / SNR_t``): the high-noise steps, where a sample's outline
            is decided, then weigh up to ``floor / SNR_t`` times more; ``None`` leaves Min-SNR-γ.
        latent_cache: safetensors file for the VAE latents of the training scenes, reused while
            the VAE weights and the scenes are the same (a resumed or repeated run skips the
            ~6 minutes of encoding); ``None`` encodes every time.
        cfg_consistency: weight of a guidance-consistency term: for the caption-dropped items
            with t below ``cfg_consistency_t_max`` the UNet also runs with their caption, and the
            classifier-free-guided ε̃ = ε_∅ + s·(ε_c − ε_∅) at ``cfg_consistency_scale`` s must
            match the noise too. Where the noisy latent already shows the object, text should
            change ε little; CFG at 7.5 multiplies any difference by 6.5 and over-draws corners
            (squares with ears, crosses as stars). Caption dropout stays ``caption_dropout``.
            ``None`` leaves it out.
        cfg_consistency_scale, cfg_consistency_t_max: that term's guidance scale and timesteps.
        uncond_distill: weight of an unconditional-distillation term: ``uncond_distill_slots``
            captioned items with t below ``uncond_distill_t_max`` also run with the empty
            prompt, and that ε_∅ must match their (stop-gradient) ε_c. Where the noisy latent
            already shows its object the caption adds nothing, so the ideal ε_∅ equals ε_c
            there; the empty prompt sees only ``caption_dropout`` of the data and lags, and CFG
            multiplies the lag by 6.5. The extra slots are a fixed number (a fixed-shape UNet
            call for ``compile_unet``); caption dropout stays ``caption_dropout``. ``None``
            leaves it out.
        uncond_distill_slots, uncond_distill_t_max: that term's items per batch and timesteps.
        compile_unet: run the UNet's training forward through ``torch.compile`` (about 25 %
            more steps a second on 2 CPU cores, after ~15 s of compiling; needs a C++ compiler).
    """

    def __init__(
        self,
        vae_dir: str = "pkg:shapes64/sd/vae",
        text_encoder: tuple[str, str] | None = None,
        text_lr: float | None = None,
        pooled_text_heads: int | None = None,
        block_out_channels: tuple[int, ...] = (32, 64, 128),
        layers_per_block: int = 1,
        attention_heads: int | tuple[int, ...] = 8,
        attention_levels: tuple[bool, ...] | None = None,
        text_width: int = 64,
        text_layers: int = 2,
        caption_dropout: float = 0.1,
        ema_decay: float = 0.999,
        snr_gamma: float | None = None,
        snr_floor: float | None = None,
        latent_cache: str | None = None,
        cfg_consistency: float | None = None,
        cfg_consistency_scale: float = 7.5,
        cfg_consistency_t_max: int = 700,
        uncond_distill: float | None = None,
        uncond_distill_slots: int = 8,
        uncond_distill_t_max: int = 700,
        compile_unet: bool = False,
        lr: float = 5e-4,
        export_dir: str = "pkg:shapes64/sd",
    ) -> None:
        super().__init__(lr, export_dir)
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextConfig, CLIPTextModel

        from ..models.tokenizer import build_clip_tokenizer

        self.vae = AutoencoderKL.from_pretrained(resolve(vae_dir), torch_dtype=torch.float32)
        self.vae.requires_grad_(False).eval()
        if text_lr is not None and (text_encoder is None or text_lr <= 0):
            raise ValueError(
                f"`model.init_args.text_lr` needs `model.init_args.text_encoder` and must be > 0,"
                f" got {text_lr} with text_encoder={text_encoder}"
            )
        self.text_lr = text_lr
        self.frozen_text = text_encoder is not None and text_lr is None
        if text_encoder is not None:
            from ..losses.clip_models import ClipModel, ClipSpec
            from ..models.clip_text import clip_text_model

            clip = ClipModel(ClipSpec(*text_encoder), key="model.init_args.text_encoder")
            self.text = clip_text_model(clip.model.float()).requires_grad_(text_lr is not None)
            if self.text.config.max_position_embeddings < MAX_TOKENS:
                raise ValueError(
                    f"`model.init_args.text_encoder`: context {self.text.config.max_position_embeddings}"
                    f" is shorter than the {MAX_TOKENS} tokens captions use"
                )
        else:
            self.text = CLIPTextModel(
                CLIPTextConfig(
                    hidden_size=text_width,
                    intermediate_size=2 * text_width,
                    num_attention_heads=4,
                    num_hidden_layers=text_layers,
                    vocab_size=49408,
                    max_position_embeddings=MAX_TOKENS,
                    projection_dim=text_width,
                )
            )
        import tempfile

        self.tokenizer = build_clip_tokenizer(tempfile.mkdtemp(), model_max_length=MAX_TOKENS)
        n = len(block_out_channels)
        levels = [True] * (n - 1) + [False] if attention_levels is None else list(attention_levels)
        if len(levels) != n:
            raise ValueError(
                f"`model.init_args.attention_levels` needs one entry per level of "
                f"`block_out_channels` ({n}), got {len(levels)}"
            )
        width = self.text.config.hidden_size
        pooled = {}
        if pooled_text_heads is not None:
            if pooled_text_heads <= 0 or width % pooled_text_heads:
                raise ValueError(
                    f"`model.init_args.pooled_text_heads` must divide the text width {width},"
                    f" got {pooled_text_heads}"
                )
            pooled = {
                "addition_embed_type": "text",
                "addition_embed_type_num_heads": pooled_text_heads,
            }
        self.unet = UNet2DConditionModel(
            sample_size=16,
            in_channels=4,
            out_channels=4,
            block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block,
            down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in levels),
            up_block_types=tuple(
                "CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(levels)
            ),
            cross_attention_dim=width,
            attention_head_dim=attention_heads
            if isinstance(attention_heads, int)
            else tuple(attention_heads),
            norm_num_groups=32,
            **pooled,
        )
        self.noise_scheduler = DDPMScheduler(
            num_train_timesteps=1000,
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
        )
        self.ema = None
        self.ema_decay, self.caption_dropout = ema_decay, caption_dropout
        if snr_gamma is not None and snr_gamma <= 0:
            raise ValueError(f"`model.init_args.snr_gamma` must be > 0 or null, got {snr_gamma}")
        if snr_floor is not None and (snr_gamma is None or not 0 < snr_floor < snr_gamma):
            raise ValueError(
                f"`model.init_args.snr_floor` needs `model.init_args.snr_gamma` and must be in "
                f"(0, snr_gamma), got {snr_floor} with snr_gamma={snr_gamma}"
            )
        self.snr_gamma, self.snr_floor = snr_gamma, snr_floor
        self.latent_cache = None if latent_cache is None else Path(latent_cache)
        self.compile_unet = compile_unet
        if cfg_consistency is not None:
            key = "`model.init_args.cfg_consistency"
            if cfg_consistency <= 0 or not caption_dropout > 0:
                raise ValueError(
                    f"{key}` must be > 0 and needs `model.init_args.caption_dropout` > 0, got "
                    f"{cfg_consistency} with caption_dropout={caption_dropout}"
                )
            if cfg_consistency_scale <= 1:
                raise ValueError(f"{key}_scale` must be > 1, got {cfg_consistency_scale}")
            if not 0 < cfg_consistency_t_max <= 1000:
                raise ValueError(f"{key}_t_max` must be in (0, 1000], got {cfg_consistency_t_max}")
        self.cfg_consistency = cfg_consistency
        self.cfg_consistency_scale = cfg_consistency_scale
        self.cfg_consistency_t_max = cfg_consistency_t_max
        if uncond_distill is not None:
            key = "`model.init_args.uncond_distill"
            if uncond_distill <= 0:
                raise ValueError(f"{key}` must be > 0 or null, got {uncond_distill}")
            if uncond_distill_slots < 1:
                raise ValueError(f"{key}_slots` must be >= 1, got {uncond_distill_slots}")
            if not 0 < uncond_distill_t_max <= 1000:
                raise ValueError(f"{key}_t_max` must be in (0, 1000], got {uncond_distill_t_max}")
        self.uncond_distill = uncond_distill
        self.uncond_distill_slots = uncond_distill_slots
        self.uncond_distill_t_max = uncond_distill_t_max
        self._unet_forward = None  # a compiled function, so the UNet is not registered twice
        self._latents: Tensor | None = None

    def trainable(self):
        return list(self.unet.parameters()) + (
            [] if self.frozen_text else list(self.text.parameters())
        )

    def param_groups(self) -> list[dict]:
        if self.text_lr is None:
            return super().param_groups()
        return [
            {"params": list(self.unet.parameters())},
            {"params": list(self.text.parameters()), "lr": self.text_lr},
        ]

    def train(self, mode: bool = True):
        super().train(mode)
        self.vae.eval()
        if self.frozen_text:
            self.text.eval()
        return self

    @torch.no_grad()
    def on_fit_start(self) -> None:
        self._latents = self.encode_latents(self.trainer.datamodule.images)
        # channels_last convolutions are ~10 % faster on CPU (oneDNN; scripts/profile_t2i.py).
        self.unet.to(memory_format=torch.channels_last)
        if self.compile_unet:
            self._unet_forward = torch.compile(self.unet.forward)
        if self.ema is None:
            self.ema = [p.detach().clone() for p in self.trainable()]
        else:  # restored from a checkpoint: match the parameters' memory format
            self.ema = [
                torch.empty_like(p).copy_(e)
                for p, e in zip(self.trainable(), self.ema, strict=True)
            ]

    def encode_latents(self, images: np.ndarray) -> Tensor:
        """Scaled VAE latent means (fp16, CPU) of ``images``, from ``latent_cache`` when it
        holds the latents of these very images under this very VAE."""
        from safetensors.torch import load_file, save_file

        cache, key = self.latent_cache, None
        if cache is not None:
            digest = hashlib.sha256(np.ascontiguousarray(images).data)
            for k, v in sorted(self.vae.state_dict().items()):
                digest.update(k.encode())
                digest.update(v.detach().cpu().contiguous().numpy().tobytes())
            key = digest.hexdigest()
        if cache is not None and cache.is_file():
            from safetensors import safe_open

            with safe_open(cache, "pt") as f:
                hit = (f.metadata() or {}).get("key") == key
            if hit:
                print(f"latents: reusing {cache}")
                return load_file(cache)["latents"]
        sf = self.vae.config.scaling_factor
        out = []
        # Batches of 128 run ~25 % faster than 512 on CPU (cache-sized activations).
        for i in tqdm(range(0, len(images), 128), desc="encoding latents", unit="batch"):
            x = torch.from_numpy(images[i : i + 128]).to(self.device)
            x = x.permute(0, 3, 1, 2).float() / 127.5 - 1
            out.append((self.vae.encode(x).latent_dist.mean * sf).half().cpu())
        latents = torch.cat(out)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp")
            save_file({"latents": latents.contiguous()}, tmp, metadata={"key": key})
            tmp.replace(cache)  # never a half-written cache
        return latents

    def captions(self, indices: list[int], step: int) -> list[str]:
        rng = np.random.default_rng([step, 7])
        out = []
        for j in indices:
            out.append("" if rng.random() < self.caption_dropout else self.caption_of(j, step))
        return out

    def caption_of(self, j: int, step: int) -> str:
        """Scene ``j``'s caption as drawn at ``step`` (the same draw whether dropped or not)."""
        return caption(scene_from_record(self.records[j]), np.random.default_rng([j, step]))

    def encode_text(self, texts: list[str]) -> Tensor:
        ids = self.tokenizer(
            texts, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt"
        ).input_ids.to(self.device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen_text):
            return self.text(ids)[0]

    def training_step(self, batch, _):
        idx = batch[1].tolist()
        z0 = self._latents[batch[1].cpu()].to(self.device).float()
        noise = torch.randn_like(z0)
        t = torch.randint(0, 1000, (len(idx),), device=self.device)
        zt = self.noise_scheduler.add_noise(z0, noise, t).contiguous(
            memory_format=torch.channels_last
        )
        texts = self.captions(idx, self.global_step)
        cond = self.encode_text(texts)
        # Guidance consistency: the caption-dropped items below ``cfg_consistency_t_max`` also
        # run with their caption, appended to the same UNet call.
        pick = []
        if self.cfg_consistency is not None and torch.is_grad_enabled():
            pick = [
                i
                for i, (text, ti) in enumerate(zip(texts, t.tolist(), strict=True))
                if text == "" and ti < self.cfg_consistency_t_max
            ]
        if pick:
            true = [self.caption_of(idx[i], self.global_step) for i in pick]
            zt = torch.cat([zt, zt[pick]])
            t = torch.cat([t, t[pick]])
            cond = torch.cat([cond, self.encode_text(true)])
        # Unconditional distillation: a fixed number of slots, the first captioned items below
        # ``uncond_distill_t_max``, padded (and masked out) with item 0 when there are too few.
        slots, keep = self.distill_slots(texts, t[: len(idx)])
        if slots:
            zt = torch.cat([zt, zt[slots]])
            t = torch.cat([t, t[slots]])
            cond = torch.cat([cond, self.encode_text([""] * len(slots))])
        zt = zt.contiguous(memory_format=torch.channels_last)
        pred = (self._unet_forward or self.unet)(zt, t, encoder_hidden_states=cond).sample
        n, m = len(idx), len(idx) + len(pick)
        w = self.loss_weights(t)
        loss = (((pred[:n] - noise) ** 2).mean(dim=(1, 2, 3)) * w[:n]).mean()
        self.log("train/loss", loss, prog_bar=True)
        if pick:
            # 1.-2. ε̃ = ε_∅ + s·(ε_c − ε_∅), CFG at the sampler's scale s; 3. its ε MSE.
            guided = pred[pick] + self.cfg_consistency_scale * (pred[n:m] - pred[pick])
            reg = ((guided - noise[pick]) ** 2).mean(dim=(1, 2, 3)) * w[n:m]
            reg = reg.sum() / n
            self.log("train/cfg_consistency", reg)
            loss = loss + self.cfg_consistency * reg
        if slots:
            # ε_∅ → sg(ε_c), unweighted: the sampler multiplies an ε gap alike at every t.
            gap = ((pred[m:] - pred[slots].detach()) ** 2).mean(dim=(1, 2, 3))
            reg = (gap * keep).sum() / len(slots)
            self.log("train/uncond_distill", reg)
            loss = loss + self.uncond_distill * reg
        return loss

    def distill_slots(self, texts: list[str], t: Tensor) -> tuple[list[int], Tensor]:
        """Batch rows for the ``uncond_distill`` term and a 0/1 mask of the real ones."""
        if self.uncond_distill is None or not torch.is_grad_enabled():
            return [], t.new_zeros(0, dtype=torch.float32)
        k = self.uncond_distill_slots
        ok = [
            i
            for i, (text, ti) in enumerate(zip(texts, t.tolist(), strict=True))
            if text and ti < self.uncond_distill_t_max
        ][:k]
        keep = torch.zeros(k, device=t.device)
        keep[: len(ok)] = 1
        return ok + [0] * (k - len(ok)), keep

    def loss_weights(self, t: Tensor) -> Tensor:
        """Per-item weight of the ε MSE at timesteps ``t`` (``snr_gamma``, ``snr_floor``)."""
        if self.snr_gamma is None:
            return torch.ones(len(t), device=t.device)
        abar = self.noise_scheduler.alphas_cumprod.to(t.device)[t]
        snr = abar / (1 - abar)
        return snr.clamp(min=self.snr_floor, max=self.snr_gamma) / snr

    def validation_step(self, batch, _):
        with torch.no_grad():
            loss = self.training_step(batch, 0)
        self.log("val/loss", loss)

    @torch.no_grad()
    def on_train_batch_end(self, *args) -> None:
        decay = min(self.ema_decay, (1 + self.global_step) / (10 + self.global_step))
        torch._foreach_mul_(self.ema, decay)
        torch._foreach_add_(self.ema, [p.detach() for p in self.trainable()], alpha=1 - decay)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ema"] = self.ema

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.ema = checkpoint.get("ema")

    @torch.no_grad()
    def export(self) -> None:
        from diffusers import StableDiffusionPipeline

        from ..sampling.schedule import sd1_scheduler

        unet, text = copy.deepcopy(self.unet), copy.deepcopy(self.text)
        trained = list(unet.parameters()) + ([] if self.frozen_text else list(text.parameters()))
        for e, p in zip(self.ema, trained, strict=True):
            p.copy_(e)
        scheduler = sd1_scheduler()
        pipe = StableDiffusionPipeline(
            vae=copy.deepcopy(self.vae).half(),
            # float32: transformers loads a text encoder in its saved dtype, and a plain
            # `StableDiffusionPipeline.from_pretrained(dir)` must match the float32 UNet.
            text_encoder=text.float(),
            tokenizer=self.tokenizer,
            unet=unet.to(torch.float16, memory_format=torch.contiguous_format),
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.save_pretrained(self.export_dir, safe_serialization=True)


# -- CLIP ---------------------------------------------------------------------------------------------
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


class ClipRecipe(_Recipe):
    """A small open_clip model trained contrastively on (render, caption) pairs.

    Exports ``shapes64-clip.json`` (the open_clip model config) and ``shapes64-clip.safetensors``.
    """

    def __init__(
        self,
        model_cfg: dict | None = None,
        lr: float = 5e-4,
        export_dir: str = "pkg:shapes64/clip",
        name: str = "shapes64-clip",
    ) -> None:
        super().__init__(lr, export_dir)
        import open_clip

        self.name, self.cfg = name, model_cfg or CLIP_CONFIG
        self.export_dir.mkdir(parents=True, exist_ok=True)
        cfg_path = self.export_dir / f"{name}.json"
        cfg_path.write_text(json.dumps(self.cfg, indent=1))
        open_clip.add_model_config(str(cfg_path))
        self.model = open_clip.create_model(name, pretrained=None)
        self.tokenizer = open_clip.get_tokenizer(name)
        from ..losses.clip_models import OPENAI_MEAN, OPENAI_STD

        self.register_buffer("mean", torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(OPENAI_STD).view(1, 3, 1, 1), persistent=False)

    def training_step(self, batch, _):
        idx = batch[1].tolist()
        texts = [
            caption(
                scene_from_record(self.records[j]), np.random.default_rng([j, self.global_step])
            )
            for j in idx
        ]
        img = F.normalize(self.model.encode_image((_to01(batch[0]) - self.mean) / self.std), dim=-1)
        txt = F.normalize(self.model.encode_text(self.tokenizer(texts).to(self.device)), dim=-1)
        logits = self.model.logit_scale.exp().clamp(max=100) * img @ txt.T
        # identical captions in a batch are positives too
        same = torch.tensor([[a == b for b in texts] for a in texts], device=self.device).float()
        target = same / same.sum(1, keepdim=True)
        loss = (
            -(target * logits.log_softmax(1)).sum(1).mean()
            - (target * logits.T.log_softmax(1)).sum(1).mean()
        )
        self.log("train/loss", loss / 2, prog_bar=True)
        return loss / 2

    def export(self) -> None:
        save_weights(
            {k: v.half() for k, v in self.model.state_dict().items()},
            self.export_dir / f"{self.name}.safetensors",
        )


# -- classifiers ----------------------------------------------------------------------------------
class ClassifierRecipe(_Recipe):
    """A timm classifier over the nine shape classes on one-object renders.

    Args:
        model_name: timm architecture.
        augment: blur, noise and small shifts (for the evaluation classifier; the guide
            classifier is trained on clean renders only, as the spec requires).
        export_name: file name of the exported safetensors.
    """

    def __init__(
        self,
        model_name: str = "resnet10t",
        augment: bool = False,
        lr: float = 2e-3,
        export_dir: str = "pkg:shapes64",
        export_name: str = "classifier.safetensors",
    ) -> None:
        super().__init__(lr, export_dir, warmup=100)
        import timm
        from timm.data import resolve_data_config

        self.model = timm.create_model(model_name, pretrained=False, num_classes=len(SHAPES))
        cfg = resolve_data_config({}, model=self.model)
        self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg["std"]).view(1, 3, 1, 1), persistent=False)
        self.augment, self.export_name = augment, export_name

    def labels(self, idx: Tensor) -> Tensor:
        return torch.tensor(
            [SHAPES.index(self.records[j]["objects"][0]["shape"]) for j in idx.tolist()],
            device=self.device,
        )

    def perturb(self, x: Tensor) -> Tensor:
        """Random blur, Gaussian noise and shifts of up to 2 px, per image."""
        from torchvision.transforms.functional import gaussian_blur

        out = []
        for im in x:
            if torch.rand(()) < 0.5:
                im = gaussian_blur(im, 5, float(torch.empty(()).uniform_(0.3, 1.0)))
            dy, dx = torch.randint(-2, 3, (2,)).tolist()
            im = torch.roll(im, (dy, dx), dims=(1, 2))
            im = im + torch.randn_like(im) * float(torch.empty(()).uniform_(0, 0.05))
            out.append(im.clamp(0, 1))
        return torch.stack(out)

    def forward(self, x01: Tensor) -> Tensor:
        return self.model((x01 - self.mean) / self.std)

    def training_step(self, batch, _):
        x = _to01(batch[0])
        if self.augment:
            x = self.perturb(x)
        loss = F.cross_entropy(self(x), self.labels(batch[1]))
        self.log("train/loss", loss, prog_bar=True)
        return loss

    @torch.no_grad()
    def validation_step(self, batch, _):
        acc = (self(_to01(batch[0])).argmax(1) == self.labels(batch[1])).float().mean()
        self.log("val/acc", acc, prog_bar=True)

    def export(self) -> None:
        save_weights(
            {
                k: v.half() if v.is_floating_point() else v
                for k, v in self.model.state_dict().items()
            },
            self.export_dir / self.export_name,
        )


# -- aesthetic head -------------------------------------------------------------------------------
class AestheticRecipe(_Recipe):
    """An MLP head on the (frozen, normalised) Shapes-64 CLIP image embedding → aesthetic score.

    Saved in LAION's layout (``layers.0``, ``layers.2``) with the activation in the metadata.
    """

    def __init__(
        self,
        clip_name: str = "pkg:shapes64/clip/shapes64-clip.json",
        clip_weights: str = "pkg:shapes64/clip/shapes64-clip.safetensors",
        hidden: int = 128,
        lr: float = 2e-3,
        export_dir: str = "pkg:shapes64",
        export_name: str = "aesthetic_head.safetensors",
    ):
        super().__init__(lr, export_dir, warmup=50)
        from ..losses.clip_models import ClipModel, ClipSpec

        self.clip = ClipModel(ClipSpec(clip_name, clip_weights))
        dim = (
            self.clip.model.text_projection.shape[1]
            if hasattr(self.clip.model, "text_projection")
            else 64
        )
        self.head = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, 1))
        self.export_name = export_name

    def trainable(self):
        return list(self.head.parameters())

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()
        return self

    def step(self, batch) -> Tensor:
        with torch.no_grad():
            emb = self.clip.encode_image(_to01(batch[0]))
        target = torch.tensor(
            [self.records[j]["aesthetic"] for j in batch[1].tolist()], device=self.device
        )
        return self.head(emb).squeeze(-1), target

    def training_step(self, batch, _):
        pred, target = self.step(batch)
        loss = F.mse_loss(pred, target)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    @torch.no_grad()
    def validation_step(self, batch, _):
        pred, target = self.step(batch)
        self.log("val/mae", (pred - target).abs().mean(), prog_bar=True)

    def export(self) -> None:
        from safetensors.torch import save_file

        state = {
            f"layers.{k}": v.detach().half().contiguous() for k, v in self.head.state_dict().items()
        }
        save_file(state, str(self.export_dir / self.export_name), metadata={"activation": "gelu"})


def main(args: list[str] | None = None):
    """``doodl-pl-train fit --config configs/shapes64/train_<model>.yaml``."""
    from lightning.pytorch.cli import LightningCLI

    return LightningCLI(
        pl.LightningModule,
        ShapesData,
        subclass_mode_model=True,
        args=args,
        save_config_kwargs={"overwrite": True},
    )


def console() -> None:
    """Console-script entry point (a returned CLI object must not become the exit status)."""
    main()


if __name__ == "__main__":
    console()
