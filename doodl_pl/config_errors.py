"""Config errors for people: library classes name their own argument (```opt_steps` must be >=
1, got 0``); the CLI finds where in the config that argument was and adds it, and turns
jsonargparse's wrapped errors into one line without dropping what the error already says."""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterator
from typing import Any

__all__ = ["add_location", "config_leaves", "explain", "locate"]

_NAME = re.compile(r"`([A-Za-z_]\w*)`")
_GOT = re.compile(r"got (.+?)(?:[,;)]| with |$)")


def config_leaves(tree: Any, prefix: str = "", owner: str = "") -> Iterator[tuple[str, Any, str]]:
    """``(path, value, owner)`` for every key of a parsed config: ``owner`` is the class name of
    the ``class_path`` the key belongs to (``""`` at the top level)."""
    if isinstance(tree, dict):
        if "class_path" in tree:
            cls = str(tree["class_path"]).rpartition(".")[2]
            yield from config_leaves(tree.get("init_args") or {}, f"{prefix}.init_args", cls)
            return
        for k, v in tree.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            yield path, v, owner
            yield from config_leaves(v, path, owner)
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from config_leaves(v, f"{prefix}[{i}]", owner)


def _raising_classes(err: BaseException) -> list[str]:
    """Names of the classes whose ``__init__``/``__post_init__`` the error passed through."""
    out = []
    for frame, _ in traceback.walk_tb(err.__traceback__):
        if frame.f_code.co_name in ("__init__", "__post_init__") and "self" in frame.f_locals:
            out.append(type(frame.f_locals["self"]).__name__)
    return out


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def locate(err: BaseException, config: Any) -> list[str]:
    """Config paths of the argument the error names first (its first backticked word), narrowed
    by the class that raised it and by the value it says it got; empty when none matches."""
    text = str(err)
    names = _NAME.findall(text)
    if not names or not isinstance(config, dict):
        return []
    name = names[0]
    hits = [(p, v, o) for p, v, o in config_leaves(config) if p.rpartition(".")[2] == name]
    classes = _raising_classes(err)
    if len(hits) > 1 and classes:
        # the class itself (its class_path), or a settings block of it (``cfg_consistency``)
        by_class = [
            h
            for h in hits
            if h[2] in classes or any(f".{_snake(c)}." in f".{h[0]}." for c in classes)
        ]
        hits = by_class or hits
    got = _GOT.search(text)
    if len(hits) > 1 and got:
        value = got.group(1).strip()
        by_value = [h for h in hits if value in (str(h[1]), repr(h[1]))]
        hits = by_value or hits
    return [p for p, _, _ in hits]


def add_location(err: BaseException, config: Any) -> None:
    """Attach ``config: `path``` to ``err`` as a note (once), when its argument is found."""
    paths = locate(err, config)
    notes = getattr(err, "__notes__", [])
    if paths and not any(n.startswith("config:") for n in notes):
        err.add_note("config: " + " or ".join(f"`{p}`" for p in paths[:3]))


def explain(err: BaseException) -> str:
    """One readable line from a (possibly jsonargparse-wrapped) configuration error: the whole
    message of our own errors (file, line and key included) and where in the config it was."""
    text = str(err)
    notes = " ".join(f"({n})" for n in getattr(err, "__notes__", []))
    unknown = re.search(r"Option '([^']+)' is not accepted", text)
    where = re.search(r'Parser key "([^"]+)"', text)
    cls = re.search(r"class_path '([^']+)'", text)
    if unknown:
        key = unknown.group(1)
        if where and cls:
            key = f"{where.group(1)}.init_args.{key}"
        owner = f" of {cls.group(1)}" if cls else ""
        return (
            f"unknown config key `{key}`{owner}; check its spelling and level "
            f"(`doodl-pl fit --help` and `--print_config` list the accepted keys)"
        )
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # jsonargparse wraps the cause in its own lines ("Does not validate against any of the Union
    # subtypes … Errors: - <cause> … Given value: …"): keep the cause and the key it names.
    causes = [ln[2:] for ln in lines if ln.startswith("- ") and not ln.startswith("- Expected a")]
    if causes:
        text = "; ".join(causes)
        if where and not notes:
            notes = f"(config: `{where.group(1)}`)"
    else:
        text = " ".join(ln for ln in lines if not ln.startswith(("Given value", "Subtypes:")))
    return " ".join([text[:2000], notes]).strip()
