"""Next-sentence-prediction pairs ``[CLS] A [SEP] B [SEP]``, drawn the way BERT's create_pretraining_data.py does.

BERT (Devlin et al., 2019; google-research/bert ``create_instances_from_document``) walks each document, collects
consecutive sentences until a target length is reached, cuts that chunk at a random sentence into A and B, and with
probability 0.5 replaces B by sentences from a random other document. It does that offline, ``dupe_factor`` times.
Here the same draws happen on the fly, per ``(epoch, index)``: every article is cut once ("static segmentation") into
chunks of about ``max_seq_len - 3`` tokens, ``len(dataset)`` is the number of chunks (one pass over the data per
epoch), and what a chunk turns into — shorter target, A/B cut, random or true B, truncation — is drawn from
``np.random.default_rng([seed, epoch, index])``, so a new epoch gives new pairs and any (epoch, index) can be rebuilt.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from data_modules.tokenizer import SpecialIds


class NSPDataset(Dataset):
    """NSP pairs from token ids of sentences grouped in articles.

    Args:
        ids: 1-D token ids (no special tokens) of all sentences, concatenated.
        sent_offsets: ``(n_sent + 1,)`` offsets into ``ids``; sentence i is ``ids[sent_offsets[i]:sent_offsets[i+1]]``.
        art_offsets: ``(n_art + 1,)`` offsets into the sentences; article j holds sentences
            ``art_offsets[j]:art_offsets[j+1]``.
        special: ids of [CLS] and [SEP] (and the rest).
        max_seq_len: longest pair, special tokens included.
        short_seq_prob: probability of a shorter random target length (BERT: 0.1), so the model also sees short inputs.
        nsp_prob: probability that B comes from another article (label 1).
        seed: base of the per-(epoch, index) random generator.
        fixed_epoch: when set, the epoch in the key is ignored and this one is used (fixed validation pairs).
    """

    def __init__(
        self,
        ids: np.ndarray,
        sent_offsets: np.ndarray,
        art_offsets: np.ndarray,
        special: SpecialIds,
        max_seq_len: int = 128,
        short_seq_prob: float = 0.1,
        nsp_prob: float = 0.5,
        seed: int = 42,
        fixed_epoch: int | None = None,
    ) -> None:
        if max_seq_len < 5:
            raise ValueError(f"NSPDataset: max_seq_len={max_seq_len} leaves no room for A and B (need >= 5)")
        if not (0.0 <= short_seq_prob <= 1.0 and 0.0 <= nsp_prob <= 1.0):
            raise ValueError(f"NSPDataset: short_seq_prob={short_seq_prob} and nsp_prob={nsp_prob} must be in [0, 1]")
        sent_offsets, art_offsets = np.asarray(sent_offsets, dtype=np.int64), np.asarray(art_offsets, dtype=np.int64)
        if ids.ndim != 1 or len(sent_offsets) < 1 or sent_offsets[0] != 0 or sent_offsets[-1] != len(ids):
            raise ValueError(f"NSPDataset: sent_offsets must run from 0 to len(ids)={len(ids)}")
        if len(art_offsets) < 1 or art_offsets[0] != 0 or art_offsets[-1] != len(sent_offsets) - 1:
            raise ValueError(f"NSPDataset: art_offsets must run from 0 to n_sent={len(sent_offsets) - 1}")
        self.ids, self.sent_offsets, self.art_offsets = ids, sent_offsets, art_offsets
        self.special = special
        self.max_seq_len, self.short_seq_prob, self.nsp_prob = max_seq_len, short_seq_prob, nsp_prob
        self.seed, self.fixed_epoch = seed, fixed_epoch
        self.max_tokens = max_seq_len - 3  # [CLS] A [SEP] B [SEP]

        # articles that have sentences; random B's come from these
        self.articles = np.flatnonzero(np.diff(art_offsets) > 0)
        if len(self.articles) < 2:
            raise ValueError(f"NSPDataset: need at least 2 non-empty articles to draw random next sentences, "
                             f"got {len(self.articles)}")
        self.chunk_start, self.chunk_article = self._segment()

    def _segment(self) -> tuple[np.ndarray, np.ndarray]:
        """Greedy cut of every article into runs of sentences of >= max_tokens tokens (the last one may be shorter)."""
        so = self.sent_offsets
        starts, arts = [], []
        for pos, a in enumerate(self.articles):
            s, end = int(self.art_offsets[a]), int(self.art_offsets[a + 1])
            while s < end:
                starts.append(s)
                arts.append(pos)
                # first sentence e > s whose end reaches max_tokens tokens past the chunk start
                e = int(np.searchsorted(so, so[s] + self.max_tokens, side="left"))
                s = min(max(e, s + 1), end)
        return np.asarray(starts, dtype=np.int64), np.asarray(arts, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.chunk_start)

    def _sentences_from(self, first: int, end: int, target: int) -> list[int]:
        """Sentence indices first, first+1, ... (before ``end``) until they hold >= ``target`` tokens."""
        so = self.sent_offsets
        last = int(np.searchsorted(so, so[first] + target, side="left"))
        return list(range(first, min(max(last, first + 1), end)))

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, index = key if isinstance(key, tuple) else (self.fixed_epoch or 0, key)
        if self.fixed_epoch is not None:
            epoch = self.fixed_epoch
        index, epoch = int(index), int(epoch)
        if not 0 <= index < len(self):
            raise IndexError(f"NSPDataset index {index} out of range [0, {len(self)})")
        rng = np.random.default_rng([self.seed, epoch, index])

        # BERT: mostly fill max_seq_len, but sometimes aim shorter to match short downstream inputs
        target = self.max_tokens
        if rng.random() < self.short_seq_prob:
            target = int(rng.integers(2, self.max_tokens + 1))

        pos = int(self.chunk_article[index])
        art = int(self.articles[pos])
        art_end = int(self.art_offsets[art + 1])
        chunk = self._sentences_from(int(self.chunk_start[index]), art_end, target)

        a_end = int(rng.integers(1, len(chunk))) if len(chunk) >= 2 else 1  # A = chunk[:a_end]
        a_sents = chunk[:a_end]
        if len(chunk) == 1 or rng.random() < self.nsp_prob:
            label = 1  # random B from a different article (HF convention: 1 = not the continuation)
            other = int(rng.integers(len(self.articles) - 1))
            other = int(self.articles[other + (other >= pos)])
            o_start, o_end = int(self.art_offsets[other]), int(self.art_offsets[other + 1])
            a_len = int(self.sent_offsets[a_sents[-1] + 1] - self.sent_offsets[a_sents[0]])
            b_sents = self._sentences_from(int(rng.integers(o_start, o_end)), o_end, max(1, target - a_len))
        else:
            label = 0
            b_sents = chunk[a_end:]

        a = self._tokens(a_sents)
        b = self._tokens(b_sents)
        a, b = self._truncate_pair(a, b, rng)
        s = self.special
        input_ids = np.concatenate([[s.cls], a, [s.sep], b, [s.sep]]).astype(np.int64)
        token_type_ids = np.zeros(len(input_ids), dtype=np.int64)
        token_type_ids[len(a) + 2 :] = 1
        return {"input_ids": input_ids, "token_type_ids": token_type_ids, "next_sentence_label": label,
                "index": index, "epoch": epoch}

    def _tokens(self, sents: list[int]) -> np.ndarray:
        return np.asarray(self.ids[self.sent_offsets[sents[0]] : self.sent_offsets[sents[-1] + 1]], dtype=np.int64)

    def _truncate_pair(self, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """BERT's truncate_seq_pair: drop one token at a time from the longer side, from its front or back at
        random (to add noise rather than always losing the end)."""
        a_lo, a_hi, b_lo, b_hi = 0, len(a), 0, len(b)
        excess = len(a) + len(b) - self.max_tokens
        if excess <= 0:
            return a, b
        front = rng.random(excess) < 0.5
        for f in front:
            if a_hi - a_lo > b_hi - b_lo:
                a_lo, a_hi = (a_lo + 1, a_hi) if f else (a_lo, a_hi - 1)
            else:
                b_lo, b_hi = (b_lo + 1, b_hi) if f else (b_lo, b_hi - 1)
        return a[a_lo:a_hi], b[b_lo:b_hi]
