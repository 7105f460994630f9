"""WikiText's release layout: ``wiki.{train,valid,test}.{tokens,raw}`` (Merity et al., 2016) -> articles -> sentences.

One paragraph per line, every line starting with a space; articles are cut at `` = Title = `` headings, and the text
is tokenised (space-separated tokens), so a standalone ``.``, ``?`` or ``!`` ends a sentence (``split_sentences``)::

     = Article title =
     = = Section = =
     First paragraph , with space @-@ separated tokens , 1 @,@ 000 and 3 @.@ 5 . Another sentence .

The hub's ``Salesforce/wikitext`` holds the same lines, one a row: ``release_documents`` reads both.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from data_modules import sources

WIKITEXT_INFIX = {"train": "train", "validation": "valid", "test": "test"}
"""Split name -> the infix of its WikiText release file (``wiki.valid.tokens`` holds the validation split)."""
RELEASE_FILE = re.compile(r"wiki\.(train|valid|test)\.(tokens|raw)")
"""A release file's name; group 1 is its split's infix, group 2 the variant."""

_HEADING = re.compile(r"(=(?: =)*) (.*) \1")  # " = T = " (article), " = = T = = " (section), ...
_SENTENCE_END = {".", "?", "!"}


class Article(NamedTuple):
    title: str
    paragraphs: list[str]


def read_release_lines(path: str | Path) -> Iterator[str]:
    """The lines of a release file; NUL bytes and invalid UTF-8 are errors naming ``file:line`` (sources.read_lines)."""
    return sources.read_lines(path, "WikiText release layout")


def split_articles(lines: Iterable[str]) -> Iterator[Article]:
    """Group release-format lines into articles.

    An article starts at a top-level heading: a line that is exactly `` = Title = `` (surrounding spaces ignored)
    followed by a blank line, as the release writes every heading. Sub-headings (`` = = Section = = `` and deeper)
    stay inside their article but are dropped, they are not sentences. A heading-shaped line NOT followed by a blank
    line is text: WikiText-2 train has 29 such lines (table legends like `` = Goals ; A = ``), and with this rule the
    counts are the published 600 / 60 / 60 articles. Blank lines are ignored; every other line is one paragraph
    (stripped). Lines before the first heading form an article titled ``""``. Articles without paragraphs are dropped.
    """
    title, paragraphs = "", []
    pending: tuple[str, re.Match] | None = None  # a heading-shaped line, until we know whether a blank line follows
    for line in lines:
        text = line.strip()
        if pending is not None:
            pending_text, m = pending
            pending = None
            if text:  # not followed by a blank line: it is text
                paragraphs.append(pending_text)
            elif m.group(1) == "=":
                if paragraphs:
                    yield Article(title, paragraphs)
                title, paragraphs = m.group(2), []
        if not text:
            continue
        m = _HEADING.fullmatch(text)
        if m is None:
            paragraphs.append(text)
        else:
            pending = (text, m)
    if paragraphs:  # (a heading on the very last line has no text and is dropped)
        yield Article(title, paragraphs)


def detokenize(text: str) -> str:
    """Undo WikiText's split of hyphens and number separators: `` @-@ `` -> ``-``, `` @,@ `` -> ``,``,
    `` @.@ `` -> ``.`` (so ``3 @.@ 5`` is ``3.5`` again)."""
    return text.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")


def split_sentences(paragraph: str) -> list[str]:
    """Split a WikiText paragraph after every standalone ``.``, ``?`` or ``!`` token that another token follows.

    WikiText tokens are separated by spaces, so an abbreviation like ``H.`` or a decimal ``3.5`` is one token and
    does not end a sentence; a closing quote or bracket after the full stop starts the next sentence (kept simple and
    deterministic on purpose). Whitespace is normalised to single spaces.
    """
    sentences, current = [], []
    tokens = paragraph.split()
    for i, tok in enumerate(tokens):
        current.append(tok)
        if tok in _SENTENCE_END and i + 1 < len(tokens):
            sentences.append(" ".join(current))
            current = []
    if current:
        sentences.append(" ".join(current))
    return sentences


def _release_paragraph(paragraph: str, detok: bool) -> str:
    """A release paragraph as the tokenizer should see it (``<unk>`` -> ``[UNK]``: the tokenizer then reads it as its
    unknown token instead of the pieces ``<``, ``unk``, ``>``)."""
    p = sources.join_contractions(paragraph.replace("<unk>", "[UNK]"))
    return detokenize(p) if detok else p


def article_sentences(article: Article, detok: bool = True) -> list[str]:
    """The sentences of an article, paragraphs in order, ready for the tokenizer."""
    out = []
    for p in article.paragraphs:
        out.extend(split_sentences(_release_paragraph(p, detok)))
    return out


def release_documents(lines: Iterable[str], detok: bool = True, line_by_line: bool = False) -> Iterator[list[str]]:
    """Articles of release-format lines as lists of sentences (empty articles dropped); ``line_by_line``: every
    paragraph (headings dropped) as a document of one sentence."""
    for article in split_articles(lines):
        if line_by_line:
            for p in article.paragraphs:
                text = " ".join(_release_paragraph(p, detok).split())
                if text:
                    yield [text]
            continue
        sents = article_sentences(article, detok)
        if sents:
            yield sents

