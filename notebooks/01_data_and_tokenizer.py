# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 1. The data and the tokenizer
#
# What BERT pretraining reads, step by step, on the small corpus bundled with lit-lm
# (`data_modules/samples/wikitext`, in the WikiText-103 release layout): articles, sentences, the WordPiece
# vocabulary trained on them, and one training example as the model gets it, an NSP pair
# `[CLS] A [SEP] B [SEP]` with its segment ids and the positions the MLM collator masks.
# Point `DATA_DIR` (or `$LIT_LM_WIKITEXT`) at a real WikiText release directory to look at that instead.

# %%
import os
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import lit_lm
from data_modules.wikitext import SAMPLE_DIR
from data_modules.wikitext_release import WIKITEXT_INFIX, article_sentences, read_release_lines, split_articles

REPO = Path(lit_lm.__file__).resolve().parents[1]
WORK = REPO / "runs" / "notebooks"  # gitignored
DATA_DIR = Path(os.environ.get("LIT_LM_WIKITEXT", SAMPLE_DIR))

# %% [markdown]
# ## Articles and sentences
#
# A release file holds one paragraph a line; ` = Title = ` lines start articles (`split_articles`),
# ` = = Section = = ` lines are dropped. `article_sentences` undoes WikiText's ` @-@ ` splits, turns `<unk>` into
# the tokenizer's `[UNK]` and cuts paragraphs after standalone `.`, `?` and `!`.

# %%
articles = {split: list(split_articles(read_release_lines(DATA_DIR / f"wiki.{infix}.tokens")))
            for split, infix in WIKITEXT_INFIX.items()}
sentences = {split: [article_sentences(a) for a in arts] for split, arts in articles.items()}
for split, arts in articles.items():
    n_sent = sum(len(s) for s in sentences[split])
    print(f"{split:>10}: {len(arts):4d} articles, {n_sent:6d} sentences")
print("\nfirst train articles:", [a.title for a in articles["train"][:5]])

# %%
article = articles["train"][0]
print(f"= {article.title} =\n")
print("raw paragraph:   ", article.paragraphs[0][:300], "\n")
for s in article_sentences(article)[:4]:
    print("sentence:", s)

# %% [markdown]
# ## The tokenizer and the tokenized corpus
#
# The data module trains a WordPiece tokenizer on the train split (at most `vocab_size` tokens, the special tokens
# first) and writes every split as token ids into a memory-mapped cache. These are the quickstart's settings, so
# the runs of the other notebooks reuse this cache.

# %%
from data_modules.wikitext import WikiText103DataModule

dm = WikiText103DataModule(data_dir=str(DATA_DIR), cache_dir=str(WORK / "runs" / "cache"), vocab_size=4096,
                           max_seq_len=128, num_workers=0)
dm.prepare_data()
dm.setup("fit")
tok = dm.tokenizer
print("cache:", dm.cache_path())
print("vocabulary:", tok.get_vocab_size(), "tokens (at most", dm.vocab_size, "requested)")
print("special tokens:", {t: tok.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")})

# %%
train = dm.datasets["train"]  # NSPDataset over the cached ids
ids = np.asarray(train.ids)
counts = np.bincount(ids, minlength=tok.get_vocab_size())
top = np.argsort(-counts)[:25]
print(f"{len(ids)} train tokens; most frequent:")
print(", ".join(f"{tok.id_to_token(int(i))!r} {counts[i] / len(ids):.1%}" for i in top))

vocab = tok.get_vocab()
pieces = sorted((t for t in vocab if t.startswith("##")), key=vocab.get)
print(f"\n{len(pieces)} of {len(vocab)} tokens are '##' continuations, e.g.", pieces[:12])
never = int((counts[5:] == 0).sum())
print(f"{never} non-special tokens never occur in train as whole tokens (pieces only seen inside merges)")
word_pieces = {word: tok.encode(word, add_special_tokens=False).tokens
               for word in ["pretraining", "magnificently", "archaeologists"]}
for word, split in word_pieces.items():
    print(f"{word!r:>18} -> {split}")

# %% [markdown]
# ## Lengths
#
# Sentence lengths in words and in WordPieces, and the lengths of the NSP pairs built from them: pairs are filled
# up to `max_seq_len` (128) with whole sentences, except for `short_seq_prob` (10%) of them, which get a shorter
# random target length, as in BERT.

# %%
train_sents = [s for art in sentences["train"] for s in art]
words = np.array([len(s.split()) for s in train_sents])
pieces_per_sentence = np.diff(np.asarray(train.sent_offsets))
pair_lengths = np.array([len(train[(0, i)]["input_ids"]) for i in range(len(train))])

fig, axes = plt.subplots(1, 3, figsize=(14, 3.5))
axes[0].hist(words, bins=40)
axes[0].set(title="sentence length (words)", xlabel="words", ylabel="sentences")
axes[1].hist(pieces_per_sentence, bins=40, color="tab:orange")
axes[1].set(title="sentence length (WordPieces)", xlabel="tokens")
axes[2].hist(pair_lengths, bins=40, color="tab:green")
axes[2].set(title=f"NSP pair length ({len(train)} pairs, epoch 0)", xlabel="tokens incl. [CLS]/[SEP]")
fig.tight_layout()
plt.show()
print(f"WordPieces per word: {pieces_per_sentence.sum() / words.sum():.2f};",
      f"pairs at max_seq_len: {(pair_lengths == dm.max_seq_len).mean():.0%}")

# %% [markdown]
# ## One training example
#
# `NSPDataset[(epoch, index)]` is deterministic: the same pair for the same seed, epoch and index. Label 0 means
# B is the true continuation of A, 1 that B is a random sentence from another article (HuggingFace's convention).

# %%
example = next(train[(0, i)] for i in range(len(train)) if len(train[(0, i)]["input_ids"]) < 48)
tokens = [tok.id_to_token(int(i)) for i in example["input_ids"]]
segments = example["token_type_ids"]
a = " ".join(t for t, s in zip(tokens, segments) if s == 0)
b = " ".join(t for t, s in zip(tokens, segments) if s == 1)
print(a, "|", b)
print("next_sentence_label:", example["next_sentence_label"], "(0 = B follows A, 1 = B is random)\n")
for pos, (t, s) in enumerate(zip(tokens, segments)):
    print(f"{pos:3d} {t:>14} segment {s}", end="\n" if pos % 3 == 2 else "   ")

# %% [markdown]
# ## What the MLM collator does to it
#
# 15% of the non-special tokens are chosen; 80% of those become `[MASK]`, 10% a random token, 10% stay as they are.
# `labels` keep the original id at the chosen positions and -100 (ignored by the loss) everywhere else.

# %%
from data_modules.collators import MLMCollator

collator = MLMCollator(dm.special, tok.get_vocab_size(), mlm_probability=0.15, seed=dm.seed)
batch = collator([example])
masked_ids, labels = batch["input_ids"][0], batch["labels"][0]
print("batch tensors:", {k: tuple(v.shape) if hasattr(v, "shape") else v for k, v in batch.items()}, "\n")
print(" ".join(tok.id_to_token(int(i)) for i in masked_ids), "\n")
for pos in (labels != -100).nonzero()[:, 0].tolist():
    original, shown = tok.id_to_token(int(labels[pos])), tok.id_to_token(int(masked_ids[pos]))
    how = "[MASK]" if shown == "[MASK]" else ("kept" if shown == original else "random token")
    print(f"position {pos:3d}: {original!r:>14} -> {shown!r:<14} ({how})")

# %% [markdown]
# ## Checks
#
# What the cells above show, checked (`notebooks/_checks.py`), so that running this notebook fails when a figure is
# wrong: counts that add up, lengths within bounds, the pair's layout and the collator's masking rate.

# %%
from _checks import check_data_and_tokenizer

print(check_data_and_tokenizer(dm, articles, sentences, counts, top, pieces, word_pieces, words, pieces_per_sentence,
                               pair_lengths, example, collator, batch))
