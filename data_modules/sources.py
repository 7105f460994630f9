"""Reading the sources of both data modules: local text files, checked line by line, and the HuggingFace hub,
failing at once when it cannot be reached."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse


_PTB_NT = re.compile(r"(\w) n't\b", re.IGNORECASE)  # SST-2 (Penn Treebank): "does n't", "ca n't"
_WIKITEXT_NT = re.compile(r"(\w)n 't\b", re.IGNORECASE)  # WikiText: "doesn 't", "can 't"


def join_contractions(text: str) -> str:
    """Write the negation clitic as running text does ("doesn't"), however the corpus split it.

    SST-2 follows the Penn Treebank ("does n't", 2,311 times in train), WikiText splits it the other way
    ("doesn 't"): under BERT's pre-tokenizer the first gives ``does n ' t``, the second ``doesn ' t``, so an encoder
    pretrained on WikiText would never have seen SST-2's negations. Both readers apply this, and user text already
    has the joined form.
    """
    if "'t" not in text and "'T" not in text:  # both patterns need it; most lines have neither (a fast path)
        return text
    return _WIKITEXT_NT.sub(r"\1n't", _PTB_NT.sub(r"\1n't", text))


def read_lines(path: str | Path, layout: str, keepends: bool = False) -> Iterator[str]:
    """The lines of a text file without line ends (LF or CRLF; ``keepends`` keeps them, for the csv module) and
    without a leading UTF-8 BOM.

    NUL bytes and invalid UTF-8 are errors naming ``file:line`` and the byte offset in the file: both mean the file
    is not in ``layout`` (or is damaged, or binary), and guessing would silently change the text.
    """
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):  # binary lines split at \n only: a stray \r stays inside its line
            if b"\x00" in raw:
                at = _line_offset(path, lineno) + raw.index(b"\x00")
                raise ValueError(f"{path}:{lineno}: NUL byte at byte {at} of the file: it looks binary; expected "
                                 f"UTF-8 text in the {layout}")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                at = _line_offset(path, lineno) + e.start
                raise ValueError(f"{path}:{lineno}: invalid UTF-8 at byte {e.start} of the line, byte {at} of the file "
                                 f"({raw[e.start:e.start + 4]!r}); expected UTF-8 text{_binary_hint(path)}") from None
            if lineno == 1:
                line = line.removeprefix("\ufeff")
            yield line if keepends else line.removesuffix("\n").removesuffix("\r")


def _line_offset(path: str | Path, lineno: int) -> int:
    """Byte offset of line ``lineno`` (1-based) in ``path``: counted again only when an error names it, so reading
    keeps no running total."""
    with open(path, "rb") as f:
        return sum(len(raw) for raw, _ in zip(f, range(lineno - 1)))


def _binary_hint(path: str | Path) -> str:
    with open(path, "rb") as f:
        return " (it looks binary: NUL bytes in its first 8 KiB)" if b"\x00" in f.read(8192) else ""


def is_offline() -> bool:
    return any(os.environ.get(k, "").lower() in {"1", "true", "yes", "on"} for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def load_hub(dataset: str, config: str | None, hint: str):
    """``datasets.load_dataset(dataset, config)``, or a one-line ValueError ending in ``hint`` at once when the
    hub cannot be reached (``datasets`` itself retries for half a minute or more before giving up)."""
    name = dataset if config is None else f"{dataset}/{config}"
    if not is_offline():
        endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
        host, port = endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)
        try:
            socket.create_connection((host, port), timeout=5).close()
        except OSError as e:
            raise ValueError(f"cannot load {name} from the HuggingFace hub ({host} unreachable: {e}; "
                             f"with a dataset already in the HF cache set HF_HUB_OFFLINE=1); {hint}") from None
    try:
        import datasets  # only here: local files need no hub client

        return datasets.load_dataset(dataset, config)
    except Exception as e:
        reason = str(e).splitlines()[0][:200] if str(e) else ""
        raise ValueError(f"cannot load {name} from the HuggingFace hub ({type(e).__name__}: {reason}); "
                         f"{hint}") from None
