"""The chapter's data, per-scale settings and runs (chapter 5): what the notebooks call.

Every method is trained the same way -- :func:`pretrain` builds it from :data:`METHOD_SETTINGS`,
trains it with :func:`vnotes.fit` on unlabelled toy-world images, and :func:`evaluate_encoder`
applies the one protocol (linear probe, k-NN, effective rank) to its frozen encoder. The
baselines are the same encoder with random weights and the same encoder trained with labels.

Changes from the papers' settings (:data:`vnotes.ssl.methods.PAPER_SETTINGS`), and why:

* hue jitter 0.5 (a full turn) instead of 0.1: the toy world's colours are six hues, so a small hue
  shift leaves colour as a shortcut that solves instance discrimination without looking at shape
  (SimCLR's own finding, Sec. 3: without colour distortion the network matches colour histograms);
* crops cover 30-100% of the image instead of 8-100%: the objects are small, and an 8% crop of a
  32-pixel image often misses them;
* views are 24 px for the ResNets (the encoder pools globally, so it runs at any size): the
  CPU book trains for ~200 steps, and a smaller view buys more of them;
* momenta 0.99 instead of 0.996-0.999: with a few hundred steps, a 0.999 key encoder would
  still be 80% its random initialisation at the end;
* AdamW instead of LARS/SGD with huge batches: batches are 128 images here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..data import SHAPES, TensorLoader, WorldConfig, make_scenes
from ..runtime import seed_everything
from ..scales import by_scale, resolve_scale
from ..train import History, fit
from .augment import MultiCrop, ViewAugment
from .evaluation import evaluate_features, extract_features
from .methods import BYOL, DINO, MoCo, SimCLR, SwAV, encode, ssl_step

TASK = "shape"      # what the probes must read from the frozen features: the object's shape (6 classes)


# --------------------------------------------------------------------------- data
@dataclass
class SSLData:
    """Unlabelled images to pre-train on, and a labelled probe set and test set for the evaluation."""

    images: Tensor            # [N, 3, 32, 32], labels never used by the self-supervised methods
    labels: Tensor            # [N], only for the supervised baseline
    probe_images: Tensor      # [n_probe, 3, 32, 32]
    probe_labels: Tensor
    test_images: Tensor       # [n_test, 3, 32, 32]
    test_labels: Tensor
    class_names: list[str]


def load_ssl_data(n_pretrain: int = 8192, n_probe: int = 1000, n_test: int = 1000, seed: int = 0,
                  config: WorldConfig | None = None) -> SSLData:
    """Toy-world scenes of one object; the probe set is a labelled slice of the training split, the test set its own split."""
    if n_probe > n_pretrain:
        raise ValueError(f"n_probe={n_probe} cannot exceed n_pretrain={n_pretrain} (the probe set is a slice of it)")
    config = config or WorldConfig()
    train = make_scenes(n_pretrain, seed=seed, split="train", config=config)
    test = make_scenes(n_test, seed=seed, split="test", config=config)
    labels = train.labels(TASK)
    return SSLData(train.images, labels, train.images[:n_probe], labels[:n_probe], test.images,
                   test.labels(TASK), train.class_names(TASK))


# --------------------------------------------------------------------------- settings per scale
def chapter_settings(scale: str) -> dict[str, Any]:
    """Sizes and budgets for ``smoke`` (seconds), ``default`` (the CPU book) and ``full`` (a GPU)."""
    scale = resolve_scale(scale)
    return by_scale(
        scale,
        smoke=dict(n_pretrain=256, n_probe=128, n_test=128, batch_size=64, epochs=1, vit_epochs=1, width=8,
                   queue_sizes=(64, 128), view_size=24, probe_epochs=5),
        default=dict(n_pretrain=8192, n_probe=1000, n_test=1000, batch_size=128, epochs=3, vit_epochs=3, width=16,
                     queue_sizes=(128, 1024, 4096), view_size=24, probe_epochs=60),
        full=dict(n_pretrain=50_000, n_probe=5000, n_test=5000, batch_size=256, epochs=100, vit_epochs=100,
                  width=32, queue_sizes=(256, 1024, 4096, 16384), view_size=32, probe_epochs=100),
    )


def book_augment(size: int = 24, **overrides) -> ViewAugment:
    """SimCLR's crop + colour views with the book's changes (full hue turn, crops of 30-100%)."""
    settings = dict(size=size, scale=(0.3, 1.0), hue=0.5)
    settings.update(overrides)
    return ViewAugment(**settings)


def book_multi_crop(global_size: int = 32, local_size: int = 16, n_local: int = 4) -> MultiCrop:
    """Two global crops (40-100%) and ``n_local`` small ones (10-40%) at half the resolution (DINO, SwAV)."""
    return MultiCrop(book_augment(global_size, scale=(0.4, 1.0)),
                     book_augment(local_size, scale=(0.1, 0.4)), n_global=2, n_local=n_local)


# --------------------------------------------------------------------------- encoders
def resnet_encoder(width: int = 16) -> nn.Module:
    """The chapter's CNN encoder: chapter 3's ``resnet_mini`` (3 stages, width 16-32-64 by default)."""
    from ..cnn import resnet_mini

    return resnet_mini(num_classes=len(SHAPES), width=width)


def vit_encoder(dim: int = 64, depth: int = 4, num_heads: int = 4, patch_size: int = 4) -> nn.Module:
    """The chapter's transformer encoder: chapter 4's ViT on 32x32 images, 4x4 patches (64 tokens)."""
    from ..transformer import ViT

    return ViT(image_size=32, patch_size=patch_size, num_classes=len(SHAPES), dim=dim, depth=depth, num_heads=num_heads)
