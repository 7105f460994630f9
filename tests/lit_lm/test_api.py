"""lit_lm.load and what it returns: fill-mask, NSP, attention maps and classification against the model itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F

import lit_lm
from lit_lm.api import Classifier, Pretrained, attention_maps
from lit_lm.classification import SequenceClassification

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pretrained_ckpt(quickstart_run) -> Path:
    return quickstart_run / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def bert(pretrained_ckpt) -> Pretrained:
    return lit_lm.load(pretrained_ckpt)


@pytest.fixture(scope="module")
def classifier_ckpt(pretrained_ckpt, tmp_path_factory) -> Path:
    """A classification checkpoint written by Lightning through SequenceClassification's own hooks (no training:
    the classifier layer keeps its random initialisation, which is all these tests need)."""
    torch.manual_seed(0)
    module = SequenceClassification(pretrained=str(pretrained_ckpt), num_labels=2)
    module.task_name = "sst2"
    trainer = L.Trainer(logger=False, enable_checkpointing=False, accelerator="cpu", enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.strategy.connect(module)
    path = tmp_path_factory.mktemp("clf") / "sst2.ckpt"
    trainer.save_checkpoint(path)
    return path


# ---------------------------------------------------------------------------------------------------------------------
# pretraining checkpoints


def test_load_rebuilds_the_pretraining_model_in_eval_mode(bert, pretrained_ckpt):
    assert isinstance(bert, Pretrained) and not bert.model.training
    state = torch.load(pretrained_ckpt, weights_only=True)["state_dict"]
    for k, v in bert.model.state_dict().items():
        torch.testing.assert_close(v, state[f"model.{k}"], rtol=0, atol=0)
    assert bert.tokenizer.get_vocab_size() <= bert.config.vocab_size


def test_fill_mask_top1_is_the_models_argmax(bert):
    text = "the film was released in [MASK] and the [MASK] were good ."
    preds = bert.fill_mask(text, top_k=4)
    assert len(preds) == 2 and all(len(p) == 4 for p in preds)
    # the model run directly, over every position (no sparse prediction)
    enc = bert.tokenizer.encode(text)
    ids = torch.tensor([enc.ids])
    with torch.no_grad():
        logits, _ = bert.model(ids, torch.tensor([enc.type_ids]))
    positions = (ids[0] == bert.tokenizer.token_to_id("[MASK]")).nonzero()[:, 0]
    probs = logits[0, positions].softmax(-1)
    for p, row in zip(preds, probs):
        assert p[0]["token"] == bert.tokenizer.id_to_token(int(row.argmax()))
        assert p[0]["score"] == pytest.approx(float(row.max()), rel=1e-5)
        scores = [d["score"] for d in p]
        assert scores == sorted(scores, reverse=True)


def test_fill_mask_batch_matches_one_by_one(bert):
    texts = ["a [MASK] .", "the river flows into the [MASK] [MASK] near the old town ."]  # padded in a batch
    batched = bert.fill_mask(texts, top_k=3)
    for text, got in zip(texts, batched):
        alone = bert.fill_mask(text, top_k=3)
        assert [[d["token"] for d in m] for m in got] == [[d["token"] for d in m] for m in alone]
        for m_got, m_alone in zip(got, alone):
            assert [d["score"] for d in m_got] == pytest.approx([d["score"] for d in m_alone], rel=1e-4)


def test_fill_mask_without_mask_is_an_error(bert):
    with pytest.raises(ValueError, match=r"no \[MASK\] token in 'no mask here'"):
        bert.fill_mask("no mask here")


def test_next_sentence_is_the_nsp_heads_probability_of_class_0(bert):
    a, b = "the river is long .", "it flows into the sea ."
    p = bert.next_sentence(a, b)
    enc = bert.tokenizer.encode(a, b)
    with torch.no_grad():
        _, nsp = bert.model(torch.tensor([enc.ids]), torch.tensor([enc.type_ids]))
    assert 0.0 < p < 1.0 and p == pytest.approx(float(nsp.softmax(-1)[0, 0]), rel=1e-5)


def test_attention_maps_are_the_blocks_own_attention(bert):
    """Rows sum to 1, padded keys get no weight, and (maps @ v) through the output projection reproduces each
    attention module's output, i.e. the maps are exactly what SDPA computed."""
    batch, _ = bert.encode(["the cat sat on the mat .", ("a short one", "and its pair .")])
    mask = batch["attention_mask"]
    assert (mask == 0).any()  # the batch is padded
    qkv_out, attn_out = [], []
    hooks = [b.attn.qkv.register_forward_hook(lambda m, i, o: qkv_out.append(o)) for b in bert.model.bert.blocks]
    hooks += [b.attn.register_forward_hook(lambda m, i, o: attn_out.append(o)) for b in bert.model.bert.blocks]
    try:
        with torch.no_grad():
            maps = attention_maps(bert.model.bert, **batch)  # (B, L, H, T, T)
    finally:
        for h in hooks:
            h.remove()
    B, T = mask.shape
    cfg = bert.config
    assert maps.shape == (B, cfg.n_layer, cfg.n_head, T, T)
    torch.testing.assert_close(maps.sum(-1), torch.ones(B, cfg.n_layer, cfg.n_head, T))
    assert (maps.masked_select(mask[:, None, None, None, :] == 0) == 0).all()
    real = mask.bool()
    for layer, block in enumerate(bert.model.bert.blocks):
        qkv, out = qkv_out[layer], attn_out[layer]
        if qkv.dim() == 2:  # the encoder ran the per-token layers on the real tokens only: (N, 3C), row-major
            qkv = qkv.new_zeros(B, T, 3 * cfg.n_embd).index_put((real,), qkv)
        v = qkv.split(cfg.n_embd, dim=-1)[2].view(B, T, cfg.n_head, -1).transpose(1, 2)  # (B, nh, T, hs)
        y = block.attn.proj((maps[:, layer] @ v).transpose(1, 2).reshape(B, T, cfg.n_embd))  # (B, T, C)
        torch.testing.assert_close(y[real], out if out.dim() == 2 else out[real], rtol=1e-5, atol=1e-5)


def test_attention_of_one_text(bert):
    tokens, maps = bert.attention("the cat sat .", "it was happy .")
    assert tokens[0] == "[CLS]" and tokens.count("[SEP]") == 2
    assert maps.shape == (bert.config.n_layer, bert.config.n_head, len(tokens), len(tokens))


# ---------------------------------------------------------------------------------------------------------------------
# classification checkpoints


def test_classify_matches_the_lightning_module(classifier_ckpt, pretrained_ckpt):
    clf = lit_lm.load(classifier_ckpt)
    assert isinstance(clf, Classifier) and clf.labels == ["0", "1"] and clf.task_name == "sst2"
    texts = ["a gorgeous , witty film .", "dull", ("a pair of", "sentences .")]
    probs = clf.predict_proba(texts)
    # the module Lightning trains, restored from the same checkpoint, in eval mode
    ckpt = torch.load(classifier_ckpt, weights_only=True)
    module = SequenceClassification(pretrained=str(pretrained_ckpt), num_labels=2).eval()
    module.load_state_dict(ckpt["state_dict"])
    batch, _ = clf.encode(texts)
    with torch.no_grad():
        expected = F.softmax(module(**batch), -1)
    torch.testing.assert_close(probs, expected, rtol=1e-5, atol=1e-6)
    out = clf.classify(texts)
    assert [d["label"] for d in out] == [clf.labels[i] for i in expected.argmax(-1).tolist()]
    assert [d["score"] for d in out] == pytest.approx(expected.max(-1).values.tolist(), rel=1e-5)
    assert clf.classify("one text") == clf.classify(["one text"])


def test_labels_can_be_named(classifier_ckpt):
    clf = lit_lm.load(classifier_ckpt, labels=["negative", "positive"])
    assert clf.classify("fine")[0]["label"] in {"negative", "positive"}
    with pytest.raises(ValueError, match="has 2 classes"):
        lit_lm.load(classifier_ckpt, labels=["a", "b", "c"])


# ---------------------------------------------------------------------------------------------------------------------
# one-line errors


def test_wrong_kind_is_a_one_line_error(bert, classifier_ckpt, pretrained_ckpt):
    clf = lit_lm.load(classifier_ckpt)
    with pytest.raises(ValueError, match=f"{classifier_ckpt}: a lit-lm classification checkpoint; fill_mask"):
        clf.fill_mask("a [MASK] .")
    with pytest.raises(ValueError, match="classification checkpoint; next_sentence.. needs a pretraining"):
        clf.next_sentence("a", "b")
    with pytest.raises(ValueError, match=f"{pretrained_ckpt}: a lit-lm pretraining checkpoint; classify"):
        bert.classify("a film")
    with pytest.raises(ValueError, match="pretraining checkpoint; predict_proba.. needs a classification"):
        bert.predict_proba(["a film"])


@pytest.mark.parametrize("what", ["missing", "garbage", "foreign", "no_tokenizer"])
def test_not_a_lit_lm_checkpoint(tmp_path, what, pretrained_ckpt):
    path = tmp_path / "model.ckpt"
    if what == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif what == "foreign":
        torch.save({"state_dict": {"w": torch.zeros(1)}}, path)
    elif what == "no_tokenizer":
        ckpt = torch.load(pretrained_ckpt, weights_only=True)
        del ckpt["tokenizer"]
        torch.save(ckpt, path)
    expected = {"missing": "no such checkpoint file", "garbage": "not a readable lit-lm checkpoint",
                "foreign": "not a lit-lm checkpoint", "no_tokenizer": "this lit-lm checkpoint carries no tokenizer"}[what]
    with pytest.raises(ValueError, match=f"^{path}: {expected}") as e:
        lit_lm.load(path)
    assert "\n" not in str(e.value)


def test_load_needs_no_lightning(pretrained_ckpt):
    """``import lit_lm`` stays cheap and loading a pretraining checkpoint does not import Lightning. (~5 s)"""
    code = ("import sys, lit_lm; assert 'torch' not in sys.modules; "
            f"lit_lm.load({str(pretrained_ckpt)!r}).fill_mask('a [MASK] .'); assert 'lightning' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
