"""The BERT encoder, top to bottom: embeddings -> attention -> MLP -> block -> encoder -> heads.

Semantics follow BERT (Devlin et al., 2019) and HuggingFace ``BertForPreTraining`` exactly (post-LN blocks,
learned absolute positions, erf GELU, tanh pooler, decoder tied to the word embeddings with its own bias), so
that converted weights give the same logits (tests/test_convert.py). Attention goes through
``F.scaled_dot_product_attention``; the MLM head can predict only the masked positions (sparse prediction, as
NVIDIA's BERT recipe and Cramming do), which removes most of the vocabulary projection's work.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from lit_lm.config import BertConfig


def sinusoidal_positions(n_pos: int, dim: int) -> torch.Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)) (Vaswani et al., 2017)."""
    pos = torch.arange(n_pos, dtype=torch.float64)[:, None]  # (P, 1)
    inv_freq = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (ceil(d/2),)
    pe = torch.zeros(n_pos, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * inv_freq)
    pe[:, 1::2] = torch.cos(pos * inv_freq[: dim // 2])
    return pe.float()


class Embeddings(nn.Module):
    """Word + position + segment embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        C = config.n_embd
        self.word = nn.Embedding(config.padded_vocab_size, C, padding_idx=config.pad_token_id)
        if config.position_embedding == "learned":
            self.position = nn.Embedding(config.max_position_embeddings, C)
        else:  # fixed table: a buffer, not a parameter, and rebuilt from the formula rather than saved
            self.position = None
            self.register_buffer("sinusoids", sinusoidal_positions(config.max_position_embeddings, C), persistent=False)
        self.token_type = nn.Embedding(config.type_vocab_size, C)
        self.ln = nn.LayerNorm(C, eps=config.layer_norm_eps)
        self.drop = nn.Dropout(config.hidden_dropout)
        self.max_positions = config.max_position_embeddings

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        T = input_ids.shape[1]
        if T > self.max_positions:
            raise ValueError(f"sequence length {T} exceeds max_position_embeddings={self.max_positions}")
        pos = self.position.weight[:T] if self.position is not None else self.sinusoids[:T]  # (T, C)
        x = self.word(input_ids) + pos + self.token_type(token_type_ids)  # (B, T, C)
        return self.drop(self.ln(x))


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused q/k/v projection and SDPA."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.n_head, self.n_embd = config.n_head, config.n_embd
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.attn_dropout = config.attention_dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, layout: "Unpadded | None" = None) -> torch.Tensor:
        C = self.n_embd
        qkv = self.qkv(x)  # (B, T, 3C), or (N, 3C) for the N real tokens of an unpadded batch
        if layout is not None:
            qkv = layout.pad(qkv)  # (B, T, 3C); pad rows are zeros and are masked out as keys
        B, T, _ = qkv.shape
        q, k, v = qkv.split(C, dim=-1)  # (B, T, C) each
        q = q.view(B, T, self.n_head, -1).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, -1).transpose(1, 2)
        v = v.view(B, T, self.n_head, -1).transpose(1, 2)
        p = self.attn_dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        if layout is not None:
            y = layout.unpad(y)  # (N, C)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.n_embd, config.intermediate_size)
        self.proj = nn.Linear(config.intermediate_size, config.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    """Post-LN transformer block, as in BERT: x = LN(x + Drop(Attn(x))); x = LN(x + Drop(MLP(x)))."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attn = SelfAttention(config)
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.mlp = MLP(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.drop = nn.Dropout(config.hidden_dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, layout: "Unpadded | None" = None) -> torch.Tensor:
        x = self.ln_1(x + self.drop(self.attn(x, mask, layout)))
        return self.ln_2(x + self.drop(self.mlp(x)))


class Unpadded:
    """Where the real tokens of a padded (B, T) batch sit, to run every per-token layer on those alone.

    All layers but attention treat tokens independently, so they run on the (N, C) real tokens and padding
    costs them nothing (as NVIDIA's and MosaicML's BERT recipes do); attention pads back to (B, T) around SDPA.
    """

    def __init__(self, attention_mask: torch.Tensor) -> None:
        self.B, self.T = attention_mask.shape
        self.index = attention_mask.reshape(-1).nonzero().squeeze(1)  # (N,) flat positions of real tokens

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(self.B * self.T, -1)[self.index]  # (B, T, D) -> (N, D)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros(self.B * self.T, x.shape[-1]).index_copy(0, self.index, x)  # (B*T, D)
        return out.view(self.B, self.T, -1)  # (B, T, D)


class BertModel(nn.Module):
    """Embeddings, ``n_layer`` blocks and the tanh pooler over the [CLS] position."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.pooler = nn.Linear(config.n_embd, config.n_embd)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns hidden states (B, T, C) and the pooled [CLS] vector (B, C)."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        mask = layout = None
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, C)
        if attention_mask is not None:
            mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T): True = attend to this key
            if not mask.all():
                layout = Unpadded(attention_mask)
                x = layout.unpad(x)  # (N, C)
        for block in self.blocks:
            x = block(x, mask, layout)
        if layout is not None:
            x = layout.pad(x)  # (B, T, C); pad positions hold zeros
        pooled = torch.tanh(self.pooler(x[:, 0]))
        return x, pooled


class MLMHead(nn.Module):
    """Dense + GELU + LayerNorm, then the decoder tied to the word embeddings, plus its own bias."""

    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        self.dense = nn.Linear(config.n_embd, config.n_embd)
        self.ln = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.padded_vocab_size))
        self.decoder_weight = word_embeddings.weight  # tied: one Parameter, two names
        self.vocab_size = config.vocab_size

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.ln(F.gelu(self.dense(h)))
        logits = F.linear(h, self.decoder_weight, self.bias)  # (..., padded V)
        return logits[..., : self.vocab_size] if logits.shape[-1] != self.vocab_size else logits


def init_weights(model: nn.Module, std: float) -> None:
    """BERT's initialisation: truncated normal(std) weights as in the original TF release
    (truncated_normal_initializer), zero biases, unit LayerNorm, a zero [PAD] embedding row."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class BertForPreTraining(nn.Module):
    """The encoder with the MLM and NSP heads of BERT pretraining."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.mlm_head = MLMHead(config, self.bert.embeddings.word)
        self.nsp_head = nn.Linear(config.n_embd, 2)
        init_weights(self, config.initializer_range)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        masked_positions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(mlm_logits, nsp_logits)``.

        With ``masked_positions`` (bool (B, T)) only those positions reach the vocabulary projection and
        ``mlm_logits`` is (n_masked, V), in row-major order of the mask; without it, (B, T, V).
        """
        x, pooled = self.bert(input_ids, token_type_ids, attention_mask)
        if masked_positions is not None:
            x = x[masked_positions]  # (n_masked, C)
        return self.mlm_head(x), self.nsp_head(pooled)

    def num_parameters(self, non_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            emb = self.bert.embeddings
            n -= sum(m.weight.numel() for m in (emb.word, emb.position, emb.token_type) if m is not None)
        return n
