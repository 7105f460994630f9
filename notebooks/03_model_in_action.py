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
# # 3. The model in action
#
# A pretrained checkpoint through the Python API (`lit_lm.load`): fill-mask predictions, the next-sentence head,
# and attention maps; then the encoder fine-tuned on the bundled SST-2 sample, its dev-set predictions, confusion
# matrix and most confident mistakes.
#
# Without `$LIT_LM_CKPT` (a pretraining `.ckpt`) the notebook pretrains the tiny quickstart model for 30 steps, which
# knows little more than word frequencies: point `$LIT_LM_CKPT` at a longer run (e.g.
# `runs/wikitext2_tiny/checkpoints/last.ckpt`) for predictions worth reading. `$LIT_LM_SST2_CKPT` likewise skips
# the fine-tuning.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import lit_lm
from _runs import REPO, WORK, quickstart, run_cli  # notebooks/_runs.py: the CLI in this kernel, short pretraining runs


def finetune(pretrained: Path, epochs: int = 4) -> Path:
    """Fine-tune ``pretrained`` on the bundled SST-2 sample (configs/quickstart_sst2.yaml); its last checkpoint."""
    cwd = WORK / f"sst2-{pretrained.parents[1].name}"  # one fine-tuning per pretrained run
    ckpt = cwd / "runs" / "quickstart_sst2" / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        run_cli([
            "fit", "--config", f"{REPO}/configs/quickstart_sst2.yaml", f"--model.pretrained={pretrained}",
            f"--data.data_dir={REPO}/data_modules/samples/sst2", "--model.lr=1e-3", f"--trainer.max_epochs={epochs}",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"], cwd=cwd)
    return ckpt


# %%
PRETRAINED = Path(os.environ.get("LIT_LM_CKPT") or quickstart("quickstart"))
bert = lit_lm.load(PRETRAINED)
bert

# %% [markdown]
# ## Fill the mask
#
# The five most likely WordPieces at each `[MASK]`, with their probabilities.

# %%
filled = {text: bert.fill_mask(text, top_k=5)
          for text in ["the river flows into the [MASK] .",
                       "he was born in [MASK] and studied at the university of [MASK] .",
                       "the album was released in [MASK] ."]}
for text, per_mask in filled.items():
    print(text)
    for i, candidates in enumerate(per_mask):
        print(f"  [MASK] {i + 1}: " + ", ".join(f"{c['token']} {c['score']:.2f}" for c in candidates))

# %% [markdown]
# And on held-out text: sentences of the validation split with one word masked, the truth next to the guess.

# %%
from data_modules.wikitext import SAMPLE_DIR
from data_modules.wikitext_release import article_sentences, read_release_lines, split_articles

valid = [s for a in split_articles(read_release_lines(SAMPLE_DIR / "wiki.valid.tokens")) for s in article_sentences(a)]
rng = np.random.default_rng(0)
hits, guesses = 0, []  # guesses: (truth, top candidate) per row
for sentence in rng.choice([s for s in valid if 6 <= len(s.split()) <= 20], size=8, replace=False):
    words = sentence.split()
    i = int(rng.integers(len(words)))
    truth, words[i] = words[i], "[MASK]"
    guess = bert.fill_mask(" ".join(words), top_k=1)[0][0]["token"]  # one [MASK]; the top candidate
    hits += guess == truth.lower()
    guesses.append((truth.lower(), guess))
    print(f"{truth.lower()!r:>14} -> {guess!r:<12} {' '.join(words)}")
print(f"top-1 right on {hits} of 8 (a word of several WordPieces is masked as one [MASK]: it cannot be right)")

# %% [markdown]
# ## Next sentence prediction
#
# The NSP head's probability that B follows A, for a true continuation and for a sentence of another article.

# %%
arts = [article_sentences(a) for a in split_articles(read_release_lines(SAMPLE_DIR / "wiki.valid.tokens"))]
a, b_true, b_random = arts[0][0], arts[0][1], arts[-1][-1]
print(f"A: {a}\nB (next):   {b_true}\nB (random): {b_random}\n")
p_next = {"true continuation": bert.next_sentence(a, b_true), "random sentence": bert.next_sentence(a, b_random)}
for which, p in p_next.items():
    print(f"P(next | {which + ')':<18} = {p:.2f}")

# %% [markdown]
# ## Attention maps
#
# `bert.attention(text)` recomputes every head's attention probabilities from the model's own query and key
# projections (the encoder's `scaled_dot_product_attention` does not return them): row i shows where token i looks.
# Each panel has its own colour scale: a briefly trained model attends almost uniformly.

# %%
tokens, maps = bert.attention("the cat sat on the mat .", "it was asleep .")
L, H = maps.shape[:2]
fig, axes = plt.subplots(L, H, figsize=(3.2 * H, 3.2 * L), squeeze=False)
for l in range(L):
    for h in range(H):
        ax = axes[l, h]
        im = ax.imshow(maps[l, h].numpy(), cmap="viridis", vmin=0)
        fig.colorbar(im, ax=ax, fraction=0.046)
        ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
        ax.set_yticks(range(len(tokens)), tokens, fontsize=7)
        ax.set_title(f"layer {l}, head {h}", fontsize=9)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Sentiment: fine-tuning on the SST-2 sample
#
# `configs/quickstart_sst2.yaml` fine-tunes the encoder with a classifier on the pooled `[CLS]` vector, here on
# the 400 training sentences of `data_modules/samples/sst2` (4 epochs, seconds on a CPU). The sample is small and
# regular: it checks the plumbing, it does not measure the model (the README has real SST-2 numbers).

# %%
CLASSIFIER = Path(os.environ.get("LIT_LM_SST2_CKPT") or finetune(PRETRAINED))
clf = lit_lm.load(CLASSIFIER, labels=["negative", "positive"])  # SST-2 writes 0 / 1
print(clf)
classified = clf.classify(["a gorgeous , witty and moving film .", "the plot is a dull , lifeless mess ."])
classified

# %%
from data_modules.glue import SAMPLE_DIR as SST2_DIR
from data_modules.glue_reading import read_tsv
from data_modules.glue_tasks import TASKS

dev = read_tsv(SST2_DIR / "dev.tsv", TASKS["sst2"], labelled=True)
texts, truth = [t[0].strip() for t in dev.texts], np.array(dev.labels)
probs = clf.predict_proba(texts).numpy()
pred = probs.argmax(1)
accuracy = (pred == truth).mean()
print(f"dev accuracy: {accuracy:.1%} on {len(texts)} sentences")

confusion = np.zeros((2, 2), dtype=int)
np.add.at(confusion, (truth, pred), 1)
fig, ax = plt.subplots(figsize=(3.8, 3.4))
ax.imshow(confusion, cmap="Blues")
for i in range(2):
    for j in range(2):
        ax.text(j, i, confusion[i, j], ha="center", va="center", fontsize=14,
                color="white" if confusion[i, j] > confusion.max() / 2 else "black")
ax.set_xticks([0, 1], clf.labels)
ax.set_yticks([0, 1], clf.labels)
ax.set(xlabel="predicted", ylabel="true", title="SST-2 sample, dev")
plt.show()

# %% [markdown]
# The most confident mistakes: where to look first for what the model has not learned (or for label noise).

# %%
wrong = np.flatnonzero(pred != truth)
mistakes = wrong[np.argsort(-probs[wrong, pred[wrong]])][:6]  # the six most confident
for i in mistakes:
    print(f"{probs[i, pred[i]]:.2f} {clf.labels[pred[i]]:>8} (true {clf.labels[truth[i]]}): {texts[i]}")
if len(wrong) == 0:
    print("no mistakes on this dev sample")

# %% [markdown]
# ## Checks
#
# What the cells above show, checked (`notebooks/_checks.py`), so that running this notebook fails when a figure is
# wrong: candidates from the vocabulary with probabilities in order, attention rows summing to 1, and an accuracy,
# confusion matrix and list of mistakes that count the same predictions.

# %%
from _checks import check_model_in_action

print(check_model_in_action(bert, clf, filled, guesses, hits, p_next, tokens, maps, classified, probs, pred, truth,
                            accuracy, confusion, mistakes))
