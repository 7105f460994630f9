"""The encoder options beyond BERT (BertConfig: pre_ln, relative_positions, position_embedding, mlp, bias): each
computes what it claims, trains, and refuses to export to a HuggingFace BERT in one line."""

import math

import pytest
import torch
import torch.nn.functional as F

from lit_lm.api import attention_maps
from lit_lm.config import BertConfig
from lit_lm.model import BertForPreTraining, Block, Embeddings, MLP, alibi_slopes, apply_rope, rope_tables

OPTIONS = {
    "pre_ln": dict(pre_ln=True),
    "alibi": dict(relative_positions="alibi", alibi_slope_scale=4.0),
    "alibi_no_positions": dict(relative_positions="alibi", position_embedding="none"),
    "rope": dict(relative_positions="rope"),
    "rope_no_positions": dict(relative_positions="rope", position_embedding="none"),
    "scaled_sinusoidal": dict(position_embedding="sinusoidal"),
    "geglu": dict(mlp="geglu"),
    "no_bias": dict(bias=False),
}


def tiny(**kw) -> BertConfig:
    return BertConfig.from_name("tiny", vocab_size=101, max_position_embeddings=64, **kw)


def test_defaults_are_bert():
    assert BertConfig().non_bert_options() == [] and BertConfig.from_name("tiny").non_bert_options() == []


# ---- pre-LN --------------------------------------------------------------------------------------------------------


def test_pre_ln_keeps_the_residual_path_unnormalised():
    torch.manual_seed(0)
    x = 3.0 * torch.randn(2, 5, 128) + 1.0  # far from unit scale: a LayerNorm on the path would show
    for pre_ln in (True, False):
        block = Block(tiny(pre_ln=pre_ln, hidden_dropout=0.0, attention_dropout=0.0)).eval()
        with torch.no_grad():  # sublayers that output nothing
            for lin in (block.attn.proj, block.mlp.proj):
                lin.weight.zero_()
                lin.bias.zero_()
        y = block(x, None)
        if pre_ln:  # x + 0 + 0: the identity
            torch.testing.assert_close(y, x)
        else:  # post-LN normalises the residual stream itself
            torch.testing.assert_close(y, F.layer_norm(F.layer_norm(x, (128,), eps=1e-12), (128,), eps=1e-12))
    m = BertForPreTraining(tiny(pre_ln=True))
    assert m.bert.ln_f is not None and BertForPreTraining(tiny()).bert.ln_f is None


# ---- ALiBi ----------------------------------------------------------------------------------------------------------


def test_alibi_slopes_follow_the_paper():
    torch.testing.assert_close(alibi_slopes(2), torch.tensor([1 / 16, 1 / 256]))
    torch.testing.assert_close(alibi_slopes(4), torch.tensor([1 / 4, 1 / 16, 1 / 64, 1 / 256]))
    # not a power of two: the slopes of 2 heads, then every other slope of 4 heads
    torch.testing.assert_close(alibi_slopes(3), torch.tensor([1 / 16, 1 / 256, 1 / 4]))
    torch.testing.assert_close(alibi_slopes(2, scale=4.0), torch.tensor([1 / 4, 1 / 64]))


def _attention_by_distance(config: BertConfig, T: int = 48) -> torch.Tensor:
    """Mean attention probability of a query on the key at distance d, (n_head, T) over d, for a random-init model."""
    torch.manual_seed(0)
    m = BertForPreTraining(config).eval()
    ids = torch.randint(5, config.vocab_size, (4, T))
    maps = attention_maps(m.bert, ids)[:, 0]  # (B, nh, T, T), first block
    pos = torch.arange(T)
    dist = (pos[None, :] - pos[:, None]).abs()
    return torch.stack([maps[..., dist == d].mean(dim=(0, 2)) for d in range(T)], dim=1)


def test_alibi_attends_more_to_near_keys_from_the_first_step():
    by_d = _attention_by_distance(tiny(relative_positions="alibi", alibi_slope_scale=4.0))
    # every head: a neighbour gets more attention than a key 20 positions away, by at least the bias exp(m * 19)
    for h, m in enumerate(alibi_slopes(2, 4.0)):
        assert by_d[h, 1] / by_d[h, 20] > 0.9 * math.exp(m * 19), h
    flat = _attention_by_distance(tiny())  # learned positions at init: no preference
    assert (flat[:, 1] / flat[:, 20]).max() < 1.2


def test_alibi_masks_padding_keys():
    torch.manual_seed(0)
    m = BertForPreTraining(tiny(relative_positions="alibi")).eval()
    ids = torch.randint(5, 101, (2, 10))
    att = torch.ones(2, 10, dtype=torch.long)
    att[1, 6:] = 0
    maps = attention_maps(m.bert, ids, attention_mask=att)
    assert maps[1, :, :, :, 6:].abs().max() == 0
    # the real tokens of the padded row compute what the same row alone computes
    mlm, _ = m(ids, attention_mask=att)
    mlm_alone, _ = m(ids[1:, :6])
    torch.testing.assert_close(mlm[1, :6], mlm_alone[0], atol=1e-5, rtol=1e-4)


# ---- RoPE ---------------------------------------------------------------------------------------------------------


def test_rope_scores_depend_on_relative_position_only():
    torch.manual_seed(0)
    T, hs = 20, 16
    q, k = torch.randn(hs), torch.randn(hs)
    cos, sin = rope_tables(T, hs)
    qs = apply_rope(q.expand(1, T, hs), cos, sin)[0]  # the same query vector at every position
    ks = apply_rope(k.expand(1, T, hs), cos, sin)[0]
    scores = qs @ ks.T  # (T, T)
    for shift in (1, 5, 9):
        torch.testing.assert_close(scores[:-shift, :-shift], scores[shift:, shift:], atol=1e-4, rtol=1e-4)
    assert (scores[0] - scores[0, 0]).abs().max() > 1e-2  # but it does depend on the distance
    torch.testing.assert_close((qs * qs).sum(-1), (q * q).sum().expand(T))  # a rotation keeps norms


def test_rope_without_absolute_positions_is_shift_invariant_inside_attention():
    """With positions 'none' and RoPE, shifting the whole input by padding on the left changes nothing a token sees
    of its neighbours: the scores of the first block are the same, moved along the diagonal."""
    torch.manual_seed(0)
    m = BertForPreTraining(tiny(relative_positions="rope", position_embedding="none")).eval()
    ids = torch.randint(5, 101, (1, 12))
    maps = attention_maps(m.bert, ids)[0, 0]  # (nh, T, T)
    shifted = torch.cat([torch.full((1, 3), 7), ids], dim=1)
    maps2 = attention_maps(m.bert, shifted)[0, 0]
    # renormalise the shifted maps over the original 12 keys and compare the logits' pattern
    sub = maps2[:, 3:, 3:]
    torch.testing.assert_close(sub / sub.sum(-1, keepdim=True), maps, atol=1e-5, rtol=1e-4)


def test_odd_head_size_refuses_rope():
    with pytest.raises(ValueError, match="even head size"):
        BertConfig(n_embd=30, n_head=2, relative_positions="rope")


# ---- positions -------------------------------------------------------------------------------------------------


def test_scaled_sinusoids_start_at_the_words_scale():
    torch.manual_seed(0)
    C = 128
    emb = Embeddings(tiny(position_embedding="sinusoidal"))
    assert emb.position_scale.requires_grad and emb.position_scale.item() == pytest.approx(C**-0.5)
    added = emb.position_scale * emb.sinusoids[:64]  # what is added to the word embeddings
    rms = added.pow(2).mean().sqrt().item()
    assert rms == pytest.approx(math.sqrt(0.5) / math.sqrt(C), rel=0.05)  # sin/cos have rms 1/sqrt(2)
    assert rms < 4 * 0.02  # within a few times the words' std (0.02), where unscaled sinusoids are ~35x above it


def test_no_positions_needs_relative_positions():
    with pytest.raises(ValueError, match="needs relative_positions"):
        tiny(position_embedding="none")
    emb = Embeddings(tiny(position_embedding="none", relative_positions="alibi"))
    assert emb.position is None and not hasattr(emb, "sinusoids")


# ---- feed-forward and biases -----------------------------------------------------------------------------------


def test_geglu_is_gelu_gated():
    torch.manual_seed(0)
    mlp = MLP(tiny(mlp="geglu"))
    assert mlp.fc.out_features == 2 * 512
    x = torch.randn(3, 128)
    h = x @ mlp.fc.weight.T + mlp.fc.bias
    expected = (F.gelu(h[:, :512]) * h[:, 512:]) @ mlp.proj.weight.T + mlp.proj.bias
    torch.testing.assert_close(mlp(x), expected)


def test_no_bias_drops_the_block_biases():
    m = BertForPreTraining(tiny(bias=False))
    for block in m.bert.blocks:
        assert all(lin.bias is None for lin in (block.attn.qkv, block.attn.proj, block.mlp.fc, block.mlp.proj))
    n_bias = sum(3 * 128 + 128 + 512 + 128 for _ in range(2))
    assert BertForPreTraining(tiny()).num_parameters() - m.num_parameters() == n_bias


# ---- every option trains and refuses to export ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(OPTIONS))
def test_option_trains(name):
    torch.manual_seed(0)
    config = tiny(hidden_dropout=0.0, attention_dropout=0.0, **OPTIONS[name])
    m = BertForPreTraining(config)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 101, (8, 24), generator=g)
    att = torch.ones_like(ids)
    att[::2, 18:] = 0  # some padding, so the unpadded path runs too
    masked = (torch.rand(8, 24, generator=g) < 0.3) & att.bool()
    inputs = ids.masked_fill(masked, 4)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        logits, _ = m(inputs, attention_mask=att, masked_positions=masked)
        loss = F.cross_entropy(logits, ids[masked])
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None for n, p in m.named_parameters() if "nsp_head" not in n and "pooler" not in n), name
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], (name, losses[0], losses[-1])


@pytest.mark.parametrize("name", list(OPTIONS))
def test_option_refuses_hf_export_in_one_line(name):
    config = tiny(**OPTIONS[name])
    with pytest.raises(ValueError) as e:
        config.to_hf_dict()
    message = str(e.value)
    assert "\n" not in message and "HuggingFace BERT cannot represent" in message
    assert all(f"{k}=" in message for k, v in OPTIONS[name].items() if k != "alibi_slope_scale"), message
