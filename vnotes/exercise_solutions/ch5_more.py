"""Chapter 5, pages 5f-5i: reference solutions."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "mae_random_masking",
    "knn_vote_standardized",
    "infonce_mi_bound",
    "byol_batch_dependence",
]


def mae_random_masking(tokens, mask_ratio, noise):
    """MAE's per-sample random masking (He et al., 2022): shuffle each
    sample's tokens by its noise, keep the first part.

    Chapter 5f; the book's version is ``vnotes.ssl.mae.random_masking``.
    """
    B, N, D = tokens.shape
    keep = max(1, int(round(N * (1 - mask_ratio))))
    ids_shuffle = noise.argsort(dim=1)  # ascending noise: the first are kept
    ids_restore = ids_shuffle.argsort(dim=1)  # the inverse permutation
    ids_keep = ids_shuffle[:, :keep]
    visible = tokens.gather(1, ids_keep[..., None].expand(B, keep, D))
    mask = torch.ones(B, N, dtype=tokens.dtype)
    mask[:, :keep] = 0  # 0 = kept, in shuffled order ...
    mask = mask.gather(1, ids_restore)  # ... put back in the tokens' order
    return visible, mask, ids_restore


def knn_vote_standardized(
    train_features, train_labels, test_features, k, temperature
):
    """The chapter's k-NN vote: standardise with the training features'
    statistics, cosine similarity, k neighbours voting exp(s / t)
    (Wu et al., 2018).

    Chapter 5g; the book's version is ``vnotes.ssl.knn_classify``.
    """
    mean = train_features.mean(0, keepdim=True)
    std = train_features.std(0, keepdim=True).clamp_min(1e-6)
    bank = F.normalize((train_features - mean) / std, dim=1)
    queries = F.normalize((test_features - mean) / std, dim=1)
    top_sim, top_idx = (queries @ bank.T).topk(k, dim=1)  # [N_test, k]
    votes = torch.exp(top_sim / temperature)
    num_classes = int(train_labels.max()) + 1
    scores = torch.zeros(queries.shape[0], num_classes)
    scores.scatter_add_(1, train_labels[top_idx], votes)
    return scores.argmax(1)


def infonce_mi_bound(z1, z2, temperature):
    """I(v1; v2) >= log N - L_NCE (Oord et al., 2018), with the cosine
    similarities over the temperature as the critic.

    Chapter 5h; the book's version is
    ``vnotes.ssl.infomin.estimate_shared_information``.
    """
    n = z1.shape[0]
    logits = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T / temperature
    loss = F.cross_entropy(logits, torch.arange(n))  # positives: the diagonal
    return math.log(n) - loss.item()


def byol_batch_dependence(module, x, others):
    """How far sample 0's output moves when the rest of its batch is
    replaced (training mode); the module is left as it was.

    Chapter 5i; the book's version is
    ``vnotes.ssl.normalization.batch_dependence``.
    """
    was_training = module.training
    state = {k: v.clone() for k, v in module.state_dict().items()}
    module.train()  # BatchNorm uses the batch's statistics
    first = module(x)[0]
    second = module(torch.cat([x[:1], others]))[0]
    module.load_state_dict(state)  # the running statistics as they were
    module.train(was_training)
    return (first - second).abs().max().item()
