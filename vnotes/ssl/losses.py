"""The objectives of self-supervised learning (chapter 5, 对比学习 / 自监督), written from their equations.

* :func:`info_nce` -- InfoNCE with an explicit set of negatives (Oord et al., 2018), as MoCo uses it
* :func:`nt_xent` -- SimCLR's normalised-temperature cross-entropy over a batch of pairs (Chen et al., 2020)
* :func:`nt_xent_reference` -- the same loss anchor by anchor, in float64: the independent check
* :func:`hard_negative_nt_xent` -- NT-Xent with negatives re-weighted towards the hard ones (Robinson et al., 2021)
* :func:`negative_weights` -- how much each negative pulls on an anchor's gradient at a temperature
* :func:`byol_loss` -- BYOL's normalised regression, 2 - 2 cos (Grill et al., 2020)
* :func:`sinkhorn_knopp` and :func:`swav_loss` -- SwAV's equipartitioned codes and swapped prediction (Caron et al., 2020)
* :func:`dino_loss` -- DINO's cross-entropy between a centred, sharpened teacher and the student (Caron et al., 2021)
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_temperature(temperature: float, name: str = "temperature") -> None:
    if not temperature > 0:
        raise ValueError(f"{name}={temperature} must be positive")


def _check_pairs(z1: Tensor, z2: Tensor) -> None:
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(
            f"z1 and z2 must both be [N, D] with the same shape; got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    if z1.shape[0] < 2:
        raise ValueError(
            f"a contrastive batch needs at least 2 pairs, got N={z1.shape[0]}"
        )


def info_nce(
    query: Tensor,
    positive: Tensor,
    negatives: Tensor,
    temperature: float = 0.07,
) -> Tensor:
    """InfoNCE (Oord et al., 2018): -log exp(q.k+/t) / (exp(q.k+/t) + sum_k- exp(q.k-/t)), mean over queries.

    ``query``, ``positive``: ``[N, D]``; ``negatives``: ``[K, D]`` shared by every query (MoCo's queue)
    or ``[N, K, D]`` per query. All are L2-normalised here, so q.k is a cosine similarity.
    """
    _check_temperature(temperature)
    q = F.normalize(query, dim=-1)
    k_pos = F.normalize(positive, dim=-1)
    k_neg = F.normalize(negatives, dim=-1)
    # l_pos = q . k+                                                     [N, 1]
    l_pos = (q * k_pos).sum(-1, keepdim=True)
    # l_neg = q . k-  for every negative                                 [N, K]
    l_neg = (
        q @ k_neg.T
        if k_neg.ndim == 2
        else torch.einsum("nd,nkd->nk", q, k_neg)
    )
    logits = torch.cat([l_pos, l_neg], dim=1) / temperature  # [N, 1 + K]
    # the positive sits in column 0: InfoNCE is cross-entropy with label 0
    labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits.float(), labels)


def _pair_similarities(z1: Tensor, z2: Tensor) -> tuple[Tensor, Tensor]:
    """Cosine similarities of all 2N views ``[2N, 2N]`` and the index of each view's positive ``[2N]``."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0).float(), dim=-1)  # [2N, D]
    sim = z @ z.T  # [2N, 2N]
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(
        z.device
    )  # view i <-> view i + N
    return sim, positive


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.5) -> Tensor:
    """NT-Xent (Chen et al., 2020, Eq. 1): l(i, j) = -log exp(s_ij/t) / sum_{k != i} exp(s_ik/t), mean over all 2N views.

    ``z1[n]`` and ``z2[n]`` are projections of two augmentations of image n; every other of the
    2N views in the batch is a negative. s is the cosine similarity.
    """
    _check_temperature(temperature)
    _check_pairs(z1, z2)
    sim, positive = _pair_similarities(z1, z2)
    # a view is not its own negative: remove k = i from the denominator
    self_mask = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
    logits = (sim / temperature).masked_fill(
        self_mask, float("-inf")
    )  # [2N, 2N]
    return F.cross_entropy(logits, positive)


def nt_xent_reference(
    z1: Tensor, z2: Tensor, temperature: float = 0.5
) -> Tensor:
    """NT-Xent computed anchor by anchor in float64, straight from Eq. 1 -- the independent formulation for tests."""
    _check_temperature(temperature)
    _check_pairs(z1, z2)
    views = [
        v.double() / v.double().norm() for v in torch.cat([z1, z2], dim=0)
    ]
    n = z1.shape[0]
    total = torch.zeros((), dtype=torch.float64)
    for i, anchor in enumerate(views):
        j = (i + n) % (2 * n)
        numerator = torch.exp(anchor @ views[j] / temperature)
        denominator = sum(
            torch.exp(anchor @ views[k] / temperature)
            for k in range(2 * n)
            if k != i
        )
        total = total - torch.log(numerator / denominator)
    return total / (2 * n)


def negative_weights(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """The weight each negative k gets in the gradient of anchor i, softmax_k(s_ik / t) over negatives only: ``[2N, 2N-2]``.

    d l_i / d s_ik = p_ik / t for a negative k: a low temperature puts almost all the weight on the
    few most similar negatives (Wang & Liu, 2021).
    """
    _check_temperature(temperature)
    _check_pairs(z1, z2)
    sim, positive = _pair_similarities(z1, z2)
    m = sim.shape[0]
    is_negative = ~torch.eye(m, dtype=torch.bool, device=sim.device)
    is_negative[torch.arange(m, device=sim.device), positive] = False
    negatives = sim[is_negative].view(m, m - 2)  # [2N, 2N - 2]
    return torch.softmax(negatives / temperature, dim=1)


def hard_negative_nt_xent(
    z1: Tensor,
    z2: Tensor,
    temperature: float = 0.5,
    beta: float = 1.0,
    tau_plus: float = 0.1,
) -> Tensor:
    """NT-Xent with hard-negative sampling (Robinson et al., 2021, Eq. 5 with the debiasing of Chuang et al., 2020).

    Negatives are re-weighted by w_k ~ exp(beta * s_ik / t) (mean weight 1), so the most similar
    ones count most; ``tau_plus`` is the prior probability that a "negative" shares the anchor's
    class and is subtracted out. ``beta=0, tau_plus=0`` gives back :func:`nt_xent` exactly.
    """
    _check_temperature(temperature)
    _check_pairs(z1, z2)
    if beta < 0:
        raise ValueError(
            f"beta={beta} must be non-negative (0 = no hard-negative weighting)"
        )
    if not 0 <= tau_plus < 1:
        raise ValueError(f"tau_plus={tau_plus} must lie in [0, 1)")
    sim, positive = _pair_similarities(z1, z2)
    m = sim.shape[0]
    is_negative = ~torch.eye(m, dtype=torch.bool, device=sim.device)
    is_negative[torch.arange(m, device=sim.device), positive] = False
    n_neg = m - 2
    # work in log space: exp(s/t) overflows for small t
    log_pos = (
        sim[torch.arange(m, device=sim.device), positive] / temperature
    )  # [2N]
    log_neg = sim[is_negative].view(m, n_neg) / temperature  # [2N, 2N-2]
    # importance weights w_k = exp(beta s_k / t) / mean_k exp(beta s_k / t)
    log_w = beta * log_neg - (
        torch.logsumexp(beta * log_neg, dim=1, keepdim=True) - math.log(n_neg)
    )
    # E_q[exp(s-/t)] estimated as (sum_k w_k exp(s_k/t) - n tau+ exp(s+/t)) / (1 - tau+)
    log_weighted = torch.logsumexp(
        log_w + log_neg, dim=1
    )  # log sum_k w_k e^{s_k/t}
    if tau_plus > 0:
        debiased = (torch.exp(log_weighted - log_pos) - n_neg * tau_plus) / (
            1 - tau_plus
        )  # in units of e^{s+/t}
        # clamp at its theoretical minimum n e^{-1/t} (Chuang et al., 2020)
        floor = n_neg * torch.exp(-1.0 / temperature - log_pos)
        ratio = torch.maximum(debiased, floor)
        # l = -log e^{s+} / (e^{s+} + N_g) = log(1 + N_g / e^{s+})
        return torch.log1p(ratio).mean()
    return (torch.logaddexp(log_pos, log_weighted) - log_pos).mean()


def byol_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """BYOL's loss (Grill et al., 2020, Eq. 2): || q/|q| - z'/|z'| ||^2 = 2 - 2 cos(q, z'), mean over the batch."""
    if prediction.shape != target.shape:
        raise ValueError(
            f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} must match"
        )
    p = F.normalize(prediction.float(), dim=-1)
    z = F.normalize(target.float(), dim=-1)
    return (2 - 2 * (p * z).sum(-1)).mean()


@torch.no_grad()
def sinkhorn_knopp(
    scores: Tensor, epsilon: float = 0.05, iterations: int = 3
) -> Tensor:
    """Soft codes Q ``[B, K]`` that split the batch equally among the K prototypes (Caron et al., 2020, Eq. 3).

    Q = Diag(u) exp(C^T Z / eps) Diag(v) (Cuturi, 2013): alternately rescale so that every prototype
    receives B/K of the mass and every sample 1 (the rows of the result sum to 1).
    """
    _check_temperature(epsilon, "epsilon")
    if iterations < 1:
        raise ValueError(f"iterations={iterations} must be at least 1")
    if scores.ndim != 2:
        raise ValueError(f"scores must be [B, K], got {tuple(scores.shape)}")
    B, K = scores.shape
    # subtracting the max changes only u (a constant factor), not the solution, and avoids overflow
    logits = scores.float() / epsilon
    Q = torch.exp(logits - logits.max())  # [B, K]
    Q = Q / Q.sum()
    for _ in range(iterations):
        # each prototype k gets total mass 1/K
        Q = Q / Q.sum(dim=0, keepdim=True) / K
        # each sample b gets total mass 1/B
        Q = Q / Q.sum(dim=1, keepdim=True) / B
    return Q * B  # rows are distributions over prototypes


def swav_loss(
    scores: Sequence[Tensor],
    codes: Sequence[Tensor],
    temperature: float = 0.1,
    code_views: Sequence[int] = (0, 1),
) -> Tensor:
    """SwAV's swapped prediction (Caron et al., 2020, Eq. 1-2): predict the code of view t from view s != t.

    ``scores[v]``: ``[B, K]`` prototype scores z_v . c_k of view v; ``codes[i]``: the Sinkhorn codes of
    view ``code_views[i]``. l(z_s, q_t) = -sum_k q_t,k log softmax(z_s . c / t)_k, averaged over pairs.
    """
    _check_temperature(temperature)
    if len(codes) != len(code_views):
        raise ValueError(
            f"{len(codes)} codes given for code_views={tuple(code_views)}"
        )
    total, pairs = 0.0, 0
    for q, t in zip(codes, code_views):
        for s, z in enumerate(scores):
            if s == t:
                continue
            total = (
                total
                - (q * F.log_softmax(z.float() / temperature, dim=-1))
                .sum(-1)
                .mean()
            )
            pairs += 1
    if pairs == 0:
        raise ValueError("swapped prediction needs at least two views")
    return total / pairs


def dino_loss(
    student: Sequence[Tensor],
    teacher: Sequence[Tensor],
    center: Tensor,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
) -> Tensor:
    """DINO (Caron et al., 2021, Eq. 3): sum over teacher views t and student views s != t of H(P_t, P_s), averaged.

    P_t = softmax((g_teacher - c) / tau_t) -- centring by ``center`` and sharpening by a low tau_t, which
    together avoid collapse; P_s = softmax(g_student / tau_s). Teacher views are the global crops,
    which are also the first ``len(teacher)`` student views.
    """
    _check_temperature(student_temp, "student_temp")
    _check_temperature(teacher_temp, "teacher_temp")
    if len(teacher) > len(student):
        raise ValueError(
            f"{len(teacher)} teacher views but only {len(student)} student views"
        )
    targets = [
        torch.softmax((t.float() - center) / teacher_temp, dim=-1).detach()
        for t in teacher
    ]
    log_probs = [
        F.log_softmax(s.float() / student_temp, dim=-1) for s in student
    ]
    total, pairs = 0.0, 0
    for t, p_t in enumerate(targets):
        for s, log_p_s in enumerate(log_probs):
            if s == t:  # the same crop seen by both: skipped in the paper
                continue
            total = total - (p_t * log_p_s).sum(-1).mean()
            pairs += 1
    if pairs == 0:
        raise ValueError(
            "DINO needs at least one student view that the teacher did not see"
        )
    return total / pairs
