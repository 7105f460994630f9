"""The arithmetic of a pretraining step: what TokenThroughput divides by time to log FLOP/s and MFU."""

from __future__ import annotations

from typing import Optional

from lit_lm.config import BertConfig


def training_flops(config: BertConfig, n_tokens: int, seq_len: int, n_predicted: int, n_query_rows: Optional[int] = None) -> int:
    """FLOPs of one forward + backward pass (3x the forward's multiply-adds x 2), counting the work done.

    Per real token through the blocks: 6 * N_blocks (every block weight used once per token; the embeddings are
    lookups, and padding skips the per-token layers, see model.Unpadded). Per attention query row: 12 * L * T * d
    (QK^T and AV over the T keys of the padded sequence; SDPA runs on the padded (B, T) layout, so
    ``n_query_rows`` = B * T, default ``n_tokens``). Per predicted token: 6 * (d * d + d * V) for the MLM transform
    and the vocabulary projection. The pooler and NSP head (one [CLS] per sequence) are left out: under 0.1% of the
    total at T = 128.
    """
    d, L_, V = config.n_embd, config.n_layer, config.vocab_size
    n_mlp = (3 if config.mlp == "geglu" else 2) * d * config.intermediate_size  # GEGLU's first matrix is 2x wide
    n_blocks = L_ * (4 * d * d + n_mlp)  # q, k, v, o + the MLP matrices
    rows = n_tokens if n_query_rows is None else n_query_rows
    return 6 * n_blocks * n_tokens + 12 * L_ * seq_len * d * rows + 6 * (d * d + d * V) * n_predicted
