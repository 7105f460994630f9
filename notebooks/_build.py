"""Writes the notebooks from the sources below, so they are reviewed (and diffed) as code.

    python notebooks/_build.py           # (re)write notebooks/*.ipynb, without outputs
    python notebooks/_build.py --check   # exit 1 if a committed notebook differs from its source or has outputs

Each source is in the "percent" format: a line ``# %%`` starts a code cell, ``# %% [markdown]`` a markdown cell
whose lines drop their leading ``# ``. The notebooks run top to bottom on a CPU in under a minute each
(``OMP_NUM_THREADS=1 python -m pytest --nbmake notebooks``), building the small runs they need under
``runs/notebooks/`` (gitignored) and reusing them when their checkpoint is already there.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent

# Shared by the notebooks that need a run: where runs go, and a short quickstart pretraining through the real CLI.
SETUP = r'''
# %%
import os
import shutil
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import lit_lm

REPO = Path(lit_lm.__file__).resolve().parents[1]  # the checkout: configs and bundled samples live there
WORK = REPO / "runs" / "notebooks"  # gitignored; the notebooks' runs, reused when their checkpoint exists


def run_cli(args: list[str], cwd: Path = WORK) -> None:
    """``python -m lit_lm <args>`` in this process, inside ``cwd`` (the configs write to runs/... relative to it)."""
    from lit_lm.cli import main

    cwd.mkdir(parents=True, exist_ok=True)
    old_cwd, old_argv = os.getcwd(), sys.argv
    os.chdir(cwd)
    sys.argv = ["lit-lm"]  # the kernel's own command line is not the CLI's
    try:
        main(args)
    finally:
        os.chdir(old_cwd)
        sys.argv = old_argv


def quickstart(name: str, *overrides: str, steps: int = 30) -> Path:
    """A short quickstart pretraining (tiny BERT, bundled corpus) logged to WORK/runs/<name>; its last checkpoint.

    Batch 16 of pairs of at most 64 tokens (the quickstart: 32 x 128), so that a run takes seconds."""
    ckpt = WORK / "runs" / name / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        shutil.rmtree(ckpt.parents[1], ignore_errors=True)  # no event files of an interrupted attempt
        run_cli([
            "fit", "--config", f"{REPO}/cli.yaml", "--config", f"{REPO}/configs/quickstart.yaml",
            f"--data.data_dir={REPO}/data_modules/samples/wikitext", "--data.num_workers=0", "--data.batch_size=16",
            "--data.max_seq_len=64",
            f"--trainer.max_steps={steps}", f"--trainer.val_check_interval={steps // 2}", "--model.warmup_steps=5",
            "--trainer.log_every_n_steps=2", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false", f"--trainer.logger.init_args.name={name}", *overrides])
    return ckpt
'''

NB01 = r'''
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
from data_modules.wikitext import SAMPLE_DIR, SPLITS, article_sentences, read_lines, split_articles

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
articles = {split: list(split_articles(read_lines(DATA_DIR / f"wiki.{infix}.tokens"))) for split, infix in SPLITS.items()}
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
for word in ["pretraining", "magnificently", "archaeologists"]:
    print(f"{word!r:>18} -> {tok.encode(word, add_special_tokens=False).tokens}")

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
print("batch tensors:", {k: tuple(v.shape) for k, v in batch.items()}, "\n")
print(" ".join(tok.id_to_token(int(i)) for i in masked_ids), "\n")
for pos in (labels != -100).nonzero()[:, 0].tolist():
    original, shown = tok.id_to_token(int(labels[pos])), tok.id_to_token(int(masked_ids[pos]))
    how = "[MASK]" if shown == "[MASK]" else ("kept" if shown == original else "random token")
    print(f"position {pos:3d}: {original!r:>14} -> {shown!r:<14} ({how})")
'''

NB02 = r'''
# %% [markdown]
# # 2. Training curves from TensorBoard logs
#
# Every run logs to TensorBoard (`runs/<name>/events.out.tfevents.*`). Here two short quickstart pretraining runs
# that differ only in their peak learning rate are read back with TensorBoard's `EventAccumulator` and compared:
# MLM and NSP losses, accuracies, the learning-rate schedule and throughput.
# To compare your own runs instead, set `$LIT_LM_RUNS` to their log directories separated by `:`
# (e.g. `runs/pretrain:runs/wikitext2_tiny`).
'''.rstrip() + SETUP + r'''
# %%
if os.environ.get("LIT_LM_RUNS"):
    RUNS = {Path(d).name: Path(d) for d in os.environ["LIT_LM_RUNS"].split(os.pathsep)}
else:  # two runs of 30 steps; the first is the run notebook 3 uses too
    RUNS = {"lr 1e-3": quickstart("quickstart").parents[1],
            "lr 2e-4": quickstart("quickstart_lr2e-4", "--model.lr=2e-4").parents[1]}
RUNS

# %%
import math

from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator


def read_scalars(run_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """tag -> (steps, values) of every scalar a run logged. NaN points are dropped: the val metrics are registered
    at step 0 with NaN placeholders for TensorBoard's HPARAMS tab."""
    ea = EventAccumulator(str(run_dir), size_guidance={SCALARS: 0})  # 0 = keep every point
    ea.Reload()
    out = {}
    for tag in ea.Tags()["scalars"]:
        events = [e for e in ea.Scalars(tag) if math.isfinite(e.value)]
        out[tag] = (np.array([e.step for e in events]), np.array([e.value for e in events]))
    return out


scalars = {name: read_scalars(d) for name, d in RUNS.items()}
print(sorted(next(iter(scalars.values()))))

# %% [markdown]
# Lines are the training metrics (logged every 2 steps, each from one batch), dots the validation metrics (the
# whole validation split with fixed pairs and masks, so they are comparable across steps and runs).
# Throughput is in real (non-padding) tokens per second, from `lit_lm.callbacks.TokenThroughput`.

# %%
panels = [("MLM loss", "train/mlm_loss", "val/mlm_loss"), ("NSP loss", "train/nsp_loss", "val/nsp_loss"),
          ("MLM accuracy", "train/mlm_acc", "val/mlm_acc"), ("NSP accuracy", "train/nsp_acc", "val/nsp_acc"),
          ("learning rate", "lr-AdamW/pg1", None), ("tokens / s", "train/device/items_per_sec", None)]
fig, axes = plt.subplots(2, 3, figsize=(15, 7))
for ax, (title, train_tag, val_tag) in zip(axes.flat, panels):
    for (name, s), color in zip(scalars.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        if train_tag in s:
            ax.plot(*s[train_tag], color=color, label=name, alpha=0.8)
        if val_tag in s:
            ax.plot(*s[val_tag], "o", color=color, markersize=7, label=f"{name} (val)")
    ax.set(title=title, xlabel="step")
axes.flat[0].legend()
fig.tight_layout()
plt.show()

# %%
keys = ["val/mlm_loss", "val/perplexity", "val/mlm_acc", "val/nsp_acc"]
print(f"{'run':>20} {'steps':>6} " + " ".join(f"{k:>15}" for k in keys) + f" {'tokens/s':>10}")
for name, s in scalars.items():
    last = {k: s[k][1][-1] if k in s and len(s[k][1]) else float("nan") for k in keys}
    speed = np.median(s["train/device/items_per_sec"][1]) if "train/device/items_per_sec" in s else float("nan")
    print(f"{name:>20} {int(s['train/loss'][0][-1]) + 1:6d} " + " ".join(f"{last[k]:15.4f}" for k in keys) + f" {speed:10.0f}")

# %% [markdown]
# The same logs in TensorBoard itself (scalars, the masked predictions in the TEXT tab, and the HPARAMS tab
# comparing runs by their final validation metrics):
#
#     tensorboard --logdir runs/notebooks/runs
'''

NB03 = r'''
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
'''.rstrip() + SETUP + r'''

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
for text in ["the river flows into the [MASK] .",
             "he was born in [MASK] and studied at the university of [MASK] .",
             "the album was released in [MASK] ."]:
    print(text)
    for i, candidates in enumerate(bert.fill_mask(text, top_k=5)):
        print(f"  [MASK] {i + 1}: " + ", ".join(f"{c['token']} {c['score']:.2f}" for c in candidates))

# %% [markdown]
# And on held-out text: sentences of the validation split with one word masked, the truth next to the guess.

# %%
from data_modules.wikitext import SAMPLE_DIR, article_sentences, read_lines, split_articles

valid = [s for a in split_articles(read_lines(SAMPLE_DIR / "wiki.valid.tokens")) for s in article_sentences(a)]
rng = np.random.default_rng(0)
hits = 0
for sentence in rng.choice([s for s in valid if 6 <= len(s.split()) <= 20], size=8, replace=False):
    words = sentence.split()
    i = int(rng.integers(len(words)))
    truth, words[i] = words[i], "[MASK]"
    guess = bert.fill_mask(" ".join(words), top_k=1)[0][0]["token"]  # one [MASK]; the top candidate
    hits += guess == truth.lower()
    print(f"{truth.lower()!r:>14} -> {guess!r:<12} {' '.join(words)}")
print(f"top-1 right on {hits} of 8 (a word of several WordPieces is masked as one [MASK]: it cannot be right)")

# %% [markdown]
# ## Next sentence prediction
#
# The NSP head's probability that B follows A, for a true continuation and for a sentence of another article.

# %%
arts = [article_sentences(a) for a in split_articles(read_lines(SAMPLE_DIR / "wiki.valid.tokens"))]
a, b_true, b_random = arts[0][0], arts[0][1], arts[-1][-1]
print(f"A: {a}\nB (next):   {b_true}\nB (random): {b_random}\n")
print(f"P(next | true continuation) = {bert.next_sentence(a, b_true):.2f}")
print(f"P(next | random sentence)   = {bert.next_sentence(a, b_random):.2f}")

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
clf.classify(["a gorgeous , witty and moving film .", "the plot is a dull , lifeless mess ."])

# %%
from data_modules.glue import SAMPLE_DIR as SST2_DIR, TASKS, read_tsv

dev = read_tsv(SST2_DIR / "dev.tsv", TASKS["sst2"], labelled=True)
texts, truth = [t[0].strip() for t in dev.texts], np.array(dev.labels)
probs = clf.predict_proba(texts).numpy()
pred = probs.argmax(1)
print(f"dev accuracy: {(pred == truth).mean():.1%} on {len(texts)} sentences")

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
for i in wrong[np.argsort(-probs[wrong, pred[wrong]])][:6]:
    print(f"{probs[i, pred[i]]:.2f} {clf.labels[pred[i]]:>8} (true {clf.labels[truth[i]]}): {texts[i]}")
if len(wrong) == 0:
    print("no mistakes on this dev sample")
'''

NOTEBOOKS = {"01_data_and_tokenizer.ipynb": NB01, "02_training_curves.ipynb": NB02, "03_model_in_action.ipynb": NB03}


def cells(source: str) -> list[nbformat.NotebookNode]:
    """Percent-format source -> notebook cells (markdown lines lose their leading '# ')."""
    out, kind, lines = [], None, []

    def flush() -> None:
        text = "\n".join(lines).strip("\n")
        if kind == "markdown":
            out.append(nbformat.v4.new_markdown_cell("\n".join(line[2:] if line.startswith("# ") else line.lstrip("#")
                                                                for line in text.splitlines())))
        elif kind == "code" and text:
            out.append(nbformat.v4.new_code_cell(text))

    for line in source.splitlines():
        if line.startswith("# %%"):
            flush()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        else:
            lines.append(line)
    flush()
    for i, cell in enumerate(out):
        cell.id = f"cell-{i}"  # fixed ids: the files only change when their source does
    return out


def build(source: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(cells=cells(source))
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    return nb


def render(source: str) -> str:
    return nbformat.writes(build(source)) + "\n"


def problems() -> list[str]:
    """What differs between the committed notebooks and their sources (outputs included)."""
    out = []
    for name, source in NOTEBOOKS.items():
        path = HERE / name
        if not path.is_file():
            out.append(f"{path}: missing; run python notebooks/_build.py")
            continue
        nb = nbformat.read(path, as_version=4)
        if any(c.get("outputs") or c.get("execution_count") for c in nb.cells if c.cell_type == "code"):
            out.append(f"{path}: has outputs; notebooks are committed without them (python notebooks/_build.py)")
        elif path.read_text() != render(source):
            out.append(f"{path}: differs from its source in notebooks/_build.py; run python notebooks/_build.py")
    return out


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        found = problems()
        print("\n".join(found) or "notebooks match their sources")
        sys.exit(1 if found else 0)
    for name, source in NOTEBOOKS.items():
        (HERE / name).write_text(render(source))
        print(f"wrote {HERE / name}")
