"""Batch shapes from a small fixed set: the bucket arithmetic of data_modules/shapes.py."""

import numpy as np

from data_modules import shapes


def test_padded_length_rounds_up_and_caps():
    assert shapes.padded_length(np.array([3, 31]), 32) == 32
    assert shapes.padded_length(np.array([33]), 32) == 64
    assert shapes.padded_length(np.array([97]), 32, cap=100) == 100
    assert shapes.padded_length(np.array([130]), 32, cap=100) == 130  # never below the longest row
    assert shapes.padded_length(np.array([7]), None) == 7


def test_token_index_lists_real_tokens_then_filler_to_a_bucket():
    # B * T = 8, step 8 / 4 = 2: rows of 3 and 2 real tokens -> 5 positions, padded to 6 with B * T
    assert shapes.token_index(np.array([3, 2]), T=4, buckets=4).tolist() == [0, 1, 2, 4, 5, 8]
    assert shapes.token_index(np.array([3, 1]), T=4, buckets=4).tolist() == [0, 1, 2, 4]  # already a multiple
    assert shapes.token_index(np.array([4, 4]), T=4, buckets=3).tolist() == list(range(8))  # never past B * T


def test_masked_index_pads_with_position_zero_and_ignored_labels():
    index, labels = shapes.masked_index(np.array([[-100, 5, -100, 7]]))
    assert index.tolist() == [1, 3, 0, 0, 0, 0, 0, 0] and labels.tolist() == [5, 7] + [-100] * 6


def test_sizes_come_from_a_handful_of_buckets():
    """Batches of 32 random lengths up to 128: a few padded lengths and token counts, not one per batch."""
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(500):
        lengths = rng.integers(8, 129, 32)
        T = shapes.padded_length(lengths, shapes.LENGTH_STEP, cap=128)
        seen.add((T, len(shapes.token_index(lengths, T))))
    assert len(seen) <= 4 * shapes.TOKEN_BUCKETS


def _shapes_over_an_epoch(loader) -> set:
    return {(tuple(b["input_ids"].shape), tuple(b["token_index"].shape)) for b in loader}


def test_one_epoch_of_real_mrpc_has_a_handful_of_shapes(glue_root, tokenizer_path, tmp_path):
    """The shapes the model sees over an epoch of MRPC's 3,668 training pairs (115 batches of 32): each new one costs
    glibc a block size it keeps, compile a graph and CUDA graphs a capture. Bucketed: a handful; with the buckets
    removed (the longest row, the real-token count) nearly every batch is new (100 sizes in 115 batches)."""
    from data_modules.glue import GLUEDataModule

    dm = GLUEDataModule("mrpc", data_dir=str(glue_root / "MRPC"), tokenizer=str(tokenizer_path), max_seq_len=128,
                        num_workers=0, cache_dir=str(tmp_path), seed=0)
    dm.prepare_data()
    dm.setup("fit")
    loader = dm.train_dataloader()
    bucketed = _shapes_over_an_epoch(loader)
    assert len(loader) == 115 and len(bucketed) <= 12, sorted(bucketed)
    lengths = {T for (_, T), _ in bucketed}
    assert lengths <= {32, 64, 96, 128}
    # the control: the same batches with each size as the data makes it
    unbucketed = {(len(b["input_ids"]), int(b["attention_mask"].sum(1).max()), b["n_tokens"]) for b in loader}
    assert len(unbucketed) >= 90  # of 115 batches
