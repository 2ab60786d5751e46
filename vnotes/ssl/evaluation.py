"""The one evaluation protocol every method of chapter 5 goes through (自监督预训练 -> 评估).

Freeze the encoder, read its features, and ask two questions without touching its weights:

* :func:`linear_probe` -- how well a linear classifier on the features does (Zhang et al., 2016; the
  standard protocol of SimCLR, MoCo, BYOL, SwAV, DINO and MAE);
* :func:`knn_classify` -- how well a weighted k-nearest-neighbour vote in cosine similarity does
  (Wu et al., 2018; DINO's second protocol), which needs no training at all; the features are
  standardised first, with the same statistics the probe uses, for every method alike;

plus a collapse diagnostic: :func:`effective_rank` (Roy & Vetterli, 2007) and the per-dimension
std of L2-normalised features (:func:`normalized_std`).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import TensorLoader
from ..scales import dry_iter
from ..train import fit
from .methods import encode


def patch_average(encoder: nn.Module, x: Tensor) -> Tensor:
    """A ViT's representation as the average of its patch tokens ``[B, D]`` (MAE's ``global_pool`` readout; He et al., 2021).

    The alternative to the [CLS] token (:func:`~vnotes.ssl.methods.encode`); for a ResNet, its pooled features.
    """
    features = encoder.forward_features(x)
    return features[:, 1:].mean(1) if features.ndim == 3 else features


# name -> how to read one vector per image out of a frozen encoder
READOUTS: dict[str, Callable[[nn.Module, Tensor], Tensor]] = {
    "cls": encode,
    "mean": patch_average,
}


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    images: Tensor,
    batch_size: int = 500,
    features: Callable[[nn.Module, Tensor], Tensor] = encode,
) -> Tensor:
    """Frozen features ``[N, D]`` of ``images`` (encoder in eval mode; float32, on the CPU).

    In a dry run (:func:`vnotes.scales.dry_iter`) only its first batches go through the encoder and
    their rows are repeated to ``N``: every shape downstream is the real run's, at a fraction of the cost
    (at `full`, reading 5,000 images per split and encoder was most of chapter 5's dry runs); the values
    then mean nothing, as every dry-run metric.
    """
    if images.ndim != 4:
        raise ValueError(
            f"images must be [N, C, H, W], got {tuple(images.shape)}"
        )
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    out = [
        features(encoder, images[i : i + batch_size].to(device)).float().cpu()
        for i in dry_iter(range(0, images.shape[0], batch_size))
    ]
    encoder.train(was_training)
    feats = torch.cat(out)
    if len(feats) < images.shape[0]:  # a dry run: the rows read, repeated
        feats = feats.repeat(math.ceil(images.shape[0] / len(feats)), 1)
    return feats[: images.shape[0]]


def linear_probe(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    *,
    epochs: int = 60,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    batch_size: int = 256,
    seed: int = 0,
) -> float:
    """Test accuracy of a linear classifier trained on frozen, standardised features (trained with :func:`vnotes.fit`).

    Standardising with the training set's mean and std plays the role of the BatchNorm without
    affine parameters that MAE and MoCo v3 put before the linear layer.
    """
    if (
        train_features.shape[0] != train_labels.shape[0]
        or test_features.shape[0] != test_labels.shape[0]
    ):
        raise ValueError(
            "features and labels must have the same number of rows"
        )
    mean = train_features.mean(0, keepdim=True)
    std = train_features.std(0, keepdim=True).clamp_min(1e-6)
    xtr, xte = (train_features - mean) / std, (test_features - mean) / std
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    with torch.random.fork_rng(
        devices=[]
    ):  # leave the caller's random stream untouched
        torch.manual_seed(seed)
        probe = nn.Linear(xtr.shape[1], num_classes)
        optimizer = torch.optim.AdamW(
            probe.parameters(), lr=lr, weight_decay=weight_decay
        )
        loader = TensorLoader(
            xtr, train_labels, batch_size=batch_size, shuffle=True, seed=seed
        )
        fit(
            probe,
            loader,
            optimizer=optimizer,
            epochs=epochs,
            device="cpu",
            precision="fp32",
            progress=False,
            verbose=False,
        )
    with torch.no_grad():
        return (probe(xte).argmax(1) == test_labels).float().mean().item()


def knn_classify(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    *,
    k: int = 20,
    temperature: float = 0.07,
    weighting: str = "exp",
    num_classes: int | None = None,
    standardize: bool = True,
) -> Tensor:
    """Labels predicted by a k-nearest-neighbour vote in cosine similarity ``[N_test]``.

    ``weighting="exp"``: neighbour j votes exp(s_j / t) for its class (Wu et al., 2018; DINO's k=20,
    t=0.07); ``"uniform"``: one vote each (plain majority, ties to the nearer neighbour's class).
    ``standardize``: first centre and scale every feature with the training features' mean and std,
    as :func:`linear_probe` does -- the chapter's protocol for every method. Without it, a direction
    that all images share (large in a ReLU network's or a ViT's raw features) dominates every cosine
    and the vote sees little else.
    """
    if weighting not in ("exp", "uniform"):
        raise ValueError(f"weighting={weighting!r} must be 'exp' or 'uniform'")
    if not 1 <= k <= train_features.shape[0]:
        raise ValueError(
            f"k={k} must lie in 1..{train_features.shape[0]} (the number of training features)"
        )
    num_classes = num_classes or int(train_labels.max()) + 1
    train_features, test_features = (
        train_features.float(),
        test_features.float(),
    )
    if standardize:
        mean = train_features.mean(0, keepdim=True)
        std = train_features.std(0, keepdim=True).clamp_min(1e-6)
        train_features = (train_features - mean) / std
        test_features = (test_features - mean) / std
    bank = F.normalize(train_features, dim=1)  # [N_train, D]
    queries = F.normalize(test_features, dim=1)  # [N_test, D]
    sim = queries @ bank.T  # [N_test, N_train]
    top_sim, top_idx = sim.topk(k, dim=1)  # [N_test, k], nearest first
    votes = (
        torch.exp(top_sim / temperature)
        if weighting == "exp"
        else torch.ones_like(top_sim)
    )
    if weighting == "uniform":
        # break ties towards nearer neighbours: a vote is worth slightly more the nearer it is
        votes = votes + 1e-6 * torch.linspace(1, 0, k, device=votes.device)
    scores = torch.zeros(queries.shape[0], num_classes, device=sim.device)
    scores.scatter_add_(1, train_labels[top_idx], votes)  # [N_test, classes]
    return scores.argmax(1)


def knn_accuracy(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    **kwargs,
) -> float:
    """Share of test points whose k-NN vote (:func:`knn_classify`) is right."""
    pred = knn_classify(train_features, train_labels, test_features, **kwargs)
    return (pred == test_labels).float().mean().item()


def effective_rank(features: Tensor) -> float:
    """exp(entropy of the normalised singular values) of the centred features (Roy & Vetterli, 2007).

    Between 1 (all features on a line: collapse) and D (spread evenly over every direction).
    """
    x = features.double() - features.double().mean(0, keepdim=True)
    s = torch.linalg.svdvals(x)
    p = s / s.sum()
    p = p[p > 0]
    return math.exp(-(p * p.log()).sum().item())


def normalized_std(features: Tensor) -> float:
    """Mean per-dimension std of L2-normalised features: 0 for a collapsed encoder, ~1/sqrt(D) when spread out."""
    return F.normalize(features.float(), dim=1).std(0).mean().item()


def evaluate_features(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    k: int = 20,
) -> dict[str, float]:
    """The chapter's protocol on frozen features: linear probe, k-NN, effective rank, normalised std."""
    return {
        "linear_probe_accuracy": linear_probe(
            train_features, train_labels, test_features, test_labels
        ),
        "knn_accuracy": knn_accuracy(
            train_features, train_labels, test_features, test_labels, k=k
        ),
        "effective_rank": effective_rank(test_features),
        "normalized_std": normalized_std(test_features),
    }


@torch.no_grad()
def cls_attention(vit: nn.Module, images: Tensor, block: int = -1) -> Tensor:
    """How much the [CLS] token attends to each patch in one block of a ViT: ``[B, heads, gh, gw]`` (DINO's Fig. 1).

    The weights over the patches are renormalised to sum to 1 (the [CLS] token's attention to itself is dropped).
    """
    was_training = vit.training
    vit.eval()
    device = next(vit.parameters()).device
    weights = (
        vit.attention_maps(images.to(device))[block].float().cpu()
    )  # [B, heads, 1 + N, 1 + N]
    vit.train(was_training)
    to_patches = weights[:, :, 0, 1:]  # [B, heads, N]
    to_patches = to_patches / to_patches.sum(-1, keepdim=True)
    gh, gw = vit.grid
    return to_patches.reshape(*to_patches.shape[:2], gh, gw)


def attention_on_object(
    attention: Tensor, masks: Tensor
) -> tuple[float, float]:
    """Share of [CLS] attention that falls on the object's pixels, and the share a uniform attention would give.

    ``attention``: ``[B, heads, gh, gw]`` (rows sum to 1); ``masks``: ``[B, H, W]`` object pixels.
    A patch counts with the fraction of its pixels that belong to the object.
    """
    B, heads, gh, gw = attention.shape
    cover = F.adaptive_avg_pool2d(masks.float()[:, None], (gh, gw))[
        :, 0
    ]  # [B, gh, gw], object share per patch
    on_object = (attention * cover[:, None]).sum((-2, -1))  # [B, heads]
    uniform = cover.mean((-2, -1))  # [B]
    return on_object.mean().item(), uniform.mean().item()
