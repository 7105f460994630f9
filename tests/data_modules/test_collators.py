import numpy as np
import pytest
import torch

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
    col = PadCollator(pad_id=0)
    b = col([{"input_ids": [2, 7, 3], "token_type_ids": [0, 0, 0], "label": 1, "index": 5},
             {"input_ids": [2, 3], "token_type_ids": [0, 0], "label": 0, "index": 6}])
    assert b["input_ids"].tolist() == [[2, 7, 3], [2, 3, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
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
