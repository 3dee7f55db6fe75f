"""Image logging: optimisation trajectories as PNG grids and images to the logger."""

from __future__ import annotations

import io
from pathlib import Path

import lightning.pytorch as pl
import torch

from doodl_pl.data.datamodule import Batch
from doodl_pl.data.images import to_pil
from doodl_pl.outputs import atomic_write

__all__ = ["ImageLogger", "make_grid"]


def make_grid(images: list[torch.Tensor], ncol: int, pad: int = 2) -> torch.Tensor:
    """Tile ``(3, H, W)`` images row-major on a white background."""
    h, w = images[0].shape[-2:]
    nrow = (len(images) + ncol - 1) // ncol
    grid = torch.ones(3, nrow * (h + pad) + pad, ncol * (w + pad) + pad)
    for k, im in enumerate(images):
        r, c = divmod(k, ncol)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[:, top : top + h, left : left + w] = im.detach().float().cpu()
    return grid


class ImageLogger(pl.Callback):
    """Every ``every_n_steps`` optimisation steps keep each item's current image; at the end of
    the item write ``trajectories/<id>.png`` (left to right: step 0, k, 2k, …, final) and send the
    trajectory and the final image to the logger (TensorBoard) when it can take images.

    Args:
        every_n_steps: k.
        to_logger: also log to ``trainer.logger``.
    """

    def __init__(self, every_n_steps: int = 10, to_logger: bool = True) -> None:
        if every_n_steps < 1:
            raise ValueError(f"`ImageLogger.every_n_steps` must be >= 1, got {every_n_steps}")
        self.every_n_steps, self.to_logger = every_n_steps, to_logger
        self._frames: dict[str, list[torch.Tensor]] = {}
        self._pending: Batch | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step, items = batch.step, batch.items
        last = pl_module.last_images
        if last is not None and step % self.every_n_steps == 0:
            for i, it in enumerate(items):
                self._frames.setdefault(it["id"], []).append(last[i].cpu())
        if batch.last:
            # The module produces the final images in its own on_train_batch_end, which runs
            # after every callback's, so write them on the next batch start or at train end.
            self._pending = batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._flush(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._flush(trainer, pl_module)

    def _flush(self, trainer, pl_module) -> None:
        batch, self._pending = self._pending, None
        if batch is None:
            return
        items = batch.items
        finals = pl_module.final_images
        out = Path(pl_module.writer.root) / "trajectories"
        out.mkdir(parents=True, exist_ok=True)
        for i, it in enumerate(items):
            if batch.pad[i]:
                continue
            frames = self._frames.pop(it["id"], [])
            if finals is not None:
                frames.append(finals[i].cpu())
            if not frames:
                continue
            grid = make_grid(frames, ncol=min(len(frames), 11))
            buf = io.BytesIO()
            to_pil(grid).save(buf, format="PNG")
            atomic_write(out / f"{it['id']}.png", buf.getvalue())
            exp = getattr(trainer.logger, "experiment", None) if self.to_logger else None
            if exp is not None and hasattr(exp, "add_image"):
                exp.add_image(f"trajectory/{it['id']}", grid, trainer.global_step)
                if finals is not None:
                    exp.add_image(
                        f"final/{it['id']}", finals[i].cpu().clamp(0, 1), trainer.global_step
                    )
