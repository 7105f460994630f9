import math

import pytest
import torch

from lit_lm.config import BertConfig
from lit_lm.model import BertForPreTraining, sinusoidal_positions


def tiny(**kw):
    return BertConfig.from_name("tiny", vocab_size=101, max_position_embeddings=64, **kw)


def batch(B=3, T=16, V=101, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (B, T), generator=g)
    att = torch.ones(B, T, dtype=torch.long)
    att[B // 2, T // 2 :] = 0
    ids[att == 0] = 0
    tt = torch.zeros_like(ids)
    tt[:, T // 3 :] = 1
    return ids, tt, att


def test_shapes_dense_and_sparse():
    torch.manual_seed(0)
    m = BertForPreTraining(tiny()).eval()
    ids, tt, att = batch()
    mlm, nsp = m(ids, tt, att)
    assert mlm.shape == (3, 16, 101) and nsp.shape == (3, 2)
    masked = torch.zeros_like(ids, dtype=torch.bool)
    masked[0, 3] = masked[2, 7] = masked[2, 9] = True
    sparse, nsp2 = m(ids, tt, att, masked_positions=masked)
    assert sparse.shape == (3, 101)
    torch.testing.assert_close(sparse, mlm[masked])
    torch.testing.assert_close(nsp2, nsp)


def test_padded_vocab_rows_are_hidden_from_logits():
    torch.manual_seed(0)
    m = BertForPreTraining(tiny(pad_vocab_multiple=64)).eval()
    assert m.bert.embeddings.word.weight.shape[0] == 128
    mlm, _ = m(*batch())
    assert mlm.shape[-1] == 101


def test_decoder_is_tied_to_word_embeddings():
    m = BertForPreTraining(tiny())
    assert m.mlm_head.decoder_weight is m.bert.embeddings.word.weight
    assert sum(p.numel() for p in m.parameters()) == m.num_parameters()
    # one parameter, counted once
    assert len([p for p in m.parameters() if p is m.bert.embeddings.word.weight]) == 1


def test_padding_does_not_change_real_positions():
    torch.manual_seed(0)
    m = BertForPreTraining(tiny()).eval()
    ids, tt, att = batch(B=1, T=12)
    mlm, nsp = m(ids, tt, att)
    pad = torch.zeros(1, 4, dtype=torch.long)
    mlm2, nsp2 = m(torch.cat([ids, pad], 1), torch.cat([tt, pad], 1), torch.cat([att, pad], 1))
    torch.testing.assert_close(mlm2[:, :12], mlm)
    torch.testing.assert_close(nsp2, nsp)


def test_sinusoidal_option_matches_formula():
    pe = sinusoidal_positions(50, 16)
    for pos in (0, 7, 49):
        for i in range(8):
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(pos / 10000 ** (2 * i / 16)), abs=1e-6)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(pos / 10000 ** (2 * i / 16)), abs=1e-6)
    m = BertForPreTraining(tiny(position_embedding="sinusoidal")).eval()
    assert m.bert.embeddings.position is None
    # the table is rebuilt from the formula, never saved; only its learned scale is a parameter
    assert [k for k in m.state_dict() if "position" in k] == ["bert.embeddings.position_scale"]
    torch.testing.assert_close(m.bert.embeddings.sinusoids, sinusoidal_positions(64, 128))
    m(*batch())


def test_dropout_only_in_training():
    torch.manual_seed(0)
    m = BertForPreTraining(tiny())
    ids, tt, att = batch()
    m.train()
    a, _ = m(ids, tt, att)
    b, _ = m(ids, tt, att)
    assert not torch.allclose(a, b)
    m.eval()
    torch.testing.assert_close(m(ids, tt, att)[0], m(ids, tt, att)[0])


def test_too_long_sequence_is_a_clear_error():
    m = BertForPreTraining(tiny())
    with pytest.raises(ValueError, match="max_position_embeddings=64"):
        m(torch.ones(1, 65, dtype=torch.long))


def test_init_statistics():
    torch.manual_seed(0)
    m = BertForPreTraining(BertConfig.from_name("mini", vocab_size=3000))
    w = m.bert.blocks[0].mlp.fc.weight
    assert abs(w.std().item() - 0.02 * 0.88) < 0.002  # truncated at 2 std: std shrinks by ~0.88
    assert w.abs().max().item() <= 0.04 + 1e-6
    assert m.bert.embeddings.word.weight[0].abs().sum() == 0  # [PAD] row
    assert m.bert.blocks[0].mlp.fc.bias.abs().sum() == 0


def test_unpadded_path_matches_padded_forward_and_grads():
    """Per-token layers run on the real tokens only; a padded (B, T) run of the same blocks is the reference."""
    torch.manual_seed(0)
    m = BertForPreTraining(tiny(hidden_dropout=0.0, attention_dropout=0.0))
    ids, tt, att = batch(B=4, T=16)
    assert not att.bool().all()  # the unpadded path is taken
    hidden, _ = m.bert(ids, tt, att)
    x = m.bert.embeddings(ids, tt)
    mask = att.bool()[:, None, None, :]
    for block in m.bert.blocks:
        x = block(x, mask)  # no layout: the plain padded computation
    real = att.bool()
    torch.testing.assert_close(hidden[real], x[real])
    g1 = torch.autograd.grad(hidden[real].square().sum(), m.bert.blocks[0].mlp.fc.weight)[0]
    g2 = torch.autograd.grad(x[real].square().sum(), m.bert.blocks[0].mlp.fc.weight)[0]
    torch.testing.assert_close(g1, g2)


@pytest.mark.slow
def test_compiled_matches_eager():
    torch.manual_seed(0)
    m = BertForPreTraining(tiny()).eval()
    ids, tt, att = batch()
    with torch.no_grad():
        eager = m(ids, tt, att)
        m.compile(dynamic=True)
        compiled = m(ids, tt, att)
    real = att.bool()
    torch.testing.assert_close(compiled[0][real], eager[0][real], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(compiled[1], eager[1], rtol=1e-4, atol=1e-4)
