"""An HF ``CLIPTokenizer`` built offline from the BPE vocabulary that open_clip ships."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

__all__ = ["build_clip_tokenizer"]


def _byte_alphabet() -> list[str]:
    """GPT-2/CLIP's reversible byte → printable-unicode table, in byte order of the vocabulary."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    extra = [b for b in range(256) if b not in keep]
    return [chr(b) for b in keep] + [chr(256 + i) for i in range(len(extra))]


def build_clip_tokenizer(directory: str | Path, model_max_length: int = 77):
    """Write ``vocab.json``/``merges.txt`` for the 49408-token CLIP vocabulary and load it."""
    import open_clip
    from transformers import CLIPTokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(bpe, "rt", encoding="utf-8").read().split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    alphabet = _byte_alphabet()
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = CLIPTokenizer(
        str(directory / "vocab.json"),
        str(directory / "merges.txt"),
        model_max_length=model_max_length,
        pad_token="<|endoftext|>",
    )
    return tok
