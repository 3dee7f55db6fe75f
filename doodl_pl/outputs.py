"""Run outputs: ``images/<id>.png``, ``manifest.jsonl`` and ``metadata.jsonl``, written so a kill
loses nothing. ``metadata.jsonl`` makes the folder a Hugging Face ``imagefolder`` data set."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

from torch import Tensor

__all__ = [
    "DEFAULT_CHANGES",
    "RECORD_MARK",
    "OutputWriter",
    "atomic_write",
    "jsonable",
    "metadata_fields",
    "number",
    "settings_changes",
]


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# Model settings that do not change what an item's image is.
# Recomputing a forward in the backward pass gives the same numbers: a run that ran out of
# memory resumes with a checkpointing lever turned on.
RESUME_NEUTRAL = (
    "output_dir",
    "retry_failed",
    "unet_checkpointing",
    "vae_checkpointing",
    "sequential_decode",
)

#: Options whose default changed after folders were made without them: the value those folders
#: were made with, and when it changed. A folder's ``config.yaml`` that lacks the option is
#: compared against that value, not today's default.
DEFAULT_CHANGES: dict[str, tuple[Any, str]] = {
    # 2026-12-01 (f2aeff4): DOODL outputs its best iterate; before, the option did not exist
    # and the last iterate was output (and iterates were scored with another draw of cuts).
    "keep_best": (False, "before 2026-12-01"),
}

#: First line of every ``config.yaml`` a run writes: it records every option's resolved value,
#: defaults and nulls included, so a later default change is compared with what was used.
RECORD_MARK = "# doodl_pl run settings: every option's resolved value, defaults included"


def settings_changes(old: Any, new: Any, key: str = "model", owner: str | None = None) -> list[str]:
    """``key: old → new`` for every leaf that differs between two parsed config sections.

    An ``init_args`` key that only ``new`` has is an option added since the folder was made:
    it is a change unless its value is what the folder was made with, which is the value in
    :data:`DEFAULT_CHANGES` for an option whose default changed, else today's default.
    """
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        cls = new.get("class_path") or old.get("class_path")
        for k in sorted(set(old) | set(new), key=str):
            if key.endswith("init_args") and k in RESUME_NEUTRAL:
                continue
            if key.endswith("init_args") and k in new and k not in old and k in DEFAULT_CHANGES:
                was, when = DEFAULT_CHANGES[k]
                if new[k] != was:
                    out.append(f"{key}.{k}: {was!r} (the default {when}) → {new[k]!r}")
                continue
            if key.endswith("init_args") and (k in old) != (k in new):
                if _is_default(owner, k, new[k] if k in new else old[k]):
                    continue
            sub = cls if k == "init_args" else None
            out += settings_changes(old.get(k), new.get(k), f"{key}.{k}", sub)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [
            c
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for c in settings_changes(a, b, f"{key}[{i}]")
        ]
    return [] if old == new else [f"{key}: {old!r} → {new!r}"]


def _is_default(class_path: str | None, name: str, value: Any) -> bool:
    """Whether ``value`` is the default of ``name`` in ``class_path``'s constructor (or a base's)."""
    if not class_path or "." not in class_path:
        return False
    import importlib
    import inspect

    module, _, attr = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return False
    for klass in getattr(cls, "__mro__", ()):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        param = inspect.signature(init).parameters.get(name)
        if param is not None and param.default is not inspect.Parameter.empty:
            return param.default == value
    return False


class OutputWriter:
    """Owns an output folder.

    ``manifest.jsonl`` gets one line per finished item, appended with a single ``write`` on an
    ``O_APPEND`` descriptor and fsynced, so concurrent ranks never interleave and a killed process
    never leaves half a line. Images are written atomically before their manifest line, so a
    manifest line always points at a complete PNG.

    ``metadata.jsonl`` (``file_name`` plus the item's fields, loss and status, one line per
    image) is appended between the image and the manifest line, so
    ``datasets.load_dataset("imagefolder", data_dir=root)`` reads the run. A line left by a run
    killed before its manifest line is dropped by the next :meth:`prepare`.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.images = self.root / "images"
        self.manifest = self.root / "manifest.jsonl"
        self.metadata = self.root / "metadata.jsonl"

    def prepare(self) -> None:
        """Create the folders, drop temporary files a killed run may have left behind, and keep
        only the metadata lines of finished images (the last line per image)."""
        self.images.mkdir(parents=True, exist_ok=True)
        for stale in self.images.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        if self.metadata.is_file():
            done = {r["id"] for r in self.records() if r.get("status", "ok") == "ok"}
            lines = self.metadata.read_text(encoding="utf-8").splitlines()
            keep: dict[str, str] = {}
            for line in lines:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if row.get("id") in done:
                    keep[row["id"]] = line
            if list(keep.values()) != lines:
                text = "".join(f"{line}\n" for line in keep.values())
                atomic_write(self.metadata, text.encode("utf-8"))

    def records(self) -> list[dict[str, Any]]:
        """Parsed manifest lines (a line that fails to parse is ignored: it never happens unless
        the file was edited by hand)."""
        if not self.manifest.is_file():
            return []
        out = []
        for line in self.manifest.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def check_resume(self, config_text: str) -> None:
        """Refuse to resume a folder whose finished items were made with other model settings:
        a rerun skips finished items, so it would mix two settings in one folder.

        Raises:
            ValueError: naming ``output_dir`` and the settings that changed.
        """
        import yaml

        saved = self.root / "config.yaml"
        finished = self.finished_ids() if saved.is_file() else set()
        if not finished:
            return

        def model_section(text: str) -> Any:
            parsed = yaml.safe_load(text) or {}
            return parsed.get("fit", parsed).get("model")  # LightningCLI nests under its subcommand

        changes = settings_changes(
            model_section(saved.read_text(encoding="utf-8")), model_section(config_text)
        )
        if changes:
            shown = "; ".join(changes[:5]) + (
                f"; and {len(changes) - 5} more" if len(changes) > 5 else ""
            )
            raise ValueError(
                f"`output_dir` = {str(self.root)!r} holds {len(finished)} "
                f"finished item(s) made with other settings ({shown}), and a rerun only adds the "
                f"missing ones. Set a new `output_dir`, or move that folder away "
                f"to start over (its config.yaml records the old settings)."
            )

    def finished_items(self, include_failed: bool = True) -> dict[str, dict[str, Any]]:
        """Manifest lines by id (failed ones too unless ``include_failed`` is False)."""
        return {
            r["id"]: r for r in self.records() if include_failed or r.get("status", "ok") == "ok"
        }

    def finished_ids(self, include_failed: bool = True) -> set[str]:
        return set(self.finished_items(include_failed))

    def write_image(self, item_id: str, image: Tensor, text: dict[str, str]) -> Path:
        from PIL.PngImagePlugin import PngInfo

        from .data.images import to_pil

        info = PngInfo()
        for k, v in text.items():
            info.add_itxt(k, v)
        buf = io.BytesIO()
        to_pil(image).save(buf, format="PNG", pnginfo=info)
        path = self.images / f"{item_id}.png"
        atomic_write(path, buf.getvalue())
        return path

    def append(self, record: dict[str, Any]) -> None:
        """Append one finished item's line to ``manifest.jsonl``."""
        self._append_line(self.manifest, record)

    def append_metadata(self, item_id: str, fields: dict[str, Any]) -> None:
        """Append the ``imagefolder`` line of ``images/<item_id>.png`` (before its manifest line)."""
        self._append_line(self.metadata, {"file_name": f"images/{item_id}.png", **fields})

    @staticmethod
    def _append_line(path: Path, record: dict[str, Any]) -> None:
        line = (json.dumps(record, default=float) + "\n").encode("utf-8")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


# Item fields renamed in metadata.jsonl: `image` is the data set's image column there.
_METADATA_RENAME = {"image": "source_image"}
_METADATA_FROM_RECORD = ("method", "status", "loss_start", "loss_end", "unet_calls", "wall_s")
_METADATA_PREFIX = "guide_"


def metadata_fields(item: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """An image's ``metadata.jsonl`` fields: the item's own, then the run's summary of it."""
    fields = json.loads(json.dumps(item, default=jsonable))
    fields = {_METADATA_RENAME.get(k, k): v for k, v in fields.items()}
    fields.update({k: v for k, v in row.items() if k in _METADATA_FROM_RECORD})
    fields.update({k: v for k, v in row.items() if k.startswith(_METADATA_PREFIX)})
    return fields


def jsonable(value: Any) -> Any:
    """JSON for what ``json`` cannot write itself: tensors as lists, numbers as floats."""
    if isinstance(value, Tensor):
        return value.tolist()
    return float(value)


def number(value: Any) -> float:
    """A manifest field as a float; NaN when it is missing or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
