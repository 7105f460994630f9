"""Contiguous text packed to ``max_seq_len`` for MLM-only pretraining: RoBERTa's FULL-SENTENCES (Liu et al., 2019).

Without next sentence prediction there is no reason to build sentence pairs: every sequence is ``[CLS] text [SEP]``
filled with whole consecutive sentences up to the length limit, crossing article boundaries with a ``[SEP]`` between
articles (RoBERTa's extra separator token). The packing is static (one pass over the corpus per epoch, cut once);
the masks change per epoch in the collator. A sentence longer than a whole sequence is cut into pieces.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from data_modules.tokenizer import SpecialIds


class PackedDataset(Dataset):
    """Sequences of whole consecutive sentences, from token ids of sentences grouped in articles.

    Args:
        ids: 1-D token ids (no special tokens) of all sentences, concatenated.
        sent_offsets: ``(n_sent + 1,)`` offsets into ``ids``.
        art_offsets: ``(n_art + 1,)`` offsets into the sentences.
        special: ids of [CLS] and [SEP].
        max_seq_len: longest sequence, [CLS] and [SEP]s included.
    """

    def __init__(self, ids: np.ndarray, sent_offsets: np.ndarray, art_offsets: np.ndarray, special: SpecialIds,
                 max_seq_len: int = 128) -> None:
        if max_seq_len < 4:
            raise ValueError(f"PackedDataset: max_seq_len={max_seq_len} leaves no room for text (need >= 4)")
        self.ids, self.special = ids, special
        self.sent_offsets = np.asarray(sent_offsets, dtype=np.int64)
        art_offsets = np.asarray(art_offsets, dtype=np.int64)
        self.article_starts = self.sent_offsets[art_offsets[1:-1]]  # token offsets where a new article begins
        self.max_tokens = max_seq_len - 2  # [CLS] ... [SEP]
        self.rows = self._pack(art_offsets)  # (n, 2): token range [start, end) of each sequence

    def _pack(self, art_offsets: np.ndarray) -> np.ndarray:
        so, cap = self.sent_offsets, self.max_tokens
        new_article = np.zeros(len(so) - 1, dtype=bool)
        new_article[art_offsets[1:-1]] = True  # sentences that open an article (after the first)
        rows: list[tuple[int, int]] = []
        start, used = int(so[0]), 0  # the open row: first token, tokens + separators so far
        for i in range(len(so) - 1):
            s, e = int(so[i]), int(so[i + 1])
            n = e - s + (1 if new_article[i] and used else 0)  # a [SEP] before an article inside the row
            if used and used + n > cap:  # close the row before this sentence
                rows.append((start, s))
                start, used, n = s, 0, e - s
            while n > cap:  # a sentence longer than a row: whole rows of it
                rows.append((start, start + cap - used))
                start, used = start + cap - used, 0
                n = e - start
            used += n
        if used:
            rows.append((start, int(so[-1])))
        return np.asarray(rows, dtype=np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"PackedDataset index {index} out of range [0, {len(self)})")
        start, end = (int(v) for v in self.rows[index])
        tokens = np.asarray(self.ids[start:end], dtype=np.int64)
        # a [SEP] before every article that starts inside the row (not at its first token)
        cuts = self.article_starts[(self.article_starts > start) & (self.article_starts < end)] - start
        s = self.special
        body = np.insert(tokens, cuts, s.sep) if len(cuts) else tokens
        input_ids = np.concatenate([[s.cls], body, [s.sep]]).astype(np.int64)
        return {"input_ids": input_ids, "token_type_ids": np.zeros(len(input_ids), dtype=np.int64),
                "next_sentence_label": 0, "index": index, "epoch": int(epoch)}
