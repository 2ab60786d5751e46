"""Chapter 5, pages 5a-5e (self-supervised learning): reference solutions."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "nt_xent_loss",
    "moco_enqueue",
    "byol_target_update",
    "byol_momentum",
    "sinkhorn_codes",
    "dino_teacher_targets",
]


def nt_xent_loss(z1, z2, temperature):
    """SimCLR's NT-Xent (Chen et al., 2020, Eq. 1): each of the 2N views
    must pick its partner among the 2N - 1 other views.

    Chapter 5a; the book's version is ``vnotes.ssl.nt_xent``.
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # [2N, D], unit rows
    logits = z @ z.T / temperature  # cosine similarities / tau, [2N, 2N]
    # a view is not its own negative: exp(-inf) = 0 in the denominator
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    # view i's partner is view i + N (and the other way round)
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(logits, partner.to(z.device))  # mean over 2N


def moco_enqueue(queue, ptr, keys):
    """MoCo's dictionary (He et al., 2020): the new keys overwrite the oldest
    slots of a ring buffer, from slot ``ptr`` on, wrapping past the end.

    Chapter 5b; the book's version is ``vnotes.ssl.MoCo.enqueue``.
    """
    K, n = queue.shape[0], keys.shape[0]
    queue = queue.clone()
    slots = (ptr + torch.arange(n)) % K  # the n oldest slots, wrapped
    queue[slots] = keys.detach().to(queue.dtype)
    return queue, (ptr + n) % K  # the next oldest slot


def byol_target_update(target, online, tau):
    """BYOL's target network (Grill et al., 2020):
    xi <- tau * xi + (1 - tau) * theta, in place, outside autograd.

    Chapter 5c; the book's version is ``vnotes.train.ema_update``.
    """
    with torch.no_grad():
        for xi, theta in zip(target.parameters(), online.parameters()):
            xi.mul_(tau).add_(
                theta, alpha=1 - tau
            )  # a small step towards theta
    return target


def byol_momentum(step, total_steps, base_momentum):
    """BYOL's momentum schedule (Grill et al., 2020):
    tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2, held at 1 after K.

    Chapter 5c; the book's version is ``vnotes.ssl.methods.cosine_schedule``.
    """
    progress = min(step, total_steps) / total_steps  # 0 -> 1
    return 1 - (1 - base_momentum) * (math.cos(math.pi * progress) + 1) / 2


def sinkhorn_codes(scores, epsilon, iterations):
    """SwAV's codes (Caron et al., 2020; Cuturi, 2013): exp(scores / eps),
    rescaled so every prototype gets B/K of the batch and every sample 1.

    Chapter 5d; the book's version is ``vnotes.ssl.sinkhorn_knopp``.
    """
    B, K = scores.shape
    logits = scores.float() / epsilon
    Q = torch.exp(logits - logits.max())  # the max cancels out; no overflow
    Q = Q / Q.sum()  # total mass 1
    for _ in range(iterations):
        Q = Q / Q.sum(dim=0, keepdim=True) / K  # each prototype: 1/K
        Q = Q / Q.sum(dim=1, keepdim=True) / B  # each sample: 1/B
    return Q * B  # rows: distributions over the K prototypes


def dino_teacher_targets(teacher_out, center, teacher_temp, center_momentum):
    """DINO's teacher side (Caron et al., 2021): centre, then sharpen with a
    low temperature; then move the centre towards this batch's mean.

    Chapter 5e; the book's version is in ``vnotes.ssl.dino_loss`` and
    ``vnotes.ssl.DINO.update_center``.
    """
    # the targets use the centre from before this batch
    targets = torch.softmax((teacher_out - center) / teacher_temp, dim=-1)
    batch_mean = teacher_out.mean(dim=0, keepdim=True)  # [1, K]
    new_center = center_momentum * center + (1 - center_momentum) * batch_mean
    return targets, new_center
