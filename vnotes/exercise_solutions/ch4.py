"""Chapter 4 (attention): reference solutions."""

from __future__ import annotations

import math

import torch

__all__ = [
    "masked_attention",
    "split_heads",
    "causal_mask",
    "sinusoidal_position_encoding",
]


def masked_attention(q, k, v, mask):
    """softmax(Q K^T / sqrt(d_k)) V, where mask True = may attend
    (Vaswani et al., 2017).

    Chapter 4; the book's version is
    ``vnotes.transformer.scaled_dot_product_attention``.
    """
    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # [B, H, L, S]
    # a blocked key gets weight exp(-inf) = 0
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # over the keys, per query
    return weights @ v  # [B, H, L, d_v]


def split_heads(x, num_heads):
    """[B, L, d] -> [B, heads, L, d/heads]: each head gets its own slice of
    the channels (Vaswani et al., 2017).

    Chapter 4a; the book's version is
    ``vnotes.transformer.MultiHeadAttention._split_heads``.
    """
    B, L, d = x.shape
    head_dim = d // num_heads
    # cut the channels into heads: [B, L, heads, d/heads]
    x = x.reshape(B, L, num_heads, head_dim)
    # heads next to the batch, so each head attends on its own: [B, heads, L, d/heads]
    return x.transpose(1, 2)


def causal_mask(length):
    """Boolean [L, L] mask, True where query i may attend to key j <= i
    (Vaswani et al., 2017).

    Chapter 4a; the book's version is ``vnotes.transformer.causal_mask``.
    """
    i = torch.arange(length)[:, None]  # query positions, a column
    j = torch.arange(length)[None, :]  # key positions, a row
    return j <= i  # no peeking ahead


def sinusoidal_position_encoding(length, dim):
    """PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(p / 10000^(2i/d))
    (Vaswani et al., 2017).

    Chapter 4a; the book's version is
    ``vnotes.transformer.sinusoidal_position_encoding``.
    """
    position = torch.arange(length, dtype=torch.float32)[:, None]  # [L, 1]
    two_i = torch.arange(0, dim, 2, dtype=torch.float32)  # 0, 2, 4, ...
    omega = 10000.0 ** (-two_i / dim)  # [d/2], one frequency per pair
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(position * omega)  # even dimensions
    pe[:, 1::2] = torch.cos(position * omega)  # odd dimensions
    return pe
