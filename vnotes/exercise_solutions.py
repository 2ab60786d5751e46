"""Reference solutions of the book's implement exercises (checked by :mod:`vnotes.exercises`).

A page shows one with ``show_solution("name")``; nothing here is ever run into a reader's notebook.
Each is written the way the exercise asks, with plain tensor operations, so it can be read next to
the book's full implementation it mirrors (named in each docstring).
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "adam_step",
    "warmup_cosine",
    "clip_grad_norm",
    "masked_attention",
    "split_heads",
    "causal_mask",
    "sinusoidal_position_encoding",
    "inverted_dropout",
    "adamw_step",
]


def adam_step(param, grad, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    """One Adam step with bias correction (Kingma & Ba, 2014).

    Chapter 1; the book's version is ``vnotes.optim.Adam``.
    """
    b1, b2 = betas
    # m_t = b1 m_{t-1} + (1 - b1) g_t;  v_t = b2 v_{t-1} + (1 - b2) g_t^2
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad**2
    # both start at 0: undo their pull towards 0 (bias correction)
    m_hat = m / (1 - b1**t)
    v_hat = v / (1 - b2**t)
    param = param - lr * m_hat / (v_hat.sqrt() + eps)
    return param, m, v


def warmup_cosine(t, warmup, total, base_lr):
    """Linear warm-up (Goyal et al., 2017), then cosine decay to 0
    (Loshchilov & Hutter, 2017).

    Chapter 1; the book's version is ``vnotes.optim.WarmupCosine``.
    """
    if t < warmup:
        return base_lr * t / warmup
    if t >= total:
        return 0.0
    progress = (t - warmup) / (total - warmup)  # 0 -> 1 over the decay
    return base_lr * 0.5 * (1 + math.cos(math.pi * progress))


def clip_grad_norm(grads, max_norm):
    """Scale all gradients by min(1, max_norm / ||g||), with ||g|| the norm
    of all of them together (Pascanu et al., 2013).

    Chapter 1; ``vnotes.fit(..., clip_grad_norm=c)`` calls PyTorch's
    ``torch.nn.utils.clip_grad_norm_``.
    """
    # one norm over all the tensors together
    total = torch.sqrt(sum((g**2).sum() for g in grads))
    scale = min(1.0, max_norm / (float(total) + 1e-6))
    return [g * scale for g in grads]


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


def inverted_dropout(x, p, training=True):
    """Zero each entry with probability p in training and scale the
    survivors by 1/(1-p); the identity in evaluation (Srivastava et al., 2014).

    Chapter 2a; the book's version is ``vnotes.regularization.dropout``.
    """
    if not training or p == 0.0:
        return x  # test time: the full network, nothing to rescale
    if p == 1.0:
        return torch.zeros_like(x)  # every unit dropped (and no 1/0)
    # m_i ~ Bernoulli(1 - p), one draw per entry: 1 keeps, 0 drops
    keep = (torch.rand_like(x) >= p).to(x.dtype)
    # E[x_i m_i / (1 - p)] = x_i: the mean is kept
    return x * keep / (1.0 - p)


def adamw_step(
    param,
    grad,
    m,
    v,
    t,
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=1e-2,
):
    """One AdamW step: Adam with decoupled weight decay
    (Loshchilov & Hutter, 2019).

    Chapter 2a; the book trains with ``torch.optim.AdamW``.
    """
    b1, b2 = betas
    # the decay acts on the weights, outside the adaptive step:
    # w <- w - lr * lambda * w  (the gradient never sees it)
    param = param * (1 - lr * weight_decay)
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad**2
    m_hat = m / (1 - b1**t)
    v_hat = v / (1 - b2**t)
    param = param - lr * m_hat / (v_hat.sqrt() + eps)
    return param, m, v
