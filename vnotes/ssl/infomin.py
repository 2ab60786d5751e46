"""What makes good views: the InfoMin principle (Tian et al., 2020) on the toy world (chapter 5h, 互信息不多不少).

Two views of one image share some information I(v1; v2). Contrastive learning can only learn what
the views share, and it learns *all* of it, the shortcuts included. Tian et al. (2020, "What makes
for good views for contrastive learning?") argue that the best views share as little as possible
beyond what the downstream task needs: too much shared information and the encoder keeps
nuisances, too little and it misses the task -- downstream accuracy over I(v1; v2) is an inverted U.

* :class:`PairedViews` -- two square crops of one image whose overlap is set exactly (the knob),
  each with the chapter's colour distortion;
* :class:`PairedViewSimCLR` -- SimCLR (Chen et al., 2020) trained on those pairs;
* :func:`infonce_bound` / :func:`estimate_shared_information` -- the InfoNCE lower bound
  log N - L_NCE on I(v1; v2) (Oord et al., 2018), the estimate Tian et al. plot on their x-axis.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import TensorLoader
from ..runtime import seed_everything
from ..scales import by_scale, resolve_scale
from ..train import History, fit
from .augment import ViewAugment
from .evaluation import extract_features, knn_accuracy, linear_probe
from .experiments import (
    SSLData,
    book_augment,
    chapter_settings,
    resnet_encoder,
)
from .losses import nt_xent
from .methods import SimCLR, encode, ssl_step


# --------------------------------------------------------------------------- the knob: crop overlap
def crop_overlap(crop: int, shift: int) -> float:
    """Fraction of one view's pixels that the other view also sees: (crop - shift) / crop, 0 when disjoint."""
    _check_crop_shift(crop, shift)
    return max(0, crop - shift) / crop


def _check_crop_shift(
    crop: int, shift: int, image_size: int | None = None
) -> None:
    if crop < 1:
        raise ValueError(f"crop={crop} must be a positive number of pixels")
    if shift < 0:
        raise ValueError(
            f"shift={shift} must be a non-negative number of pixels"
        )
    if image_size is not None and crop + shift > image_size:
        raise ValueError(
            f"crop={crop} + shift={shift} exceeds image_size={image_size}: both crops must fit in the image"
        )


def paired_crops(
    batch: int,
    image_size: int,
    crop: int,
    shift: int,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Top-left corners ``(top1, left1, top2, left2)`` ``[B]`` of two ``crop x crop`` boxes ``shift`` pixels apart.

    Per image, the shift runs along a random axis (rows or columns) in a random direction, and the
    pair's bounding box (``crop + shift`` by ``crop``) is placed uniformly in the image. So the two
    crops always overlap in exactly :func:`crop_overlap` of their area.
    """
    _check_crop_shift(crop, shift, image_size)
    r = lambda high: (
        (torch.rand(batch, device=device, generator=generator) * high)
        .floor()
        .long()
    )  # uniform integers 0 .. high - 1
    along_rows = torch.rand(batch, device=device, generator=generator) < 0.5
    # corner of the pair's bounding box: (crop + shift) long on the shifted axis, crop on the other
    span = crop + shift
    top = torch.where(
        along_rows, r(image_size - span + 1), r(image_size - crop + 1)
    )
    left = torch.where(
        along_rows, r(image_size - crop + 1), r(image_size - span + 1)
    )
    first_is_low = torch.rand(batch, device=device, generator=generator) < 0.5
    step = torch.where(
        first_is_low, shift, -shift
    )  # view 2 minus view 1, on the shifted axis
    top1 = torch.where(along_rows & ~first_is_low, top + shift, top)
    left1 = torch.where(~along_rows & ~first_is_low, left + shift, left)
    top2 = torch.where(along_rows, top1 + step, top1)
    left2 = torch.where(along_rows, left1, left1 + step)
    return top1, left1, top2, left2


@dataclass
class PairedViews:
    """Two views of each image: ``crop x crop`` crops ``shift`` pixels apart (no resizing), each colour-distorted.

    ``shift = 0`` gives the same crop twice (the views differ only in colour and flip: they share
    nearly everything); ``shift = crop`` gives disjoint crops (they share only what both halves of
    the scene show). Flip, colour jitter and greyscale are drawn independently per view, as in
    SimCLR, from ``colour`` (the chapter's :func:`~vnotes.ssl.experiments.book_augment`; its crop
    settings are not used).
    """

    crop: int = 16
    shift: int = 0
    colour: ViewAugment = field(default_factory=lambda: book_augment(16))

    def __post_init__(self) -> None:
        _check_crop_shift(self.crop, self.shift)
        if self.colour.size != self.crop:
            self.colour = dataclasses.replace(self.colour, size=self.crop)

    @property
    def overlap(self) -> float:
        """Fraction of each view's area that the other view also covers."""
        return crop_overlap(self.crop, self.shift)

    def __call__(
        self, x: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Two views ``[B, 3, crop, crop]`` of every image of ``x`` ``[B, 3, H, W]`` (square images)."""
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-1] != x.shape[-2]:
            raise ValueError(
                f"expected square RGB images [B, 3, H, H], got shape {tuple(x.shape)}"
            )
        B, size = x.shape[0], x.shape[-1]
        top1, left1, top2, left2 = paired_crops(
            B, size, self.crop, self.shift, x.device, generator
        )
        full = torch.full_like(top1, self.crop)
        views = []
        for top, left in ((top1, left1), (top2, left2)):
            # flip, jitter, grey drawn per view; the crop box replaced by ours (same size: no resampling)
            p = self.colour.sample(B, size, size, x.device, generator)
            p = dataclasses.replace(
                p, top=top, left=left, height=full, width=full
            )
            views.append(self.colour.apply(x, p))
        return views[0], views[1]


# --------------------------------------------------------------------------- SimCLR on paired views
class PairedViewSimCLR(SimCLR):
    """SimCLR (Chen et al., 2020) whose two views come from :class:`PairedViews` instead of two independent draws."""

    def __init__(
        self,
        encoder: nn.Module,
        views: PairedViews,
        temperature: float = 0.2,
        projection_dim: int = 64,
    ):
        super().__init__(
            encoder,
            projection_dim=projection_dim,
            temperature=temperature,
            augment=views.colour,
        )
        self.views = views

    def embed(self, x: Tensor) -> Tensor:
        """z = g(f(x)) ``[B, projection_dim]``: the projection the loss (and the critic) sees."""
        return self.projector(encode(self.encoder, x))

    def training_step(
        self, images: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        self.step += 1
        v1, v2 = self.views(images)  # [B, 3, crop, crop] each
        z1, z2 = self.embed(torch.cat([v1, v2])).float().chunk(2)
        return nt_xent(z1, z2, self.temperature), {}


# --------------------------------------------------------------------------- the InfoNCE bound
def infonce_bound(loss: float | Tensor, n_candidates: int) -> float:
    """I(v1; v2) >= log N - L_NCE (Oord et al., 2018, Eq. 10), with N the candidates per query (1 positive + N - 1 negatives).

    The bound can never exceed log N: with N candidates the best possible classifier has L_NCE >= 0.
    """
    if int(n_candidates) != n_candidates or n_candidates < 2:
        raise ValueError(
            f"n_candidates={n_candidates} must be an integer >= 2 (one positive and at least one negative)"
        )
    loss = float(loss)
    if not math.isfinite(loss) or loss < 0:
        raise ValueError(
            f"loss={loss} must be a finite cross-entropy >= 0 (nats)"
        )
    return math.log(n_candidates) - loss


@torch.no_grad()
def estimate_shared_information(
    model: PairedViewSimCLR,
    images: Tensor,
    batch_size: int = 256,
    seed: int = 0,
) -> float:
    """InfoNCE estimate of I(v1; v2) in nats: the trained model is the critic, on fresh view pairs of ``images``.

    Per batch of N images: logits s_ij = z1_i . z2_j / tau (cosine similarities of the two views'
    projections), L_NCE = cross-entropy of picking view 2 of image i among the N views 2, and the
    bound log N - L_NCE (:func:`infonce_bound`); averaged over full batches. Capped at log N.
    """
    if images.shape[0] < batch_size or batch_size < 2:
        raise ValueError(
            f"batch_size={batch_size} must lie in [2, {images.shape[0]}] (the number of images)"
        )
    generator = torch.Generator(device=images.device).manual_seed(seed)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    bounds = []
    for i in range(0, images.shape[0] - batch_size + 1, batch_size):
        x = images[i : i + batch_size].to(device)
        v1, v2 = model.views(x, generator=generator)
        z1 = F.normalize(model.embed(v1).float(), dim=1)  # [N, d]
        z2 = F.normalize(model.embed(v2).float(), dim=1)
        logits = (
            z1 @ z2.T / model.temperature
        )  # [N, N], positives on the diagonal
        labels = torch.arange(batch_size, device=device)
        bounds.append(
            infonce_bound(F.cross_entropy(logits, labels), batch_size)
        )
    model.train(was_training)
    return sum(bounds) / len(bounds)


# --------------------------------------------------------------------------- the chapter's runs
def infomin_settings(scale: str) -> dict:
    """The sweep per scale: crop side, the shifts (the knob), seeds, and the short pre-training budget."""
    return by_scale(
        resolve_scale(scale),
        smoke=dict(
            crop=16,
            shifts=(0, 8, 12, 16),
            seeds=(0, 1, 2),
            n_pretrain=256,
            steps=4,
            batch_size=64,
            info_images=128,
            info_batch=64,
        ),
        default=dict(
            crop=16,
            shifts=(0, 8, 12, 16),
            seeds=(0, 1, 2),
            n_pretrain=8192,
            steps=48,
            batch_size=128,
            info_images=1000,
            info_batch=250,
        ),
        full=dict(
            crop=16,
            shifts=(0, 2, 4, 6, 8, 10, 12, 14, 16),
            seeds=(0, 1, 2, 3, 4),
            n_pretrain=50_000,
            steps=3000,
            batch_size=256,
            info_images=5000,
            info_batch=500,
        ),
    )


def pretrain_paired(
    data: SSLData,
    shift: int,
    scale: str,
    seed: int = 0,
    width: int = 16,
    lr: float = 3e-3,
    temperature: float = 0.2,
) -> tuple[PairedViewSimCLR, History]:
    """SimCLR with crops ``shift`` pixels apart, trained for the scale's fixed number of steps (equal budget for every shift)."""
    s = infomin_settings(scale)
    seed_everything(seed)
    model = PairedViewSimCLR(
        resnet_encoder(width),
        PairedViews(crop=s["crop"], shift=shift),
        temperature=temperature,
    )
    batch = min(s["batch_size"], data.images.shape[0])
    # equal budget for every shift: the same number of steps, one pass over steps x batch images
    images = data.images[: s["steps"] * batch]
    loader = TensorLoader(
        images, batch_size=batch, shuffle=True, drop_last=True, seed=seed
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    history = fit(
        model,
        loader,
        optimizer=optimizer,
        epochs=1,
        step_fn=ssl_step,
        precision="auto",
        channels_last=True,  # a ResNet: faster in this layout on a CPU too (see experiments._channels_last)
        desc=f"shift {shift} px, seed {seed}",
    )
    return model, history


def evaluate_both_splits(
    encoder: nn.Module, data: SSLData, scale: str
) -> dict[str, dict[str, float]]:
    """The chapter's protocol (:func:`~vnotes.ssl.experiments.evaluate_encoder`: linear probe, k-NN with k=20) on the validation and the test split.

    The probe set's features are extracted once and serve both splits (the protocol itself is unchanged).
    """
    probe = extract_features(encoder, data.probe_images)
    epochs = chapter_settings(scale)["probe_epochs"]
    k = min(20, probe.shape[0])
    out = {}
    for split, images, labels in (
        ("val", data.val_images, data.val_labels),
        ("test", data.test_images, data.test_labels),
    ):
        feats = extract_features(encoder, images)
        out[split] = {
            "linear_probe_accuracy": linear_probe(
                probe, data.probe_labels, feats, labels, epochs=epochs
            ),
            "knn_accuracy": knn_accuracy(
                probe, data.probe_labels, feats, labels, k=k
            ),
        }
    return out
