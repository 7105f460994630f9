"""Each notebook is paired with a percent-format source (notebooks/<name>.py, jupytext) and committed without
outputs: the two must hold the same cells, or one of them was edited without ``jupytext --sync notebooks/0*.py``.
Modules whose name starts with ``_`` (notebooks/_runs.py) are code the notebooks import, not notebooks.
(Executing the notebooks is nbmake's job: ``python -m pytest --nbmake notebooks``.)"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import jupytext
import numpy as np
import pytest
import torch

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted(p for p in NOTEBOOKS.glob("*.py") if not p.name.startswith("_"))


def cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def test_every_notebook_has_a_source():
    assert SOURCES, f"no notebook sources in {NOTEBOOKS}"
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == [p.stem for p in SOURCES]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_notebook_matches_its_source_and_has_no_outputs(source: Path):
    notebook = source.with_suffix(".ipynb")
    text, nb = jupytext.read(source), jupytext.read(notebook)
    assert text.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    assert cells(nb) == cells(text), f"{notebook.name} differs from {source.name}: jupytext --sync notebooks/0*.py"
    assert nb.metadata["kernelspec"] == text.metadata["kernelspec"]
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not any(c.outputs or c.execution_count for c in code), f"{notebook.name} has outputs; commit it without"


# ---------------------------------------------------------------------------------------------------------------------
# The notebooks' last cells (notebooks/_checks.py): each check passes the figures its notebook computes and fails,
# naming the figure, on each kind of wrong one. No training: notebook 1's figures come from the bundled sample,
# notebooks 2 and 3 get synthetic curves and model outputs.

def _load_checks():
    # the notebooks import it from their folder; loaded by path here so that notebooks/ stays off sys.path
    spec = importlib.util.spec_from_file_location("_checks", NOTEBOOKS / "_checks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


checks = _load_checks()


def expect_failure(check: Callable[..., str], figures: dict[str, Any], figure: str) -> None:
    with pytest.raises(AssertionError, match=f"^{re.escape(figure)}"):
        check(**figures)


# --- 01_data_and_tokenizer: its figures, computed as the notebook computes them, on the sample with a small vocabulary

@pytest.fixture(scope="module")
def data_figures(tmp_path_factory) -> dict[str, Any]:
    from data_modules.collators import MLMCollator
    from data_modules.wikitext import SAMPLE_DIR, WikiText103DataModule
    from data_modules.wikitext_release import WIKITEXT_INFIX, article_sentences, read_release_lines, split_articles

    articles = {split: list(split_articles(read_release_lines(SAMPLE_DIR / f"wiki.{infix}.tokens")))
                for split, infix in WIKITEXT_INFIX.items()}
    sentences = {split: [article_sentences(a) for a in arts] for split, arts in articles.items()}
    dm = WikiText103DataModule(data_dir=str(SAMPLE_DIR), cache_dir=str(tmp_path_factory.mktemp("cache")),
                               vocab_size=1000, max_seq_len=64, num_workers=0)
    dm.prepare_data()
    dm.setup("fit")
    tok, train = dm.tokenizer, dm.datasets["train"]
    ids = np.asarray(train.ids)
    counts = np.bincount(ids, minlength=tok.get_vocab_size())
    vocab = tok.get_vocab()
    example = next(train[(0, i)] for i in range(len(train)) if len(train[(0, i)]["input_ids"]) < 48)
    collator = MLMCollator(dm.special, tok.get_vocab_size(), mlm_probability=0.15, seed=dm.seed)
    return dict(
        dm=dm, articles=articles, sentences=sentences, counts=counts, top=np.argsort(-counts)[:25],
        pieces=sorted((t for t in vocab if t.startswith("##")), key=vocab.get),
        word_pieces={w: tok.encode(w, add_special_tokens=False).tokens for w in ["pretraining", "archaeologists"]},
        words=np.array([len(s.split()) for art in sentences["train"] for s in art]),
        pieces_per_sentence=np.diff(np.asarray(train.sent_offsets)),
        pair_lengths=np.array([len(train[(0, i)]["input_ids"]) for i in range(len(train))]),
        example=example, collator=collator, batch=collator([example]))


def _other_dm(f: dict, **changes) -> SimpleNamespace:
    dm = f["dm"]
    return SimpleNamespace(**{k: getattr(dm, k) for k in ("tokenizer", "datasets", "special", "vocab_size",
                                                         "max_seq_len")} | changes)


def _with_example(f: dict, **changes) -> dict:
    return f["example"] | {k: np.asarray(v) for k, v in changes.items()}


def _masked_at(f: dict, rate: float) -> dict:
    from data_modules.collators import MLMCollator

    dm = f["dm"]
    return MLMCollator(dm.special, dm.tokenizer.get_vocab_size(), mlm_probability=rate, seed=dm.seed)([f["example"]])


WRONG_DATA = {  # id -> (the figure its message names, the wrong figures)
    "a split's sentences lost an article": ("split sizes", lambda f: {
        "sentences": f["sentences"] | {"train": f["sentences"]["train"][:-1]}}),
    "a split of one article": ("split sizes", lambda f: {
        "articles": f["articles"] | {"test": f["articles"]["test"][:1]},
        "sentences": f["sentences"] | {"test": f["sentences"]["test"][:1]}}),
    "more tokens than asked for": ("vocabulary", lambda f: {"dm": _other_dm(f, vocab_size=100)}),
    "counts of the validation split": ("token frequencies", lambda f: {
        "counts": np.bincount(np.asarray(f["dm"].datasets["validation"].ids), minlength=len(f["counts"]))}),
    "counts of the pairs, specials included": ("token frequencies", lambda f: {
        "counts": f["counts"] + np.bincount([2, 3, 3], minlength=len(f["counts"]))}),
    "least frequent first": ("token frequencies", lambda f: {"top": f["top"][::-1]}),
    "the most frequent left out": ("token frequencies", lambda f: {"top": np.argsort(-f["counts"])[1:26]}),
    "a whole word among the pieces": ("'##' pieces", lambda f: {"pieces": f["pieces"] + ["the"]}),
    "encoded with [CLS] and [SEP]": ("word pieces", lambda f: {
        "word_pieces": {w: f["dm"].tokenizer.encode(w).tokens for w in f["word_pieces"]}}),
    "another word's pieces": ("word pieces", lambda f: {
        "word_pieces": dict(zip(f["word_pieces"], reversed(f["word_pieces"].values())))}),
    "words of the validation split": ("sentence lengths (words)", lambda f: {
        "words": np.array([len(s.split()) for art in f["sentences"]["validation"] for s in art])}),
    "letters, not words": ("WordPieces per word", lambda f: {
        "words": np.array([len(s) for art in f["sentences"]["train"] for s in art])}),
    "a sentence left out": ("sentence lengths (WordPieces)", lambda f: {
        "pieces_per_sentence": f["pieces_per_sentence"][1:]}),
    "lengths counted from 0": ("sentence lengths (WordPieces)", lambda f: {
        "pieces_per_sentence": f["pieces_per_sentence"] - 1}),
    "half the pairs": ("NSP pair lengths", lambda f: {"pair_lengths": f["pair_lengths"][::2]}),
    "lengths of padded pairs": ("NSP pair lengths", lambda f: {"pair_lengths": f["pair_lengths"] + 64}),
    "no final [SEP]": ("NSP example", lambda f: {"example": _with_example(
        f, input_ids=f["example"]["input_ids"][:-1], token_type_ids=f["example"]["token_type_ids"][:-1])}),
    "one segment": ("NSP example", lambda f: {"example": _with_example(
        f, token_type_ids=np.zeros_like(f["example"]["token_type_ids"]))}),
    "masked at 45%": ("MLM masking", lambda f: {"batch": _masked_at(f, 0.45)}),
    "labels one position off": ("MLM masking", lambda f: {
        "batch": f["batch"] | {"labels": f["batch"]["labels"].roll(1, dims=1)}}),
    "the original ids shown": ("MLM masking", lambda f: {"batch": f["batch"] | {
        "input_ids": torch.where(f["batch"]["labels"] != -100, f["batch"]["labels"], f["batch"]["input_ids"])}}),
}


# --- 02_training_curves: two runs' curves as TensorBoard gives them back, and the table the notebook prints from them

PANELS = [("MLM loss", "train/mlm_loss", "val/mlm_loss"), ("NSP loss", "train/nsp_loss", "val/nsp_loss"),
          ("MLM accuracy", "train/mlm_acc", "val/mlm_acc"), ("NSP accuracy", "train/nsp_acc", "val/nsp_acc"),
          ("learning rate", "lr-AdamW/pg1", None), ("tokens / s", "train/device/items_per_sec", None)]


def _run_scalars(lr: float, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    steps, val_steps = np.arange(1, 30, 2), np.array([14, 29])  # logged every 2 steps, validated twice
    mlm = np.linspace(8.3, 8.3 - 1000 * lr, len(steps)) + rng.normal(0, 0.02, len(steps))
    nsp = 0.69 + rng.normal(0, 0.03, len(steps))
    val_mlm = np.array([mlm[7], mlm[-1]]) - 0.05
    return {
        "train/loss": (steps, mlm + nsp), "train/mlm_loss": (steps, mlm), "train/perplexity": (steps, np.exp(mlm)),
        "train/nsp_loss": (steps, nsp), "train/mlm_acc": (steps, np.linspace(0, 0.1, len(steps))),
        "train/nsp_acc": (steps, rng.uniform(0.4, 0.7, len(steps))),
        "lr-AdamW/pg1": (steps, lr * np.minimum(steps / 5, (30 - steps) / 25)),
        "train/device/items_per_sec": (steps[1:], rng.uniform(300, 6000, len(steps) - 1)),
        "val/mlm_loss": (val_steps, val_mlm), "val/perplexity": (val_steps, np.exp(val_mlm)),
        "val/mlm_acc": (val_steps, np.array([0.05, 0.06])), "val/nsp_acc": (val_steps, np.array([0.6, 0.63])),
        "val/nsp_loss": (val_steps, np.array([0.66, 0.66])),
    }


def _table(scalars: dict) -> dict[str, dict[str, float]]:
    """The table as 02_training_curves builds it."""
    keys = ["val/mlm_loss", "val/perplexity", "val/mlm_acc", "val/nsp_acc"]
    return {name: {"steps": int(s["train/loss"][0][-1]) + 1, **{k: s[k][1][-1] for k in keys},
                   "tokens/s": np.median(s["train/device/items_per_sec"][1])} for name, s in scalars.items()}


@pytest.fixture
def curve_figures() -> dict[str, Any]:
    scalars = {"lr 1e-3": _run_scalars(1e-3, 0), "lr 2e-4": _run_scalars(2e-4, 1)}
    return dict(scalars=scalars, panels=PANELS, table=_table(scalars))


def _tag(f: dict, tag: str, steps=None, values=None, run: str = "lr 1e-3") -> dict:
    """The scalars with one curve of one run replaced."""
    s, v = f["scalars"][run][tag]
    curve = (s if steps is None else steps, v if values is None else values)
    return {"scalars": f["scalars"] | {run: f["scalars"][run] | {tag: curve}}}


def _row(f: dict, **changes) -> dict:
    return {"table": f["table"] | {"lr 2e-4": f["table"]["lr 2e-4"] | changes}}


WRONG_CURVES = {
    "steps read back in reverse": ("MLM loss panel", lambda f: _tag(
        f, "train/mlm_loss", steps=f["scalars"]["lr 1e-3"]["train/mlm_loss"][0][::-1])),
    "MLM loss going up": ("MLM loss panel", lambda f: _tag(f, "train/mlm_loss", values=np.linspace(7, 8, 15))),
    "val MLM loss going up": ("MLM loss panel", lambda f: _tag(f, "val/mlm_loss", values=np.array([6.0, 7.0]))),
    "an infinite NSP loss": ("NSP loss panel", lambda f: _tag(f, "train/nsp_loss", values=np.r_[np.inf, np.ones(14)])),
    "accuracy in percent": ("MLM accuracy panel", lambda f: _tag(f, "val/mlm_acc", values=np.array([5.0, 6.0]))),
    "a tag no run logged": ("NSP accuracy panel", lambda f: {"scalars": {
        r: {t: v for t, v in s.items() if not t.endswith("nsp_acc")} for r, s in f["scalars"].items()}}),
    "a learning rate of 0 throughout": ("learning rate panel", lambda f: _tag(f, "lr-AdamW/pg1", values=np.zeros(15))),
    "no throughput": ("tokens / s panel", lambda f: _tag(f, "train/device/items_per_sec", values=np.zeros(14))),
    "perplexity = 2 ** loss": ("val/perplexity (lr 2e-4)", lambda f: _tag(
        f, "val/perplexity", values=2 ** f["scalars"]["lr 2e-4"]["val/mlm_loss"][1], run="lr 2e-4")),
    "a run's row missing": ("final metrics table", lambda f: {"table": {"lr 1e-3": f["table"]["lr 1e-3"]}}),
    "steps counted as logged points": ("final metrics table", lambda f: _row(f, steps=15)),
    "the first val loss": ("final metrics table", lambda f: _row(
        f, **{"val/mlm_loss": f["scalars"]["lr 2e-4"]["val/mlm_loss"][1][0]})),
    "a logged metric shown as NaN": ("final metrics table", lambda f: _row(f, **{"val/nsp_acc": float("nan")})),
    "tokens/s summed": ("final metrics table", lambda f: _row(
        f, **{"tokens/s": f["scalars"]["lr 2e-4"]["train/device/items_per_sec"][1].sum()})),
}


# --- 03_model_in_action: stand-ins for the two checkpoints and outputs of the shapes lit_lm.load's methods return

VOCAB = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", ".", "cat", "##s"])}


@pytest.fixture
def model_figures() -> dict[str, Any]:
    bert = SimpleNamespace(tokenizer=SimpleNamespace(get_vocab=lambda: VOCAB),
                           config=SimpleNamespace(n_layer=2, n_head=3))
    clf = SimpleNamespace(labels=["negative", "positive"])

    def candidates(tokens: list[str], scores: list[float]) -> list[dict]:
        return [{"token": t, "score": s} for t, s in zip(tokens, scores)]

    filled = {"the [MASK] sat .": [candidates(["cat", "the", "a"], [0.3, 0.2, 0.1])],
              "a [MASK] and the [MASK] .": [candidates(["cat", "."], [0.5, 0.4]), candidates([".", "##s"], [0.6, 0.1])]}
    tokens = ["[CLS]", "the", "cat", ".", "[SEP]", "a", "cat", "[SEP]"]
    maps = torch.randn(2, 3, len(tokens), len(tokens), generator=torch.Generator().manual_seed(0)).softmax(-1)
    # 20 dev sentences, 5 wrong (distinct confidences), more predicted positive than there are
    truth = np.array([0] * 8 + [1] * 12)
    positive = np.array([.1, .2, .3, .05, .15, .25, .9, .7, .9, .8, .95, .6, .85, .75, .65, .99, .35, .45, .4, .55])
    probs = np.stack([1 - positive, positive], 1)
    pred = probs.argmax(1)
    confusion = np.zeros((2, 2), dtype=int)
    np.add.at(confusion, (truth, pred), 1)
    wrong = np.flatnonzero(pred != truth)
    return dict(bert=bert, clf=clf, filled=filled, guesses=[("cat", "cat"), ("dog", "the")], hits=1,
                p_next={"true continuation": 0.7, "random sentence": 0.4}, tokens=tokens, maps=maps,
                classified=[{"label": "positive", "score": 0.9}, {"label": "negative", "score": 0.6}],
                probs=probs, pred=pred, truth=truth, accuracy=(pred == truth).mean(), confusion=confusion,
                mistakes=wrong[np.argsort(-probs[wrong, pred[wrong]])][:6])


def _filled(f: dict, text: str, i: int, tokens: list, scores: list) -> dict:
    per_mask = list(f["filled"][text])
    per_mask[i] = [{"token": t, "score": s} for t, s in zip(tokens, scores)]
    return {"filled": f["filled"] | {text: per_mask}}


WRONG_MODEL = {
    "one list for two masks": ("fill-mask", lambda f: {"filled": f["filled"] | {
        "a [MASK] and the [MASK] .": f["filled"]["a [MASK] and the [MASK] ."][:1]}}),
    "an id past the tokenizer's vocabulary": ("fill-mask", lambda f: _filled(f, "the [MASK] sat .", 0,
                                                                             ["cat", None], [0.3, 0.2])),
    "least likely first": ("fill-mask", lambda f: _filled(f, "the [MASK] sat .", 0, ["a", "the"], [0.1, 0.3])),
    "logits, not probabilities": ("fill-mask", lambda f: _filled(f, "the [MASK] sat .", 0, ["cat", "a"], [0.9, 0.8])),
    "a guess outside the vocabulary": ("held-out guesses", lambda f: {"guesses": [("cat", "cat"), ("dog", "dog")]}),
    "hits miscounted": ("held-out guesses", lambda f: {"hits": 2}),
    "an NSP logit": ("NSP probabilities", lambda f: {"p_next": {"true continuation": 1.7, "random sentence": 0.4}}),
    "normalized over the wrong axis": ("attention maps", lambda f: {"maps": f["maps"].transpose(-1, -2)}),
    "one layer of two": ("attention maps", lambda f: {"maps": f["maps"][:1]}),
    "tokens without [CLS]": ("attention maps", lambda f: {"tokens": f["tokens"][1:] + ["[PAD]"]}),
    "a label id for a name": ("classify", lambda f: {"classified": [{"label": "1", "score": 0.9}]}),
    "the less likely label's probability": ("classify", lambda f: {
        "classified": [{"label": "positive", "score": 0.1}]}),
    "unnormalized scores": ("dev probabilities", lambda f: {"probs": f["probs"] * 2}),
    "least likely class predicted": ("dev probabilities", lambda f: {"pred": 1 - f["pred"]}),
    "a matrix transposed": ("confusion matrix", lambda f: {"confusion": f["confusion"].T}),
    "a sentence counted twice": ("confusion matrix", lambda f: {"confusion": f["confusion"] + np.eye(2, dtype=int)}),
    "the error rate": ("dev accuracy", lambda f: {"accuracy": 1 - f["accuracy"]}),
    "least confident first": ("confident mistakes", lambda f: {"mistakes": f["mistakes"][::-1]}),
    "a right prediction among them": ("confident mistakes", lambda f: {"mistakes": np.r_[f["mistakes"][:-1], 0]}),
    "the most confident left out": ("confident mistakes", lambda f: {"mistakes": f["mistakes"][1:]}),
}


# --- every notebook: its check passes the right figures and fails each wrong one, naming the figure

NOTEBOOK_CHECKS = {  # notebook -> (its check, the fixture of its figures, its wrong figures)
    "01_data_and_tokenizer": (checks.check_data_and_tokenizer, "data_figures", WRONG_DATA),
    "02_training_curves": (checks.check_training_curves, "curve_figures", WRONG_CURVES),
    "03_model_in_action": (checks.check_model_in_action, "model_figures", WRONG_MODEL),
}


@pytest.mark.parametrize("notebook", NOTEBOOK_CHECKS)
def test_checks_pass_the_notebooks_figures(notebook, request):
    check, fixture, _ = NOTEBOOK_CHECKS[notebook]
    assert check(**request.getfixturevalue(fixture)).startswith("checks passed: ")


@pytest.mark.parametrize("notebook, case", [(n, c) for n, (_, _, wrong) in NOTEBOOK_CHECKS.items() for c in wrong])
def test_checks_fail_a_wrong_figure(notebook, case, request):
    check, fixture, wrong = NOTEBOOK_CHECKS[notebook]
    figures = request.getfixturevalue(fixture)
    figure, change = wrong[case]
    expect_failure(check, figures | change(figures), figure)
