"""Chapter 2 (regularization): reference solutions."""

from __future__ import annotations


import torch

__all__ = ["inverted_dropout", "adamw_step", "batchnorm2d", "ensemble_average"]


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


def batchnorm2d(
    x,
    running_mean,
    running_var,
    gamma,
    beta,
    training=True,
    momentum=0.1,
    eps=1e-5,
):
    """Batch normalisation of [B, C, H, W] maps (Ioffe & Szegedy, 2015),
    returning (y, running_mean, running_var) as nn.BatchNorm2d updates them.

    Chapter 2b; the book's version is ``vnotes.regularization.BatchNorm2d``.
    """
    shape = (1, -1, 1, 1)  # one value per channel, broadcast over B, H, W
    if training:
        dims = (0, 2, 3)  # every axis but the channels
        n = x.numel() // x.shape[1]  # values per channel, B*H*W
        mean = x.mean(dim=dims)
        var = x.var(dim=dims, unbiased=False)  # biased: what normalises
        # running_var stores the unbiased estimate, n/(n-1) times larger
        unbiased = var * n / max(n - 1, 1)
        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var = (1 - momentum) * running_var + momentum * unbiased
    else:
        mean, var = (
            running_mean,
            running_var,
        )  # no batch statistics at test time
    x_hat = (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + eps)
    y = gamma.reshape(shape) * x_hat + beta.reshape(shape)  # scale, shift
    return y, running_mean, running_var


def ensemble_average(logits):
    """[M, N, K] members' logits -> [N, K]: the mean of the members'
    probabilities (Breiman, 1996; Lakshminarayanan et al., 2017).

    Chapter 2b; the book's version is ``vnotes.regularization.ensemble_probs``.
    """
    probs = torch.softmax(logits, dim=-1)  # each member's distribution over K
    return probs.mean(dim=0)  # average over the members, not over the logits
