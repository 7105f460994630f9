"""What the corpus reader tests share: a corpus's documents in one call, and the one-line message of an error."""

from __future__ import annotations

import pytest

from data_modules.corpus_detection import open_corpus
from data_modules.corpus_formats import CorpusSource


def docs(path, split="train", line_by_line=False, **kw) -> list[list[str]]:
    """The documents of the corpus at ``path`` (``kw``: the CorpusSource's other fields)."""
    return list(open_corpus(CorpusSource(str(path), **kw)).documents(split, line_by_line))


def error(exc, fn, *args, **kw) -> str:
    """The message of the ``exc`` that ``fn`` raises: one line."""
    with pytest.raises(exc) as e:
        result = fn(*args, **kw)
        if hasattr(result, "__next__"):  # a generator raises when read
            list(result)
    message = str(e.value)
    assert "\n" not in message and message, message
    return message
