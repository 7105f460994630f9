"""Running text -> sentences: a rule-based splitter, for every corpus format but WikiText's tokenised release.

A full stop, ``?`` or ``!`` followed by a space and an upper-case letter, a digit or an opening quote ends a
sentence, unless the word before is an abbreviation or an initial (``split_text``). WikiText's tokenised text has its
own, simpler rule (``wikitext_release.split_sentences``).
"""

from __future__ import annotations

import re

from data_modules import sources

_BOUNDARY = re.compile(r"[.?!][.?!\"'”’»)\]]* (?=[\"'“‘«(\[]?[^\W_a-z])|[。！？]+[」』”’）)]* ?")
"""A candidate sentence end: ``.``, ``?`` or ``!`` (closing quotes and brackets included), a space and something
that may start a sentence (the check on it is finished in Python); or a CJK full stop, which needs no space."""
_OPENING = "\"'“‘«(["
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt ft vs cf fig figs no nos vol vols pp ed eds al inc ltd co corp dept univ gen col lt "
    "sgt capt cmdr adm gov sen rep rev hon jan feb mar apr jun jul aug sep sept oct nov dec approx est ca".split())
"""Words that end in a full stop without ending the sentence (lower-cased, without the stop). ``etc.`` is not one:
before a capital it ends its sentence more often than not."""
_DOTTED = re.compile(r"(?:[^\W\d_]{1,3}\.)+[^\W\d_]{1,3}")  # e.g, i.e, U.S, Ph.D, a.m (the final stop is cut off)


def split_text(line: str) -> list[str]:
    """Split a line of running text into sentences; whitespace is normalised to single spaces.

    A sentence ends after ``.``, ``?`` or ``!`` (and any closing quotes or brackets) followed by a space and an
    upper-case letter, a digit or an opening quote or bracket; not after an abbreviation (``Dr.``, ``No.``, ``Fig.``;
    see ``_ABBREVIATIONS``), a single letter (an initial: ``J. R. R. Tolkien``) or a dotted short form (``e.g.``,
    ``U.S.``), so those never end a sentence even where they do. Decimals (``3.5``) have no space after the stop. A
    CJK full stop (``。！？``) always ends one. Deterministic and simple on purpose: BERT's segments are built from
    several sentences anyway.
    """
    text = " ".join(line.split())
    out, start = [], 0
    for m in _BOUNDARY.finditer(text):
        i, end = m.start(), m.end()
        if text[i] in ".?!":
            nxt = text[end]
            if nxt in _OPENING and end + 1 < len(text):
                nxt = text[end + 1]
            if not (nxt.isupper() or nxt.isdigit()):
                continue
            if text[i] == "." and _is_abbreviation(text[text.rfind(" ", 0, i) + 1:i].lstrip(_OPENING)):
                continue
        sentence = text[start:end].rstrip()
        if sentence:
            out.append(sentence)
        start = end
    if start < len(text):
        out.append(text[start:])
    return out


def _is_abbreviation(word: str) -> bool:
    """Whether ``word`` (the text before a full stop, without it) is a short form rather than a sentence's end."""
    return ((len(word) == 1 and word.isalpha()) or word.lower() in _ABBREVIATIONS
            or _DOTTED.fullmatch(word) is not None)


def text_sentences(text: str, line_by_line: bool) -> list[str]:
    """Sentences of a block of running text (lines split apart, then each line split; negations joined as
    ``sources.join_contractions`` writes them), or with ``line_by_line`` the whole block as one sentence."""
    text = sources.join_contractions(text)
    if line_by_line:
        one = " ".join(text.split())
        return [one] if one else []
    out = []
    for line in text.splitlines():
        out.extend(split_text(line))
    return out

