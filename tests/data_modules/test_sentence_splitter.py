"""The running-text sentence splitter (data_modules/sentence_splitter.py)."""

import pytest

from data_modules.sentence_splitter import split_text, text_sentences


@pytest.mark.parametrize("text, sentences", [
    ("It is big. It is red! Is it? Yes.", ["It is big.", "It is red!", "Is it?", "Yes."]),
    ("Dr. Smith met Mr. Jones at 3.5 km. They talked.", ["Dr. Smith met Mr. Jones at 3.5 km.", "They talked."]),
    ("See e.g. Table 1. The U.S. Army came. Next.", ["See e.g. Table 1.", "The U.S. Army came.", "Next."]),
    ("J. R. R. Tolkien wrote it. No. 5 is next. Fig. 3 too.", ["J. R. R. Tolkien wrote it.", "No. 5 is next.", "Fig. 3 too."]),
    ('He said "Go." Then he left. (It rained.) "Why?" she asked.',
     ['He said "Go."', "Then he left.", "(It rained.)", '"Why?" she asked.']),
    ("In 1990. 1991 was better.", ["In 1990.", "1991 was better."]),
    ("lower. case after a stop. Ends with etc. Then more.", ["lower. case after a stop.", "Ends with etc.", "Then more."]),
    ("Wait... What? Über. Ölpreis", ["Wait...", "What?", "Über.", "Ölpreis"]),
    ("  spaced \t out.   Next  ", ["spaced out.", "Next"]),
    ("这是第一句。这是第二句！好", ["这是第一句。", "这是第二句！", "好"]),
    ("no end mark", ["no end mark"]),
    ("", []),
])
def test_split_text(text, sentences):
    assert split_text(text) == sentences
    assert split_text(text) == split_text(text)  # deterministic


def test_text_sentences_splits_each_line_and_joins_negations():
    assert text_sentences("It does n't. Next\nline two", False) == ["It doesn't.", "Next", "line two"]
    assert text_sentences("  It does n't.\n Next  ", True) == ["It doesn't. Next"]  # line by line: one sentence
    assert text_sentences(" \n ", True) == text_sentences(" \n ", False) == []
