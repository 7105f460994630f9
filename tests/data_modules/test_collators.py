import numpy as np
import pytest
import torch

from data_modules import shapes
from data_modules.collators import MLMCollator, PadCollator
from data_modules.tokenizer import SpecialIds

SPECIAL = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)
V = 100


def sample(index, n_a=20, n_b=13, epoch=0, rng=np.random.default_rng(0)):
    a, b = rng.integers(5, V, n_a), rng.integers(5, V, n_b)
    ids = np.concatenate([[2], a, [3], b, [3]])
    types = np.r_[np.zeros(n_a + 2, int), np.ones(n_b + 1, int)]
    return {"input_ids": ids, "token_type_ids": types, "next_sentence_label": index % 2, "index": index, "epoch": epoch}


def test_shapes_padding_and_labels():
    col = MLMCollator(SPECIAL, V, seed=1, pad_to_multiple_of=8)
    batch = col([sample(0), sample(1, 5, 4)])
    assert batch["input_ids"].shape == (2, 40) and batch["input_ids"].dtype == torch.long
    assert batch["attention_mask"][1].sum() == 12 and (batch["input_ids"][1, 12:] == 0).all()
    lab, ids = batch["labels"], batch["input_ids"]
    assert (lab[batch["attention_mask"] == 0] == -100).all()
    assert batch["next_sentence_label"].tolist() == [0, 1] and batch["index"].tolist() == [0, 1]
    # exactly round(0.15 * n_eligible), at least 1
    assert (lab[0] != -100).sum() == 5 and (lab[1] != -100).sum() == 1  # 33 eligible -> 4.95 -> 5; 9 -> 1.35 -> 1


def test_rate_80_10_10_and_specials_never_masked():
    col = MLMCollator(SPECIAL, V, seed=0)
    n = mask = rand = same = 0
    for i in range(2000):
        s = sample(i, 40, 40)
        out, lab = col.mask(s["input_ids"], 0, i)
        sel = lab != -100
        assert not np.isin(s["input_ids"][sel], SPECIAL.all).any()
        assert (lab[sel] == s["input_ids"][sel]).all()
        n += sel.sum()
        mask += (out[sel] == SPECIAL.mask).sum()
        same += (out[sel] == s["input_ids"][sel]).sum()
        assert (out[~sel] == s["input_ids"][~sel]).all()
        assert (out[sel] >= 5).sum() + (out[sel] == SPECIAL.mask).sum() == sel.sum()  # replacements are not special
    rand = n - mask - same
    assert n == 2000 * 12  # round(0.15 * 80)
    assert abs(mask / n - 0.8) < 0.02 and abs(same / n - 0.1 - 0.1 / (V - 5)) < 0.015 and abs(rand / n - 0.1) < 0.015


def test_deterministic_per_sample_whatever_the_batch():
    col = MLMCollator(SPECIAL, V, seed=7)
    s = [sample(i, epoch=2) for i in range(4)]
    one = col(s)
    two = col(s[2:])
    assert torch.equal(one["input_ids"][2:, : two["input_ids"].shape[1]], two["input_ids"])
    other_epoch = col([dict(x, epoch=3) for x in s])
    assert not torch.equal(one["labels"], other_epoch["labels"])


def test_whole_word_masking_masks_whole_words():
    cont = np.zeros(V, bool)
    cont[50:] = True  # ids >= 50 are "##" pieces
    col = MLMCollator(SPECIAL, V, whole_word_masking=True, continuation=cont, seed=0)
    rng = np.random.default_rng(1)
    for i in range(200):
        words = [np.r_[rng.integers(5, 50), rng.integers(50, V, rng.integers(0, 3))] for _ in range(30)]
        ids = np.concatenate([[2], *words, [3]])
        _, lab = col.mask(ids, 0, i)
        masked = lab != -100
        pos = 1
        for w in words:
            m = masked[pos : pos + len(w)]
            assert m.all() or not m.any()
            pos += len(w)
        assert 1 <= masked.sum() <= max(1, round(0.15 * (len(ids) - 2)) + 2)
    with pytest.raises(ValueError, match="continuation"):
        MLMCollator(SPECIAL, V, whole_word_masking=True)


def test_pad_collator():
    col = PadCollator(pad_id=0, pad_to_multiple_of=1)
    b = col([{"input_ids": [2, 7, 3], "token_type_ids": [0, 0, 0], "label": 1, "index": 5},
             {"input_ids": [2, 3], "token_type_ids": [0, 0], "label": 0, "index": 6}])
    assert b["input_ids"].tolist() == [[2, 7, 3], [2, 3, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert b["n_tokens"] == 5 and b["token_index"].tolist()[:5] == [0, 1, 2, 3, 4]
    assert b["labels"].dtype == torch.long and b["index"].tolist() == [5, 6]
    reg = col([{"input_ids": [2, 3], "token_type_ids": [0, 0], "label": 0.5, "index": 0}])
    assert reg["labels"].dtype == torch.float32
    assert "labels" not in col([{"input_ids": [2, 3], "token_type_ids": [0, 0], "index": 0}])


@pytest.mark.parametrize("rate", [0.25, 0.4])
def test_masking_rate_is_a_recipe_knob(rate):
    """Higher masking rates (Wettig et al., 2023: 25-40% trains better encoders): the count follows the rate."""
    col = MLMCollator(SPECIAL, V, mlm_probability=rate, seed=0)
    for i in range(50):
        s = sample(i, 40, 40)  # 80 eligible tokens
        _, lab = col.mask(s["input_ids"], 0, i)
        assert (lab != -100).sum() == int(rate * 80 + 0.5)


def _with_specials(rng, ordinary, specials, n, share):
    """``n`` tokens of which about ``share`` are drawn from ``specials``, the rest from ``ordinary``."""
    ids = rng.choice(ordinary, n)
    where = rng.random(n) < share
    ids[where] = rng.choice(specials, int(where.sum()))
    return ids


@pytest.mark.parametrize("layout", ["ours", "hf"])
@pytest.mark.parametrize("whole_word_masking", [False, True])
def test_unk_pad_mask_are_never_chosen_nor_drawn_as_replacements(layout, whole_word_masking):
    """Sequences where a third of the tokens are [UNK], [PAD] or [MASK]: none of those is a masked target (predicting
    [UNK] teaches nothing), every position holding one comes out unchanged, the count follows the ordinary tokens
    only, and no random replacement is a special token. ``hf``: HuggingFace BERT's layout, specials at 0 and
    100..103 amid ordinary ids, so the replacement draw must skip them rather than rely on ids 0..4."""
    if layout == "ours":
        special, V = SPECIAL, 100
    else:
        special, V = SpecialIds(pad=0, unk=100, cls=101, sep=102, mask=103), 130
    ordinary = np.setdiff1d(np.arange(5, V), special.all)
    odd = np.array([special.unk, special.pad, special.mask])
    cont = np.zeros(V, bool)
    cont[ordinary[::3]] = True  # every third ordinary id is a "##" piece
    col = MLMCollator(special, V, whole_word_masking=whole_word_masking, continuation=cont, seed=3)
    rng = np.random.default_rng(11)
    n_odd_seen = n_selected = n_replaced = 0
    for i in range(400):
        a, b = (_with_specials(rng, ordinary, odd, n, 0.35) for n in (40, 30))
        ids = np.concatenate([[special.cls], a, [special.sep], b, [special.sep]])
        out, lab = col.mask(ids, 0, i)
        is_special = np.isin(ids, special.all)
        sel = lab != -100
        n_odd_seen += np.isin(ids, odd).sum()
        n_selected += sel.sum()
        assert not sel[is_special].any(), f"sample {i}: a special token was chosen: {ids[sel & is_special]}"
        assert (out[is_special] == ids[is_special]).all(), f"sample {i}: a special token was replaced"
        n_ordinary = int((~is_special).sum())
        if not whole_word_masking:
            assert sel.sum() == max(1, int(0.15 * n_ordinary + 0.5)), f"sample {i}: count not from ordinary tokens"
        changed = sel & (out != ids) & (out != special.mask)  # the 10% random replacements that changed the token
        n_replaced += changed.sum()
        assert not np.isin(out[changed], special.all).any(), f"sample {i}: a special token drawn as a replacement"
        assert (out[sel] < V).all()
    assert n_odd_seen > 400 * 70 * 0.3 and n_selected > 0 and n_replaced > 0.05 * n_selected  # the test saw both
    # the batch path too: [PAD] inside a row and the padding added by the collator stay unlabelled
    rows = [{"input_ids": np.r_[special.cls, _with_specials(rng, ordinary, odd, n, 0.35), special.sep],
             "token_type_ids": np.zeros(n + 2, int), "next_sentence_label": 0, "index": j}
            for j, n in enumerate((30, 9))]
    batch = col(rows)
    ids = batch["input_ids"].numpy()
    labels = batch["labels"].numpy()
    assert (labels[np.isin(ids, [special.pad, special.unk])] == -100).all()
    assert not np.isin(labels, special.all).any()


def test_batches_are_padded_to_length_buckets_by_default():
    """Without pad_to_multiple_of the padded length is the longest row rounded up to shapes.LENGTH_STEP, capped at
    max_len: one of four lengths at 128, whatever the rows."""
    col = MLMCollator(SPECIAL, V, seed=0, max_len=100)
    seen = {col([sample(i, n, n) for i in range(3)])["input_ids"].shape[1] for n in range(1, 49)}
    assert seen == {32, 64, 96, 100}
    pad = PadCollator(0)
    assert pad([{"input_ids": [2] * 33, "index": 0}])["input_ids"].shape == (1, 64)


def test_the_batch_carries_its_layout():
    """token_index, masked_index, masked_labels and the counts agree with the padded matrices they describe, so
    the model never has to derive them on the device."""
    col = MLMCollator(SPECIAL, V, seed=2)
    batch = col([sample(i, 5 + 7 * i, 3 + 2 * i) for i in range(6)])
    B, T = batch["input_ids"].shape
    flat_mask = batch["attention_mask"].reshape(-1).bool()
    real = torch.nonzero(flat_mask).squeeze(1)
    ti = batch["token_index"]
    assert batch["n_tokens"] == len(real) == int(flat_mask.sum())
    assert torch.equal(ti[: len(real)], real) and (ti[len(real):] == B * T).all()
    assert len(ti) % (B * T // shapes.TOKEN_BUCKETS) == 0 or len(ti) == B * T
    labels = batch["labels"].reshape(-1)
    n = batch["n_masked"]
    assert n == int((labels != -100).sum())
    assert torch.equal(batch["masked_labels"][:n], labels[batch["masked_index"][:n]])
    assert (batch["masked_labels"][n:] == -100).all() and (batch["masked_index"][n:] == 0).all()
