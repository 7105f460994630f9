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


def test_walk_puts_unused_sentences_back_as_bert_does():
    """BERT's create_instances_from_document: a chunk reaches the target (or its article's end); after a random B the
    walk resumes at the end of A, after a true B at the end of the chunk; so every sentence is used, some twice."""
    ids, sent, art = corpus()
    ds = NSPDataset(ids, sent, art, SPECIAL, max_seq_len=64, short_seq_prob=0.0)
    plan = ds.plan
    first, a_end, last, random_b, target = plan.T
    assert (target == 61).all() and (first < a_end).all() and (a_end <= last).all()
    assert ((a_end < last) | (random_b == 1)).all()  # a one-sentence chunk always takes a random B
    article_end = art[np.searchsorted(art, first, side="right")]
    reached = sent[last] - sent[first] >= 61
    assert (reached | (last == article_end)).all()  # short only at an article's end
    assert (sent[last - 1] - sent[first] < 61).all()  # and no longer than needed
    for row, nxt in zip(plan[:-1], plan[1:]):
        if nxt[0] in art:  # a new article starts
            continue
        assert nxt[0] == (row[1] if row[3] else row[2])
    used = np.zeros(len(sent) - 1, dtype=bool)
    for f, a, la, r, _ in plan:
        used[f:la if not r else a] = True
    assert used.all()
    # put-back gives more pairs than one cut of the corpus into chunks (one pass: about len(ids) / 61)
    assert len(ds) > 1.2 * len(ids) / 61
    # a positive pair can now straddle what a fixed segmentation would have made a chunk boundary
    assert any(r == 0 and f in set(plan[:, 1][plan[:, 3] == 1]) for f, _, _, r, _ in plan)


def test_walk_is_drawn_from_the_seed():
    ids, sent, art = corpus()
    a = NSPDataset(ids, sent, art, SPECIAL, max_seq_len=64, seed=3)
    assert np.array_equal(a.plan, NSPDataset(ids, sent, art, SPECIAL, max_seq_len=64, seed=3).plan)
    assert not np.array_equal(a.plan[: min(len(a), 50)], NSPDataset(ids, sent, art, SPECIAL, max_seq_len=64, seed=4).plan[:50])


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
