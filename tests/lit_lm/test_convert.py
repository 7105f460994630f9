"""Encoder parity with HuggingFace ``transformers`` BERT: random weights, several shapes, padding, both segments."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import require_transformers  # noqa: E402  (tests/conftest.py: pytest puts tests/ on sys.path)

transformers = require_transformers()

from lit_lm.classification import load_pretrained  # noqa: E402
from lit_lm.config import BertConfig  # noqa: E402
from lit_lm.convert import from_hf, lit_to_hf_state_dict, to_hf  # noqa: E402
from lit_lm.model import BertForPreTraining, BertForSequenceClassification, BertModel, sinusoidal_positions  # noqa: E402

SHAPES = [  # (layers, hidden, heads, intermediate, vocab)
    (1, 32, 2, 64, 97),
    (2, 64, 4, 128, 211),
    (3, 48, 3, 96, 150),
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _quiet():
    transformers.logging.set_verbosity_error()


def _hf_model(shape, seed: int = 0, dropout: float = 0.1) -> "transformers.BertForPreTraining":
    n_layer, n_embd, n_head, inter, vocab = shape
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=vocab, hidden_size=n_embd, num_hidden_layers=n_layer,
                                     num_attention_heads=n_head, intermediate_size=inter, max_position_embeddings=64,
                                     hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                                     attn_implementation="eager")
    model = transformers.BertForPreTraining(config).eval()
    with torch.no_grad():  # non-trivial LayerNorm and bias values, so a swapped key cannot pass unnoticed
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model


def _batch(vocab: int, B: int = 3, T: int = 12, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, vocab, (B, T), generator=g)
    lengths = torch.tensor([T, T - 4, 5])[:B]
    attention_mask = (torch.arange(T)[None, :] < lengths[:, None]).long()
    token_type_ids = ((torch.arange(T)[None, :] >= (lengths[:, None] // 2)) & attention_mask.bool()).long()
    input_ids = input_ids.masked_fill(attention_mask == 0, 0)
    return input_ids, token_type_ids, attention_mask


@pytest.mark.parametrize("shape", SHAPES)
def test_from_hf_and_back_give_the_same_logits(shape):
    hf = _hf_model(shape)
    ids, types, mask = _batch(shape[-1])
    assert set(types[mask.bool()].tolist()) == {0, 1}
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=types, attention_mask=mask)
        ours = from_hf(hf).eval()
        mlm, nsp = ours(ids, types, mask)
        real = mask.bool()
        torch.testing.assert_close(mlm[real], ref.prediction_logits[real], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(nsp, ref.seq_relationship_logits, rtol=1e-5, atol=1e-5)
        back = to_hf(ours)
        out = back(input_ids=ids, token_type_ids=types, attention_mask=mask)
        torch.testing.assert_close(out.prediction_logits[real], ref.prediction_logits[real], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.seq_relationship_logits, ref.seq_relationship_logits, rtol=1e-5, atol=1e-5)
    for k, v in hf.state_dict().items():
        torch.testing.assert_close(back.state_dict()[k], v, rtol=0, atol=0, msg=k)


def test_sparse_prediction_equals_dense_logits_at_masked_positions():
    hf = _hf_model(SHAPES[1])
    ours = from_hf(hf).eval()
    ids, types, mask = _batch(SHAPES[1][-1])
    masked = torch.zeros_like(mask, dtype=torch.bool)
    masked[0, [1, 5, 11]] = True
    masked[2, 3] = True
    with torch.no_grad():
        dense, _ = ours(ids, types, mask)
        sparse, _ = ours(ids, types, mask, masked_positions=masked)
    assert sparse.shape == (4, SHAPES[1][-1])
    torch.testing.assert_close(sparse, dense[masked], rtol=1e-6, atol=1e-6)


def test_sinusoidal_positions_follow_the_formula():
    P, d = 16, 10
    pe = sinusoidal_positions(P, d)
    for pos in range(P):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    model = BertModel(BertConfig.from_name("tiny", vocab_size=50, position_embedding="sinusoidal", max_position_embeddings=16))
    assert model.embeddings.position is None and "embeddings.sinusoids" not in model.state_dict()
    torch.testing.assert_close(model.embeddings.sinusoids, sinusoidal_positions(16, 128))


def test_one_training_step_matches_huggingface():
    """Same loss, gradients and AdamW update as transformers (dropout off, same lr and weight decay everywhere)."""
    shape = SHAPES[1]
    hf = _hf_model(shape, dropout=0.0)  # dropout off: the two would draw different masks
    ours = from_hf(hf)
    hf.train()
    ours.train()
    ids, types, mask = _batch(shape[-1])
    labels = torch.full_like(ids, -100)
    labels[0, [2, 4]] = ids[0, [2, 4]]
    labels[1, 1] = ids[1, 1]
    nsp_label = torch.tensor([0, 1, 0])

    ref = hf(input_ids=ids, token_type_ids=types, attention_mask=mask, labels=labels, next_sentence_label=nsp_label)
    mlm, nsp = ours(ids, types, mask, masked_positions=labels != -100)
    loss = F.cross_entropy(mlm, labels[labels != -100]) + F.cross_entropy(nsp, nsp_label)
    torch.testing.assert_close(loss, ref.loss, rtol=1e-5, atol=1e-6)
    ref.loss.backward()
    loss.backward()
    grads = lit_to_hf_state_dict({k: p.grad for k, p in ours.named_parameters()}, ours.config)
    hf_grads = dict(hf.named_parameters(remove_duplicate=False))
    for k, g in grads.items():
        if k in hf_grads:
            torch.testing.assert_close(g, hf_grads[k].grad, rtol=1e-4, atol=1e-6, msg=k)

    for m in (hf, ours):  # one group each, same decay everywhere: no parameter-group mismatch
        torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.01).step()
    after = lit_to_hf_state_dict(ours.state_dict(), ours.config)
    for k, v in hf.state_dict().items():
        if k in after:
            # Adam divides by |g|: rounding-level gradient differences (the key bias's gradient is zero up to
            # rounding, softmax being shift-invariant) move weights by a small fraction of lr, hence atol = lr / 100
            torch.testing.assert_close(after[k], v, rtol=1e-5, atol=1e-5, msg=k)


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_load_a_saved_huggingface_directory(tmp_path, weights):
    hf = _hf_model(SHAPES[0])
    if weights == "model.safetensors":
        hf.save_pretrained(tmp_path)
    else:  # the older format (transformers 5 writes safetensors only)
        hf.config.save_pretrained(tmp_path)
        torch.save(hf.state_dict(), tmp_path / weights)
    assert (tmp_path / weights).is_file()
    (tmp_path / "vocab.txt").write_text("".join(f"{t}\n" for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
                                              + [f"w{i}" for i in range(SHAPES[0][-1] - 5)]))
    config, encoder, tokenizer_json = load_pretrained(tmp_path)
    model = BertModel(config).eval()
    model.load_state_dict(encoder)
    ids, types, mask = _batch(SHAPES[0][-1])
    with torch.no_grad():
        hidden, pooled = model(ids, types, mask)
        ref = hf.bert(input_ids=ids, token_type_ids=types, attention_mask=mask)
    torch.testing.assert_close(hidden[mask.bool()], ref.last_hidden_state[mask.bool()], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pooled, ref.pooler_output, rtol=1e-5, atol=1e-5)
    assert '"w0"' in tokenizer_json


@pytest.mark.parametrize("num_labels", [3, 1])  # MNLI's three classes; STS-B's regression
def test_sequence_classification_matches_huggingface_both_ways(num_labels):
    """lit_lm.model.BertForSequenceClassification gives transformers' logits from the same weights, whichever side
    the weights started on."""
    shape = SHAPES[1]
    n_layer, n_embd, n_head, inter, vocab = shape
    torch.manual_seed(0)
    hf_config = transformers.BertConfig(vocab_size=vocab, hidden_size=n_embd, num_hidden_layers=n_layer,
                                        num_attention_heads=n_head, intermediate_size=inter, max_position_embeddings=64,
                                        num_labels=num_labels, classifier_dropout=0.2, attn_implementation="eager")
    hf = transformers.BertForSequenceClassification(hf_config).eval()
    with torch.no_grad():  # a non-zero classifier bias and LayerNorm values, so a swapped key cannot pass unnoticed
        for name, p in hf.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    ids, types, mask = _batch(vocab)
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=types, attention_mask=mask).logits  # (B, num_labels)
        ours = from_hf(hf).eval()
        assert isinstance(ours, BertForSequenceClassification) and ours.dropout.p == 0.2
        torch.testing.assert_close(ours(ids, types, mask), ref, rtol=1e-5, atol=1e-5)
        # from lit-lm's own random init to transformers
        torch.manual_seed(1)
        mine = BertForSequenceClassification(ours.config, num_labels).eval()
        back = to_hf(mine)
        assert isinstance(back, transformers.BertForSequenceClassification) and back.config.num_labels == num_labels
        torch.testing.assert_close(back(input_ids=ids, token_type_ids=types, attention_mask=mask).logits,
                                   mine(ids, types, mask), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(mine(ids, types, mask), ref)  # two different models: the comparison can fail
