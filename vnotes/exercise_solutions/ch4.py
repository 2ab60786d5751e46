"""Chapter 4 (attention): reference solutions."""

from __future__ import annotations

import math

import torch

__all__ = [
    "masked_attention",
    "split_heads",
    "causal_mask",
    "sinusoidal_position_encoding",
    "lstm_cell_step",
    "gru_cell_step",
    "kv_cache_attention",
    "patchify",
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


def lstm_cell_step(x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One LSTM step (Hochreiter & Schmidhuber, 1997; forget gate: Gers et
    al., 2000), gates stacked as PyTorch stacks them: i, f, g, o.

    Chapter 4; the book's version is ``vnotes.recurrent.lstm_cell``.
    """
    gates = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh  # [B, 4H]
    i, f, g, o = gates.chunk(4, dim=-1)  # four blocks of H columns
    i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
    g = torch.tanh(g)  # the candidate, in (-1, 1)
    c_new = f * c + i * g  # keep part of the old cell, add part of the new
    h_new = o * torch.tanh(c_new)  # what the cell shows
    return h_new, c_new


def gru_cell_step(x, h, w_ih, w_hh, b_ih, b_hh):
    """One GRU step (Cho et al., 2014) as PyTorch computes it: gates r, z, n,
    the reset gate applied to W_hn h + b_hn.

    Chapter 4; the book's version is ``vnotes.recurrent.gru_cell``.
    """
    x_r, x_z, x_n = (x @ w_ih.T + b_ih).chunk(3, dim=-1)  # input's share
    h_r, h_z, h_n = (h @ w_hh.T + b_hh).chunk(3, dim=-1)  # state's share
    r = torch.sigmoid(x_r + h_r)  # reset gate
    z = torch.sigmoid(x_z + h_z)  # update gate
    n = torch.tanh(x_n + r * h_n)  # candidate
    return (1 - z) * n + z * h  # z near 1 keeps the old state


def kv_cache_attention(q, k_new, v_new, k_cache, v_cache):
    """One decoding step with a KV cache: append the new keys and values,
    then let the L new queries (the last L positions) attend causally.

    Chapter 4b; the book's version is ``vnotes.transformer.KVCache`` inside
    ``MultiHeadAttention``.
    """
    k_cache = torch.cat([k_cache, k_new], dim=-2)  # [B, H, S, d_k], in order
    v_cache = torch.cat([v_cache, v_new], dim=-2)
    L, S = q.shape[-2], k_cache.shape[-2]
    scores = q @ k_cache.transpose(-2, -1) / math.sqrt(q.shape[-1])
    # query i is position S - L + i: it sees keys j <= i + S - L (bottom-right)
    i = torch.arange(L)[:, None]
    j = torch.arange(S)[None, :]
    scores = scores.masked_fill(j > i + S - L, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v_cache, k_cache, v_cache


def patchify(images, patch_size):
    """[B, C, H, W] -> [B, N, P*P*C]: P x P patches row by row over the grid,
    each flattened row by row with a pixel's channels side by side
    (Dosovitskiy et al., 2020).

    Chapter 4c; the book's version is ``vnotes.transformer.PatchEmbedding``.
    """
    B, C, H, W = images.shape
    P = patch_size
    gh, gw = H // P, W // P  # the grid of patches
    x = images.reshape(B, C, gh, P, gw, P)  # split each axis: (grid, within)
    x = x.permute(0, 2, 4, 3, 5, 1)  # [B, gh, gw, P, P, C]
    return x.reshape(B, gh * gw, P * P * C)  # one row per patch
