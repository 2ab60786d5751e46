"""Chapter 1 (optimization): reference solutions."""

from __future__ import annotations

import math

import torch

__all__ = ["adam_step", "warmup_cosine", "clip_grad_norm"]


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
