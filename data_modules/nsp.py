"""Next-sentence-prediction pairs ``[CLS] A [SEP] B [SEP]``, drawn the way BERT's create_pretraining_data.py does.

BERT (Devlin et al., 2019; google-research/bert ``create_instances_from_document``) walks each document with a
target length (``max_seq_len - 3``, or with ``short_seq_prob`` a random shorter one, drawn per document), collects
consecutive sentences until the target is reached, cuts that chunk at a random sentence into A and B, and with
probability 0.5 replaces B by sentences from a random other document; then the sentences of the unused B are "put
back": the walk continues from the end of A, so they start the next chunk (and a pair across that point can be a
positive). It does that offline, ``dupe_factor`` times. Here the walk is the same, drawn once from ``seed`` (one such
copy), and gives ``len(dataset)``: the chunks and their A/B cuts and labels. What changes per ``(epoch, index)``,
from ``np.random.default_rng([seed, epoch, index])``, is the random B (article and start) and the truncation noise;
the masks change per epoch in the collator. Any (epoch, index) can be rebuilt, which exact resume needs.
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
        short_seq_prob: probability of a shorter random target length for an article (BERT: 0.1, drawn per
            document), so the model also sees short inputs.
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
        self.plan = self._walk()  # (n_chunks, 5): first sentence, end of A, end of the chunk, random B?, target

    def _walk(self) -> np.ndarray:
        """BERT's walk over every article (create_instances_from_document), drawn once from ``seed``: one row per
        pair, (first sentence, end of A, end of the chunk, 1 if B is random, target length), ends exclusive."""
        so = self.sent_offsets
        rng = np.random.default_rng([self.seed, 104729])  # the plan's own stream, apart from the per-epoch draws
        rows: list[tuple[int, int, int, int, int]] = []
        for a in self.articles:
            start, end = int(self.art_offsets[a]), int(self.art_offsets[a + 1])
            target = self.max_tokens
            if rng.random() < self.short_seq_prob:  # once per document, as BERT
                target = int(rng.integers(2, self.max_tokens + 1))
            first = start
            while first < end:
                # the chunk: sentences from ``first`` until they hold >= target tokens, or the article ends
                last = min(max(int(np.searchsorted(so, so[first] + target, side="left")), first + 1), end)
                n = last - first
                a_end = first + (int(rng.integers(1, n)) if n >= 2 else 1)
                random_b = n == 1 or rng.random() < self.nsp_prob
                rows.append((first, a_end, last, int(random_b), target))
                first = a_end if random_b else last  # a random B puts the chunk's unused sentences back
        return np.asarray(rows, dtype=np.int64).reshape(-1, 5)

    def __len__(self) -> int:
        return len(self.plan)

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
        first, a_end, last, random_b, target = (int(v) for v in self.plan[index])
        a_sents = list(range(first, a_end))
        if random_b:
            label = 1  # B from a different article (HF convention: 1 = not the continuation)
            own = int(np.searchsorted(self.art_offsets, first, side="right")) - 1
            pos = int(np.searchsorted(self.articles, own))
            other = int(rng.integers(len(self.articles) - 1))
            other = int(self.articles[other + (other >= pos)])
            o_start, o_end = int(self.art_offsets[other]), int(self.art_offsets[other + 1])
            a_len = int(self.sent_offsets[a_end] - self.sent_offsets[first])
            b_sents = self._sentences_from(int(rng.integers(o_start, o_end)), o_end, max(1, target - a_len))
        else:
            label = 0
            b_sents = list(range(a_end, last))

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
