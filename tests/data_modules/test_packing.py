"""Packed contiguous text for MLM-only pretraining (RoBERTa's FULL-SENTENCES)."""

import numpy as np
import pytest

from data_modules.packing import PackedDataset
from data_modules.tokenizer import SpecialIds

SPECIAL = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)


def corpus(seed=0):
    rng = np.random.default_rng(seed)
    lens = rng.integers(3, 30, 200)
    lens[17] = 150  # longer than a whole sequence
    ids = np.arange(lens.sum()) % 1000 + 10  # every token distinct within a window: order is checkable
    sent = np.r_[0, np.cumsum(lens)]
    art = np.array([0, 40, 41, 120, 200])  # articles of 40, 1, 79 and 80 sentences
    return ids, sent, art


def test_rows_pack_whole_sentences_in_order_with_separators_between_articles():
    ids, sent, art = corpus()
    ds = PackedDataset(ids, sent, art, SPECIAL, max_seq_len=64)
    text, lengths = [], []
    for i in range(len(ds)):
        x = ds[i]["input_ids"]
        assert x[0] == SPECIAL.cls and x[-1] == SPECIAL.sep and len(x) <= 64
        assert (ds[i]["token_type_ids"] == 0).all()  # one segment: no sentence pair
        lengths.append(len(x))
        text.append(x[1:-1])
    body = np.concatenate(text)
    # the rows hold the whole token stream once, in order, with one [SEP] where each later article begins
    assert np.array_equal(body[body != SPECIAL.sep], ids)
    seps_inside = (body == SPECIAL.sep).sum()
    row_starts = set(ds.rows[:, 0].tolist())
    assert seps_inside == sum(1 for t in sent[art[1:-1]] if t not in row_starts)
    # rows start at sentence boundaries, except the pieces of the over-long sentence
    cut = set(range(sent[17] + 1, sent[18]))
    assert all(s in set(sent.tolist()) or s in cut for s in ds.rows[:, 0])
    # greedy: a row is closed only when the next sentence would not fit
    for (start, end), n in zip(ds.rows[:-1], lengths[:-1]):
        nxt = int(np.searchsorted(sent, end, side="right")) - 1
        next_len = sent[nxt + 1] - end if sent[nxt] == end else 0
        if end in set(sent.tolist()) and next_len:
            assert n - 2 + next_len > 62
    assert np.mean(lengths) > 0.75 * 64  # packed (whole sentences of 3-29 tokens leave a little room), not padded


def test_packed_dataset_bounds():
    ds = PackedDataset(*corpus(), SPECIAL, max_seq_len=32)
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(ValueError, match="max_seq_len"):
        PackedDataset(*corpus(), SPECIAL, max_seq_len=3)
