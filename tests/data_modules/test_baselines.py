"""Count baselines of masked-token prediction: hand-computed on a small stream, and on real WikiText-2."""

import numpy as np
import pytest

from data_modules.baselines import count_baselines


def test_count_baselines_by_hand():
    # train: "5 6 7" repeated, then "5 8 7" once; token 1 ([UNK]) is never predicted
    train = np.array([5, 6, 7] * 10 + [5, 8, 7] + [1, 6], dtype=np.int64)
    val = np.array([5, 6, 7, 5, 8, 7, 9, 6, 1, 5], dtype=np.int64)
    b = count_baselines(train, val, vocab_size=10, ignore=(0, 1, 2, 3, 4))
    # scored middles (both neighbours exist, not special): 6 7 5 8 7 9 6 (the [UNK] at 8 is skipped) -> 7 tokens
    assert b["tokens"] == 7
    # unigram: 6, 7 and 5 are tied at 11 (ties: the smallest id) -> 5; right once (the 5) out of 7
    assert b["unigram"] == pytest.approx(round(1 / 7, 4))
    # after 5 comes 6 (10x) -> right on "6" (pos 1), wrong on "8"; after 6 comes 7 -> right on "7" (pos 2) and wrong
    # on "1"... (not scored); after 7 comes 5 -> right on "5"; after 8: 7 -> right; after 7 (pos 6 "9"): wrong;
    # after 9: unseen -> unigram 5, wrong on "6"
    assert b["left_bigram"] == pytest.approx(round(4 / 7, 4))
    # between 5 and 7: 6 (10x) over 8 (1x) -> the "8" is missed; the others as the left bigram, except where the
    # pair is known: (9, 1) unknown -> back off
    assert b["both_neighbours"] == pytest.approx(round(4 / 7, 4))


def test_count_baselines_on_wikitext2(wikitext2):
    """The ordering every MLM run is read against: unigram < right bigram < left bigram < both neighbours."""
    from data_modules.wikitext import WikiText103DataModule

    dm = WikiText103DataModule(**wikitext2, num_workers=0)
    dm.prepare_data()
    dm.setup("fit")
    b = dm.baselines
    assert b["tokens"] > 200_000
    assert 0.03 < b["unigram"] < b["right_bigram"] < b["left_bigram"] < b["both_neighbours"] < 0.45, b
