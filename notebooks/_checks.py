"""The last cell of each notebook: checks of the figures it displayed, so that executing it (nbmake) fails when one
is wrong. One function per notebook; each takes the very objects the notebook printed or plotted and raises an
AssertionError whose one-line message names the figure and what was expected of it.

Imported by the notebooks (Jupyter and nbmake run them in this folder); not a test module. tests/test_notebooks.py
feeds each function right and wrong figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from data_modules.tokenizer import SPECIAL_TOKENS


def expect(ok: Any, figure: str, expected: str) -> None:
    """Raise ``AssertionError("<figure>: expected <expected>")`` unless ``ok``. Not a bare ``assert``: the checks
    must still run under ``python -O``."""
    if not ok:
        raise AssertionError(f"{figure}: expected {expected}")


# ---------------------------------------------------------------------------------------------------------------------
# 01_data_and_tokenizer


def check_data_and_tokenizer(dm: Any, articles: Mapping[str, Sequence], sentences: Mapping[str, Sequence[list[str]]],
                             counts: np.ndarray, top: np.ndarray, pieces: Sequence[str],
                             word_pieces: Mapping[str, list[str]], words: np.ndarray, pieces_per_sentence: np.ndarray,
                             pair_lengths: np.ndarray, example: Mapping[str, Any], collator: Any,
                             batch: Mapping[str, Any]) -> str:
    """Notebook 1: the split sizes, the vocabulary, the token frequencies, the length histograms, the NSP example and
    what the MLM collator made of it. ``dm`` is the set-up WikiText103DataModule they came from."""
    tok, train = dm.tokenizer, dm.datasets["train"]
    V, special = tok.get_vocab_size(), dm.special

    # split sizes: every split can draw a random B from another article, and the table counts the same sentences
    # as the cache the data module wrote (which only drops sentences that tokenize to nothing)
    for split, arts in articles.items():
        n_sent = sum(len(s) for s in sentences[split])
        expect(len(arts) >= 2 and n_sent > 0, "split sizes", f"{split}: >= 2 articles and some sentences, "
               f"got {len(arts)} and {n_sent}")
        expect(len(sentences[split]) == len(arts), "split sizes", f"{split}: one sentence list per article, "
               f"got {len(sentences[split])} for {len(arts)}")
    n_train = sum(len(s) for s in sentences["train"])
    n_cached = len(train.sent_offsets) - 1
    expect(0 < n_cached <= n_train, "split sizes", f"the cache to hold at most the {n_train} train sentences shown, "
           f"holds {n_cached}")

    # vocabulary: within what was asked for, the special tokens first (the frequency cell skips ids 0..4)
    expect(len(SPECIAL_TOKENS) < V <= dm.vocab_size, "vocabulary", f"{len(SPECIAL_TOKENS)} < size <= {dm.vocab_size}, "
           f"got {V}")
    expect([tok.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS))), "vocabulary",
           f"{SPECIAL_TOKENS} to be ids 0..{len(SPECIAL_TOKENS) - 1}")

    # token frequencies: one count per vocabulary entry, adding up to the train tokens; the top ids really are the
    # most frequent, in order; no [PAD]/[CLS]/[SEP]/[MASK] in the corpus ids ([UNK] is WikiText's <unk>)
    n_ids = len(train.ids)
    expect(len(counts) == V, "token frequencies", f"one count per vocabulary entry ({V}), got {len(counts)}")
    expect(counts.sum() == n_ids, "token frequencies", f"counts adding up to the {n_ids} train tokens, "
           f"got {counts.sum()}")
    expect(len(set(top.tolist())) == len(top) and np.all(np.diff(counts[top]) <= 0), "token frequencies",
           "distinct ids, most frequent first")
    rest = np.delete(counts, top)
    expect(len(rest) == 0 or counts[top[-1]] >= rest.max(), "token frequencies",
           f"no token outside the top {len(top)} more frequent than its last")
    expect(np.all(counts[[special.pad, special.cls, special.sep, special.mask]] == 0), "token frequencies",
           "no [PAD], [CLS], [SEP] or [MASK] in the train ids")

    # '##' pieces and word splits: pieces of the vocabulary that give the word back (lower-cased, accents stripped)
    vocab = tok.get_vocab()
    not_pieces = [p for p in pieces if not (p.startswith("##") and p in vocab)]
    expect(0 < len(pieces) < V and not not_pieces, "'##' pieces",
           f"1 to {V - 1} vocabulary entries starting with '##', got {len(pieces)} with {not_pieces[:3]}")
    for word, split in word_pieces.items():
        expect(split and all(p in vocab and (p == "[UNK]" or p not in SPECIAL_TOKENS) for p in split),
               "word pieces", f"{word!r}: vocabulary entries, no [CLS]/[SEP]/..., got {split}")
        normal = tok.normalizer.normalize_str(word) if tok.normalizer else word
        expect("[UNK]" in split or "".join(p.removeprefix("##") for p in split) == normal.replace(" ", ""),
               "word pieces", f"{word!r}: pieces spelling {normal!r}, got {split}")

    # lengths: one value per sentence / pair shown, pieces covering the train ids exactly, pairs within max_seq_len
    expect(len(words) == n_train and words.min() >= 1, "sentence lengths (words)",
           f"{n_train} sentences of >= 1 word, got {len(words)} (min {words.min()})")
    expect(len(pieces_per_sentence) == n_cached and pieces_per_sentence.min() >= 1, "sentence lengths (WordPieces)",
           f"{n_cached} sentences of >= 1 piece, got {len(pieces_per_sentence)} (min {pieces_per_sentence.min()})")
    expect(pieces_per_sentence.sum() == n_ids, "sentence lengths (WordPieces)",
           f"lengths adding up to the {n_ids} train tokens, got {pieces_per_sentence.sum()}")
    expect(pieces_per_sentence.sum() >= words.sum(), "WordPieces per word",
           f">= 1 WordPiece per word, got {pieces_per_sentence.sum() / words.sum():.2f}")
    expect(len(pair_lengths) == len(train), "NSP pair lengths", f"{len(train)} pairs, got {len(pair_lengths)}")
    expect(pair_lengths.min() >= 5 and pair_lengths.max() <= dm.max_seq_len, "NSP pair lengths",
           f"5 ([CLS] a [SEP] b [SEP]) to {dm.max_seq_len} tokens, got {pair_lengths.min()} to {pair_lengths.max()}")

    # the NSP example: [CLS] A [SEP] B [SEP], segment 0 up to the first [SEP], 1 after it
    ids, segments = np.asarray(example["input_ids"]), np.asarray(example["token_type_ids"])
    seps = np.flatnonzero(ids == special.sep)
    expect(ids[0] == special.cls and len(seps) == 2 and seps[1] == len(ids) - 1 and 1 < seps[0] < len(ids) - 2,
           "NSP example", "[CLS] A [SEP] B [SEP] with A and B not empty")
    expect(len(segments) == len(ids) and np.all(segments == (np.arange(len(ids)) > seps[0])), "NSP example",
           "segment 0 through the first [SEP], 1 after it")
    expect(example["next_sentence_label"] in (0, 1), "NSP example",
           f"next_sentence_label 0 or 1, got {example['next_sentence_label']}")

    # MLM masking: the example's row, padded; labels only at chosen positions, holding the original ids; the
    # chosen share is the collator's mlm_probability (BERT's count, halves rounded up); chosen positions are
    # mostly [MASK], else a random ordinary token or unchanged
    masked, labels = np.asarray(batch["input_ids"][0]), np.asarray(batch["labels"][0])
    attended, n = np.asarray(batch["attention_mask"][0]), len(ids)
    expect(len(masked) == len(labels) == len(attended) >= n and np.all(masked[n:] == special.pad)
           and np.all(labels[n:] == -100) and np.all(attended == (np.arange(len(masked)) < n)), "MLM masking",
           f"the {n} tokens of the example, then padding only")
    masked, labels = masked[:n], labels[:n]
    chosen = labels != -100
    eligible = ~np.isin(ids, special.all)
    target = max(1, int(collator.mlm_probability * eligible.sum() + 0.5))
    n_chosen = int(chosen.sum())
    expect(n_chosen == target if not collator.whole_word_masking else 1 <= n_chosen <= target, "MLM masking",
           f"{target} of {eligible.sum()} ordinary tokens chosen ({collator.mlm_probability:.0%}), got {n_chosen}")
    expect(not np.any(chosen & ~eligible) and np.all(labels[chosen] == ids[chosen]), "MLM masking",
           "labels only at ordinary tokens, holding their original ids")
    expect(np.all(masked[~chosen] == ids[~chosen]), "MLM masking", "tokens not chosen left as they were")
    shown = masked[chosen]
    is_mask, kept = shown == special.mask, shown == ids[chosen]
    expect(np.all(is_mask | kept | (~np.isin(shown, special.all) & (shown < V))), "MLM masking",
           "chosen tokens shown as [MASK], a random ordinary token, or unchanged")
    # 80% [MASK]: on a handful of positions only a gross error shows, so three standard deviations of slack
    expect(is_mask.sum() >= 0.8 * n_chosen - 3 * math.sqrt(0.16 * n_chosen), "MLM masking",
           f"about 80% of the {n_chosen} chosen tokens as [MASK], got {int(is_mask.sum())}")
    expect(batch["n_masked"] == n_chosen, "MLM masking", f"n_masked == {n_chosen} labelled positions, "
           f"got {batch['n_masked']}")

    return (f"checks passed: split sizes, vocabulary ({V}), token frequencies ({n_ids} tokens), word pieces, "
            f"lengths ({n_train} sentences, {len(train)} pairs), NSP example, MLM masking ({n_chosen} of "
            f"{eligible.sum()} ordinary tokens)")


# ---------------------------------------------------------------------------------------------------------------------
# 02_training_curves

def check_training_curves(scalars: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
                          panels: Sequence[tuple[str, str, str | None]],
                          table: Mapping[str, Mapping[str, float]]) -> str:
    """Notebook 2: the panels' curves (``scalars[run][tag] = (steps, values)``; ``panels``: (title, train tag, val
    tag)) and the table of final metrics (``table[run]``: "steps", metric tags, "tokens/s")."""
    for title, *tags in panels:
        tags = [t for t in tags if t is not None]
        expect(any(t in s for s in scalars.values() for t in tags), f"{title} panel",
               f"a curve of {' or '.join(tags)} in some run, got none")
        for run, s in scalars.items():
            for tag in (t for t in tags if t in s):
                steps, values = s[tag]
                figure = f"{title} panel ({run}, {tag})"
                expect(len(steps) == len(values) > 0, figure, f"as many steps as values, got {len(steps)} and "
                       f"{len(values)}")
                expect(np.all(np.diff(steps) > 0) and steps[0] >= 0, figure, "steps increasing from >= 0")
                expect(np.all(np.isfinite(values)), figure, "finite values")
                if "loss" in tag:
                    expect(np.all(values > 0), figure, f"positive losses, got min {values.min():.4g}")
                if "acc" in tag:
                    expect(np.all((values >= 0) & (values <= 1)), figure,
                           f"accuracies in [0, 1], got {values.min():.4g} to {values.max():.4g}")
                if tag.startswith("lr-"):
                    expect(np.all(values >= 0) and values.max() > 0, figure, "learning rates >= 0, not all 0")
                if tag.endswith("per_sec"):
                    expect(np.all(values > 0), figure, f"positive throughput, got min {values.min():.4g}")
                # the MLM loss is what pretraining lowers first: a run whose last value is not below its first
                # trained nothing (or its curve is read back in the wrong order)
                if tag.endswith("mlm_loss") and len(values) >= 2:
                    expect(values[-1] < values[0], figure, f"a lower last value than the first, got {values[0]:.4f}"
                           f" -> {values[-1]:.4f}")

    for run, s in scalars.items():
        # perplexity is exp(MLM loss) at the same steps: the table shows val's, train's is logged with the curve
        for split in ("train", "val"):
            loss, ppl = s.get(f"{split}/mlm_loss"), s.get(f"{split}/perplexity")
            if loss is not None and ppl is not None:
                expect(np.array_equal(loss[0], ppl[0]) and np.allclose(ppl[1], np.exp(loss[1]), rtol=1e-5),
                       f"{split}/perplexity ({run})", f"exp({split}/mlm_loss) at the same steps")

    figure = "final metrics table"
    expect(list(table) == list(scalars), figure, f"one row per run {list(scalars)}, got {list(table)}")
    for run, row in table.items():
        s = scalars[run]
        # the steps a run trained: one past the last step its train curves (logged on the same steps) reach
        last = {int(s[t][0][-1]) for _, t, _ in panels if t in s and t.startswith("train/")}
        expect(len(last) == 1 and row["steps"] == last.pop() + 1, figure,
               f"{run}: steps == 1 + the last step of its train curves, got {row['steps']}")
        for k, v in row.items():  # each metric the last point of its curve, NaN only where the run did not log it
            if k not in ("steps", "tokens/s"):
                expect(math.isnan(v) if k not in s or not len(s[k][1]) else v == s[k][1][-1], figure,
                       f"{run}: {k} == the last point of its curve")
        if not math.isnan(row.get("val/perplexity", math.nan)):
            expect(math.isclose(row["val/perplexity"], math.exp(row["val/mlm_loss"]), rel_tol=1e-5), figure,
                   f"{run}: val/perplexity == exp(val/mlm_loss) = {math.exp(row['val/mlm_loss']):.4f}, "
                   f"got {row['val/perplexity']:.4f}")
        speed = s.get("train/device/items_per_sec")
        if speed is None:
            expect(math.isnan(row["tokens/s"]), figure, f"{run}: tokens/s NaN (not logged)")
        else:  # a median lies between the extremes
            expect(speed[1].min() <= row["tokens/s"] <= speed[1].max(), figure,
                   f"{run}: tokens/s within its curve's range [{speed[1].min():.0f}, {speed[1].max():.0f}], "
                   f"got {row['tokens/s']:.0f}")

    return (f"checks passed: {len(panels)} panels x {len(scalars)} runs (steps, finite values, ranges, MLM loss "
            f"going down, perplexity = exp(loss)), final metrics table")


# ---------------------------------------------------------------------------------------------------------------------
# 03_model_in_action


def check_model_in_action(bert: Any, clf: Any, filled: Mapping[str, list[list[dict]]],
                          guesses: Sequence[tuple[str, str]], hits: int, p_next: Mapping[str, float],
                          tokens: Sequence[str], maps: torch.Tensor,
                          classified: Sequence[Mapping[str, Any]], probs: np.ndarray, pred: np.ndarray,
                          truth: np.ndarray, accuracy: float, confusion: np.ndarray, mistakes: np.ndarray) -> str:
    """Notebook 3: the fill-mask candidates, the held-out guesses, the NSP probabilities and the attention maps of
    ``bert`` (lit_lm.load of a pretraining checkpoint); the classifications, dev probabilities, accuracy, confusion
    matrix and confident mistakes of ``clf`` (a classification checkpoint)."""
    vocab = bert.tokenizer.get_vocab()

    # fill-mask: one candidate list per [MASK], vocabulary tokens (the model's output rows can outnumber the
    # tokenizer's entries), most likely first, top-k probabilities of one distribution
    for text, per_mask in filled.items():
        figure = f"fill-mask ({text!r})"
        expect(len(per_mask) == text.count("[MASK]"), figure, f"{text.count('[MASK]')} candidate lists, one per "
               f"[MASK], got {len(per_mask)}")
        for candidates in per_mask:
            toks, scores = [c["token"] for c in candidates], np.array([c["score"] for c in candidates])
            expect(candidates and len(set(toks)) == len(toks) and all(t in vocab for t in toks), figure,
                   f"distinct vocabulary tokens, got {toks}")
            expect(np.all((scores > 0) & (scores <= 1)) and np.all(np.diff(scores) <= 0) and scores.sum() <= 1 + 1e-5,
                   figure, f"probabilities in (0, 1], most likely first, summing to <= 1, got {scores.round(4)}")
    for truth_word, guess in guesses:
        expect(guess in vocab, "held-out guesses", f"vocabulary tokens, got {guess!r} for {truth_word!r}")
    expect(hits == sum(t == g for t, g in guesses), "held-out guesses", f"hits == rows whose guess is the truth, "
           f"got {hits}")

    for which, p in p_next.items():
        expect(0 <= p <= 1, "NSP probabilities", f"P(next | {which}) in [0, 1], got {p}")

    # attention: (layers, heads, T, T) over the pair's tokens, each row a distribution over the tokens
    c, T = bert.config, len(tokens)
    expect(tuple(maps.shape) == (c.n_layer, c.n_head, T, T), "attention maps",
           f"shape ({c.n_layer}, {c.n_head}, {T}, {T}), got {tuple(maps.shape)}")
    expect(tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and list(tokens).count("[SEP]") == 2, "attention maps",
           f"tokens [CLS] A [SEP] B [SEP], got {list(tokens)}")
    rows_sum_to_1 = torch.allclose(maps.sum(-1), torch.ones(c.n_layer, c.n_head, T), atol=1e-4)
    expect(bool((maps >= 0).all()) and rows_sum_to_1, "attention maps", "rows of probabilities summing to 1")

    # the classifier: labels of its own, each the most likely class
    C = len(clf.labels)
    for r in classified:
        expect(r["label"] in clf.labels and 1 / C <= r["score"] <= 1, "classify",
               f"a label of {clf.labels} with probability in [1/{C}, 1], got {r}")
    N = len(truth)
    expect(probs.shape == (N, C) and np.all(probs >= 0) and np.allclose(probs.sum(1), 1, atol=1e-5),
           "dev probabilities", f"({N}, {C}) rows of probabilities summing to 1, got shape {probs.shape} with sums "
           f"{probs.sum(-1).min():.4f} to {probs.sum(-1).max():.4f}")
    expect(np.array_equal(pred, probs.argmax(1)), "dev probabilities", "predictions == the most likely classes")
    expect(np.all((truth >= 0) & (truth < C)), "dev probabilities", f"true labels in 0..{C - 1}")
    # accuracy and confusion matrix: the same predictions counted two ways
    expect(confusion.shape == (C, C) and confusion.sum() == N, "confusion matrix",
           f"a {C} x {C} matrix of the {N} dev sentences, got {confusion.shape} summing to {confusion.sum()}")
    expect(np.array_equal(confusion.sum(1), np.bincount(truth, minlength=C))
           and np.array_equal(confusion.sum(0), np.bincount(pred, minlength=C)), "confusion matrix",
           "rows summing to the true classes' counts, columns to the predicted ones'")
    expect(0 <= accuracy <= 1 and math.isclose(accuracy, np.trace(confusion) / N), "dev accuracy",
           f"the confusion matrix's diagonal share {np.trace(confusion) / N:.4f}, got {accuracy:.4f}")
    # the confident mistakes: wrong predictions, most confident first, as many as there are (at most 6)
    n_wrong = N - int(np.trace(confusion))
    conf = probs[mistakes, pred[mistakes]]
    expect(len(mistakes) == min(6, n_wrong) and len(set(mistakes.tolist())) == len(mistakes), "confident mistakes",
           f"{min(6, n_wrong)} distinct sentences, got {len(mistakes)}")
    expect(np.all(pred[mistakes] != truth[mistakes]) and np.all(np.diff(conf) <= 0), "confident mistakes",
           "wrong predictions, most confident first")
    others = np.setdiff1d(np.flatnonzero(pred != truth), mistakes)
    expect(len(others) == 0 or conf.min() >= probs[others, pred[others]].max(), "confident mistakes",
           "no mistake left out more confident than those shown")

    return (f"checks passed: fill-mask ({sum(len(v) for v in filled.values())} masks), {len(guesses)} held-out "
            f"guesses, NSP probabilities, attention maps {tuple(maps.shape)}, {len(classified)} classifications, "
            f"dev accuracy {accuracy:.1%} = confusion matrix, {len(mistakes)} confident mistakes")
