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
