"""The BERT encoder, top to bottom: embeddings -> attention -> MLP -> block -> encoder -> heads.

Semantics follow BERT (Devlin et al., 2019) and HuggingFace ``BertForPreTraining`` exactly (post-LN blocks,
learned absolute positions, erf GELU, tanh pooler, decoder tied to the word embeddings with its own bias), so
that converted weights give the same logits (tests/test_convert.py). Attention goes through
``F.scaled_dot_product_attention``; the MLM head can predict only the masked positions (sparse prediction, as
NVIDIA's BERT recipe and Cramming do), which removes most of the vocabulary projection's work.

The options of later encoders (BertConfig: pre_ln, relative_positions alibi/rope, scaled sinusoidal or no absolute
positions, mlp geglu, bias) are small branches at the one place each acts on; with their defaults the model is BERT.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

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


def alibi_slopes(n_head: int, scale: float = 1.0) -> torch.Tensor:
    """ALiBi's per-head slopes (Press et al., 2022): 2^(-8(h+1)/n) for n a power of two; otherwise those of the
    nearest lower power of two, completed by every other slope of the next one (the paper's rule); times ``scale``."""

    def geometric(n: int) -> list[float]:
        return [2.0 ** (-8.0 * (h + 1) / n) for h in range(n)]

    p = 2 ** int(math.floor(math.log2(n_head)))
    slopes = geometric(p) + geometric(2 * p)[0::2][: n_head - p]
    return torch.tensor(slopes) * scale


def rope_tables(T: int, head_size: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles pos / 10000^(2i/hs) (Su et al., 2021), each (T, hs), in the
    half-rotation layout (dimension i pairs with i + hs/2, as GPT-NeoX and ModernBERT)."""
    inv_freq = 10000.0 ** (-torch.arange(0, head_size, 2, device=device, dtype=torch.float32) / head_size)  # (hs/2,)
    angles = torch.arange(T, device=device, dtype=torch.float32)[:, None] * inv_freq  # (T, hs/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, hs)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (..., T, hs) queries or keys by their positions: q_i . k_j then depends on i - j only."""
    x1, x2 = x.chunk(2, dim=-1)
    return (x * cos + torch.cat([-x2, x1], dim=-1) * sin).to(x.dtype)


class Embeddings(nn.Module):
    """Word + position + segment embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        C = config.n_embd
        self.word = nn.Embedding(config.padded_vocab_size, C, padding_idx=config.pad_token_id)
        self.position = nn.Embedding(config.max_position_embeddings, C) if config.position_embedding == "learned" else None
        if config.position_embedding == "sinusoidal":
            # a fixed table (a buffer rebuilt from the formula, not saved) times a learned scale starting at
            # 1/sqrt(C), so positions start at the words' magnitude instead of ~35x above it (Cramming)
            self.register_buffer("sinusoids", sinusoidal_positions(config.max_position_embeddings, C), persistent=False)
            self.position_scale = nn.Parameter(torch.tensor(C**-0.5))
        self.kind = config.position_embedding
        self.token_type = nn.Embedding(config.type_vocab_size, C)
        self.ln = nn.LayerNorm(C, eps=config.layer_norm_eps)
        self.drop = nn.Dropout(config.hidden_dropout)
        self.max_positions = config.max_position_embeddings

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        T = input_ids.shape[1]
        if T > self.max_positions:
            raise ValueError(f"sequence length {T} exceeds max_position_embeddings={self.max_positions}")
        x = self.word(input_ids) + self.token_type(token_type_ids)  # (B, T, C)
        if self.kind == "learned":
            x = x + self.position.weight[:T]  # (T, C), broadcast over the batch
        elif self.kind == "sinusoidal":
            x = x + self.position_scale * self.sinusoids[:T]
        return self.drop(self.ln(x))


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused q/k/v projection and SDPA."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.n_head, self.n_embd = config.n_head, config.n_embd
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = config.attention_dropout

    def heads(self, x: torch.Tensor, layout: "Unpadded | None" = None, rope: "tuple[torch.Tensor, torch.Tensor] | None" = None):
        """Queries, keys and values, (B, nh, T, hs) each, with the rotary positions applied when ``rope`` is given."""
        qkv = self.qkv(x)  # (B, T, 3C), or (N, 3C) for the N real tokens of an unpadded batch
        if layout is not None:
            qkv = layout.pad(qkv)  # (B, T, 3C); pad rows are zeros and are masked out as keys
        B, T, _ = qkv.shape
        q, k, v = qkv.split(self.n_embd, dim=-1)  # (B, T, C) each
        q = q.view(B, T, self.n_head, -1).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, -1).transpose(1, 2)
        v = v.view(B, T, self.n_head, -1).transpose(1, 2)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        return q, k, v

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, layout: "Unpadded | None" = None,
                rope: "tuple[torch.Tensor, torch.Tensor] | None" = None) -> torch.Tensor:
        q, k, v = self.heads(x, layout, rope)
        B, _, T, _ = q.shape
        if mask is not None and mask.is_floating_point():
            mask = mask.to(q.dtype)  # ALiBi's float bias must match q under autocast
        p = self.attn_dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, self.n_embd)  # (B, T, C)
        if layout is not None:
            y = layout.unpad(y)  # (N, C)
        return self.proj(y)


class MLP(nn.Module):
    """GELU(x W1) W2 as BERT, or with ``mlp='geglu'`` (GELU(x W) * x V) W2 (Shazeer, 2020)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.glu = config.mlp == "geglu"
        self.fc = nn.Linear(config.n_embd, (2 if self.glu else 1) * config.intermediate_size, bias=config.bias)
        self.proj = nn.Linear(config.intermediate_size, config.n_embd, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)  # (..., I), or (..., 2I) for GEGLU
        if self.glu:
            h, gate = h.chunk(2, dim=-1)  # (..., I) each
            return self.proj(F.gelu(h) * gate)
        return self.proj(F.gelu(h))


class Block(nn.Module):
    """Post-LN transformer block, as in BERT: x = LN(x + Drop(Attn(x))); x = LN(x + Drop(MLP(x))).
    With ``pre_ln``: x = x + Drop(Attn(LN(x))); x = x + Drop(MLP(LN(x))), the residual path left unnormalised."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attn = SelfAttention(config)
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.mlp = MLP(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.drop = nn.Dropout(config.hidden_dropout)
        self.pre_ln = config.pre_ln

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, layout: "Unpadded | None" = None,
                rope: "tuple[torch.Tensor, torch.Tensor] | None" = None) -> torch.Tensor:
        if self.pre_ln:
            x = x + self.drop(self.attn(self.ln_1(x), mask, layout, rope))
            return x + self.drop(self.mlp(self.ln_2(x)))
        x = self.ln_1(x + self.drop(self.attn(x, mask, layout, rope)))
        return self.ln_2(x + self.drop(self.mlp(x)))


class Unpadded:
    """Where the real tokens of a padded (B, T) batch sit, to run every per-token layer on those alone.

    All layers but attention treat tokens independently, so they run on the (N, C) real tokens and padding
    costs them nothing (as NVIDIA's and MosaicML's BERT recipes do); attention pads back to (B, T) around SDPA.
    ``index`` holds the flat positions b * T + t of the real tokens, then filler entries equal to B * T up to a
    bucketed size (data_modules/shapes.py): the filler rows read a padding position, are computed like any token, and
    are written to a spare row that ``pad`` drops, so they never reach a real token or a gradient.
    """

    def __init__(self, index: torch.Tensor, B: int, T: int) -> None:
        self.B, self.T, self.index = B, T, index  # (N,)
        self.read = index.clamp(max=B * T - 1)  # filler reads the last position (padding, or a real token: harmless)

    @classmethod
    def from_mask(cls, attention_mask: torch.Tensor) -> "Unpadded":
        """From the mask alone, for callers without the collator's ``token_index`` (``nonzero`` waits for the device:
        fine at inference, not in a training step)."""
        B, T = attention_mask.shape
        return cls(attention_mask.reshape(-1).nonzero().squeeze(1), B, T)

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(self.B * self.T, -1).index_select(0, self.read)  # (B, T, D) -> (N, D)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros(self.B * self.T + 1, x.shape[-1]).index_copy(0, self.index, x)  # (B*T + 1, D): + spare row
        return out[:-1].view(self.B, self.T, -1)  # (B, T, D); pad positions hold zeros


class BertModel(nn.Module):
    """Embeddings, ``n_layer`` blocks (and a final LayerNorm for pre-LN) and the tanh pooler over [CLS]."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps) if config.pre_ln else None
        self.pooler = nn.Linear(config.n_embd, config.n_embd)
        if config.relative_positions == "alibi":
            self.register_buffer("alibi", alibi_slopes(config.n_head, config.alibi_slope_scale), persistent=False)

    def attention_inputs(self, attention_mask: torch.Tensor | None, T: int, device: torch.device):
        """What every block's attention takes besides x: the mask (None, bool (B, 1, 1, T) over keys, or with ALiBi
        the float bias (1 or B, nh, T, T) with padded keys at -inf) and the rotary tables (or None)."""
        mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]  # True = attend
        rope = rope_tables(T, self.config.head_size, device) if self.config.relative_positions == "rope" else None
        if self.config.relative_positions == "alibi":
            pos = torch.arange(T, device=device)
            distance = (pos[None, :] - pos[:, None]).abs()  # (T, T)
            bias = -self.alibi[:, None, None] * distance  # (nh, T, T)
            mask = bias[None] if mask is None else bias[None].masked_fill(~mask, float("-inf"))  # (B, nh, T, T)
        return mask, rope

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns hidden states (B, T, C) and the pooled [CLS] vector (B, C). ``token_index``: the real tokens'
        flat positions as the collators give them (data_modules/shapes.py), so that nothing here waits for the
        device; without it they are found from ``attention_mask``."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        B, T = input_ids.shape
        layout = None
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, C)
        mask, rope = self.attention_inputs(attention_mask, T, input_ids.device)
        if token_index is not None:
            if token_index.shape[0] < B * T:  # a shape: known on the host
                layout = Unpadded(token_index, B, T)
        elif attention_mask is not None and not attention_mask.all():
            layout = Unpadded.from_mask(attention_mask)
        if layout is not None:
            x = layout.unpad(x)  # (N, C)
        for block in self.blocks:
            x = block(x, mask, layout, rope)
        if self.ln_f is not None:
            x = self.ln_f(x)
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
        token_index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(mlm_logits, nsp_logits)``.

        With ``masked_positions`` only those positions reach the vocabulary projection and ``mlm_logits`` is
        (n_masked, V): a bool (B, T) mask (rows in its row-major order), or the flat positions (M,) the collator
        lists (``masked_index``, data_modules/shapes.py; no device sync). Without it, (B, T, V).
        """
        x, pooled = self.bert(input_ids, token_type_ids, attention_mask, token_index)
        if masked_positions is not None and masked_positions.dtype == torch.bool:
            x = x[masked_positions]  # (n_masked, C)
        elif masked_positions is not None:
            x = x.reshape(-1, x.shape[-1]).index_select(0, masked_positions)  # (B*T, C) -> (M, C)
        return self.mlm_head(x), self.nsp_head(pooled)

    def num_parameters(self, non_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            emb = self.bert.embeddings
            n -= sum(m.weight.numel() for m in (emb.word, emb.position, emb.token_type) if m is not None)
        return n


Pooling = Literal["cls", "mean"]
"""How BertForSequenceClassification sums a sequence up: BERT's tanh pooler over [CLS], or the masked mean."""
POOLINGS: tuple[str, ...] = get_args(Pooling)


class BertForSequenceClassification(nn.Module):
    """The encoder with BERT's fine-tuning head (Devlin et al., 2019, section 4.1; HF's
    ``BertForSequenceClassification``): the pooled [CLS] vector -> dropout -> one linear layer.

    ``pooling="mean"`` replaces the pooled [CLS] vector by the mean of the last layer's hidden states over the
    non-padding tokens ([CLS] and [SEP] included), as Sentence-BERT (Reimers and Gurevych, 2019) and the Keras
    pretraining guide do; the tanh pooler is then unused (frozen, so DDP waits for no gradient of it and AdamW leaves
    it as loaded)."""

    def __init__(self, config: BertConfig, num_labels: int, classifier_dropout: float = 0.1,
                 pooling: Pooling = "cls") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling={pooling!r}: expected one of {', '.join(POOLINGS)}")
        self.config = config
        self.pooling = pooling
        self.bert = BertModel(config)
        self.dropout = nn.Dropout(classifier_dropout)
        self.classifier = nn.Linear(config.n_embd, num_labels)
        init_weights(self, config.initializer_range)
        if pooling == "mean":
            self.bert.pooler.requires_grad_(False)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, num_labels); for regression (num_labels = 1, STS-B) the scores are ``logits[:, 0]``."""
        x, pooled = self.bert(input_ids, token_type_ids, attention_mask, token_index)  # (B, T, C), (B, C)
        if self.pooling == "mean":
            if attention_mask is None:
                pooled = x.mean(1)  # (B, C)
            else:
                keep = attention_mask[:, :, None].float()  # (B, T, 1); summed in fp32 under bf16 autocast
                pooled = ((x.float() * keep).sum(1) / keep.sum(1).clamp(min=1)).to(x.dtype)  # (B, C)
        return self.classifier(self.dropout(pooled))
