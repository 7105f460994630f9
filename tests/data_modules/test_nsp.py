import numpy as np
import pytest

from data_modules.nsp import NSPDataset
from data_modules.tokenizer import SpecialIds

SPECIAL = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)
BASE = 10  # token id = BASE + sentence number: every token tells which sentence it came from


def corpus(n_art=20, sents_per_art=30, seed=0):
    rng = np.random.default_rng(seed)
    n_sent = n_art * sents_per_art
    lens = rng.integers(3, 21, n_sent)
    ids = np.repeat(np.arange(n_sent) + BASE, lens)
    sent = np.r_[0, np.cumsum(lens)]
    art = np.arange(0, n_sent + 1, sents_per_art)
    return ids, sent, art


def sentences(tokens):
    return sorted(set((tokens - BASE).tolist()))


def test_layout_types_length_and_next_sentence():
    ids, sent, art = corpus()
    ds = NSPDataset(ids, sent, art, SPECIAL, max_seq_len=64, short_seq_prob=0.1, seed=1)
    labels, checked = [], 0
    for epoch in range(3):
        for i in range(len(ds)):
            s = ds[(epoch, i)]
            x, t = s["input_ids"], s["token_type_ids"]
            assert x.dtype == np.int64 and t.dtype == np.int64 and len(x) == len(t) <= 64
            assert x[0] == SPECIAL.cls and x[-1] == SPECIAL.sep and (x == SPECIAL.sep).sum() == 2
            first_sep = int(np.flatnonzero(x == SPECIAL.sep)[0])
            assert (t[: first_sep + 1] == 0).all() and (t[first_sep + 1 :] == 1).all()
            a, b = x[1:first_sep], x[first_sep + 1 : -1]
            assert len(a) >= 1 and len(b) >= 1
            sa, sb = sentences(a), sentences(b)
            assert sa == list(range(sa[0], sa[-1] + 1)) and sb == list(range(sb[0], sb[-1] + 1))  # contiguous
            art_a, art_b = (np.searchsorted(art, [sa[0], sb[0]], side="right") - 1).tolist()
            assert art_a == np.searchsorted(art, sa[-1], side="right") - 1
            if s["next_sentence_label"] == 0:  # B is the true continuation, in the same article
                assert art_a == art_b and sb[0] > sa[-1]
                untruncated = len(a) + len(b) == sent[sb[-1] + 1] - sent[sa[0]]
                if untruncated:
                    assert sb[0] == sa[-1] + 1
                    checked += 1
            else:
                assert art_a != art_b
            assert s["epoch"] == epoch and s["index"] == i
            labels.append(s["next_sentence_label"])
    assert checked > 20
    assert 0.45 < np.mean(labels) < 0.62


def test_about_half_random_without_short_sequences():
    ids, sent, art = corpus(60)
    ds = NSPDataset(ids, sent, art, SPECIAL, max_seq_len=64, short_seq_prob=0.0)
    labels = [ds[(e, i)]["next_sentence_label"] for e in range(4) for i in range(len(ds))]
    assert len(labels) > 1000 and abs(np.mean(labels) - 0.5) < 0.05


def test_static_segmentation_covers_the_corpus_once():
    ids, sent, art = corpus()
    ds = NSPDataset(ids, sent, art, SPECIAL, max_seq_len=64)
    assert len(ds) == len(NSPDataset(ids, sent, art, SPECIAL, max_seq_len=64, seed=9))
    # about one pass: every chunk but an article's last holds >= 61 tokens, and overshoots by less than a sentence
    assert (len(ds) - 20) * 61 <= len(ids) < len(ds) * (61 + 20)
    starts = ds.chunk_start
    assert starts[0] == 0 and (np.diff(starts) > 0).all()


def test_deterministic_epochs_differ_and_fixed_epoch():
    ids, sent, art = corpus()
    ds = NSPDataset(ids, sent, art, SPECIAL, max_seq_len=64, seed=3)
    same = NSPDataset(ids, sent, art, SPECIAL, max_seq_len=64, seed=3)
    for i in range(0, len(ds), 7):
        assert np.array_equal(ds[(2, i)]["input_ids"], same[(2, i)]["input_ids"])
    e0 = [ds[(0, i)]["input_ids"] for i in range(len(ds))]
    e1 = [ds[(1, i)]["input_ids"] for i in range(len(ds))]
    assert sum(not np.array_equal(a, b) for a, b in zip(e0, e1)) > len(ds) // 2
    val = NSPDataset(ids, sent, art, SPECIAL, max_seq_len=64, seed=3, fixed_epoch=0)
    for i in range(0, len(ds), 5):
        assert np.array_equal(val[(5, i)]["input_ids"], val[i]["input_ids"])
        assert np.array_equal(val[i]["input_ids"], e0[i]) and val[(5, i)]["epoch"] == 0


def test_long_sentences_are_truncated():
    lens = np.array([500, 3, 400, 2, 7])
    ids = np.arange(lens.sum()) % 50 + BASE
    ds = NSPDataset(ids, np.r_[0, np.cumsum(lens)], np.array([0, 2, 5]), SPECIAL, max_seq_len=32)
    lengths = []
    for e in range(20):
        for i in range(len(ds)):
            x = ds[(e, i)]["input_ids"]
            assert len(x) <= 32 and x[1] != SPECIAL.sep and x[-2] != SPECIAL.sep  # A and B keep >= 1 token
            lengths.append(len(x))
    assert lengths.count(32) > len(lengths) // 2


def test_needs_two_articles_and_valid_offsets():
    ids, sent, _ = corpus(1)
    with pytest.raises(ValueError, match="at least 2"):
        NSPDataset(ids, sent, np.array([0, len(sent) - 1]), SPECIAL)
    with pytest.raises(ValueError, match="sent_offsets"):
        NSPDataset(ids, sent[:-1], np.array([0, 3]), SPECIAL)
    ds = NSPDataset(*corpus(2), SPECIAL)
    with pytest.raises(IndexError):
        ds[len(ds)]
