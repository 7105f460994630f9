"""One line, one sample: ``[CLS] line [SEP]`` for MLM-only pretraining on short texts (tweets, reviews, titles).

The lines come from the cache as its sentences (``--data.line_by_line`` reads every non-empty line as a document of
one sentence); a line longer than ``max_seq_len`` is truncated. No packing and no pairs: a batch is padded to its
longest line by the collator.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from data_modules.tokenizer import SpecialIds


class LineDataset(Dataset):
    """``[CLS] line [SEP]`` for every sentence (line) of the cache.

    Args:
        ids: 1-D token ids (no special tokens) of all lines, concatenated.
        sent_offsets: ``(n_lines + 1,)`` offsets into ``ids``.
        special: ids of [CLS] and [SEP].
        max_seq_len: longest sample, [CLS] and [SEP] included; longer lines keep their beginning.
    """

    def __init__(self, ids: np.ndarray, sent_offsets: np.ndarray, special: SpecialIds, max_seq_len: int = 128) -> None:
        if max_seq_len < 3:
            raise ValueError(f"LineDataset: max_seq_len={max_seq_len} leaves no room for text (need >= 3)")
        self.ids, self.special, self.max_tokens = ids, special, max_seq_len - 2
        self.rows = np.asarray(sent_offsets, dtype=np.int64)  # line i is ids[rows[i]:rows[i + 1]]

    def __len__(self) -> int:
        return len(self.rows) - 1

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"LineDataset index {index} out of range [0, {len(self)})")
        start = int(self.rows[index])
        end = min(int(self.rows[index + 1]), start + self.max_tokens)
        s = self.special
        input_ids = np.concatenate([[s.cls], np.asarray(self.ids[start:end], dtype=np.int64), [s.sep]]).astype(np.int64)
        return {"input_ids": input_ids, "token_type_ids": np.zeros(len(input_ids), dtype=np.int64),
                "next_sentence_label": 0, "index": index, "epoch": int(epoch)}
