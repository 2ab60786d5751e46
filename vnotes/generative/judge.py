"""One yardstick for every generative model: a classifier trained on real images judges the samples.

Chapter 6 (generative models). The judge reports, for a batch of generated images:

* ``judge_confidence``  -- the share of samples it classifies with probability >= 0.9 (recognisable ones);
* ``class_coverage``    -- how evenly the samples spread over the classes: the perplexity of the
  predicted-class histogram divided by the number of classes (1 = uniform, 1/K = a single class);
* ``feature_frechet_distance`` -- the Frechet distance between Gaussians fitted to the judge's
  features of real and generated images, the recipe of FID (Heusel et al., 2017) with this small
  judge in place of Inception (Szegedy et al., 2016), so the numbers compare models within this
  book only;
* ``conditional_accuracy`` -- for class-conditional samples, how often the judge agrees with the asked class.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.loader import TensorLoader
from ..runtime import seed_everything
from ..train import fit


class Judge(nn.Module):
    """A small CNN classifier for real images in [0, 1]; ``features(x)`` are its pooled last-layer activations."""

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, width: int = 32
    ):
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]

        self.body = nn.Sequential(
            *block(in_channels, width),
            *block(width, width),
            nn.MaxPool2d(2),
            *block(width, 2 * width),
            nn.MaxPool2d(2),
            *block(2 * width, 2 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.num_features = 2 * width
        self.head = nn.Linear(self.num_features, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Pooled features [B, num_features] of images [B, C, H, W] in [0, 1]."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"the judge takes images [B, {self.in_channels}, H, W], got {tuple(x.shape)}"
            )
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def random_shift(
    x: Tensor, max_shift: int, generator: torch.Generator | None = None
) -> Tensor:
    """Translate every image by its own random (dy, dx) in [-max_shift, max_shift] pixels, filling with zeros."""
    if max_shift == 0:
        return x
    B, C, H, W = x.shape
    p = max_shift
    padded = F.pad(x, (p, p, p, p))  # [B, C, H + 2p, W + 2p]
    dy, dx = torch.randint(0, 2 * p + 1, (2, B), generator=generator).to(
        x.device
    )
    rows = torch.arange(H, device=x.device)[None] + dy[:, None]  # [B, H]
    cols = torch.arange(W, device=x.device)[None] + dx[:, None]  # [B, W]
    b = torch.arange(B, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[
        b, rows[:, :, None], cols[:, None, :]
    ]  # [B, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()


def train_judge(
    images: Tensor,
    labels: Tensor,
    *,
    val: tuple[Tensor, Tensor] | None = None,
    epochs: int = 15,
    batch_size: int = 64,
    lr: float = 2e-3,
    width: int = 32,
    max_shift: int = 1,
    seed: int = 0,
    device: torch.device | str | None = None,
    precision: str = "auto",
    progress: bool | None = None,
) -> Judge:
    """Train a :class:`Judge` on real images in [0, 1] (small random shifts as augmentation); returns it in eval mode.

    ``judge.history`` keeps the training history and, with ``val``, ``judge.val_accuracy`` its accuracy there.
    """
    if images.ndim != 4:
        raise ValueError(
            f"images must be [N, C, H, W], got {tuple(images.shape)}"
        )
    if float(images.min()) < 0 or float(images.max()) > 1:
        raise ValueError("the judge expects real images in [0, 1]")
    seed_everything(seed)
    num_classes = int(labels.max()) + 1
    judge = Judge(images.shape[1], num_classes, width)
    shift_gen = torch.Generator().manual_seed(seed)

    def step(model: nn.Module, batch: Any) -> Tensor:
        x, y = batch
        return F.cross_entropy(model(random_shift(x, max_shift, shift_gen)), y)

    loader = TensorLoader(
        images, labels, batch_size=batch_size, shuffle=True, seed=seed
    )
    val_loader = (
        TensorLoader(*val, batch_size=512) if val is not None else None
    )
    opt = torch.optim.Adam(judge.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * len(loader)
    )
    judge.history = fit(
        judge,
        loader,
        optimizer=opt,
        epochs=epochs,
        step_fn=step,
        val_loader=val_loader,
        scheduler=sched,
        device=device,
        precision=precision,
        progress=progress,
        desc="judge",
        verbose=False,
    )
    if val is not None:
        judge.val_accuracy = judge.history.last("val_acc")
    return judge.eval()


@torch.no_grad()
def judge_outputs(
    judge: Judge, images: Tensor, batch_size: int = 512
) -> tuple[Tensor, Tensor]:
    """Class probabilities [N, K] and features [N, F] of ``images`` in [0, 1] (on the CPU)."""
    judge.eval()
    device = next(judge.parameters()).device
    probs, feats = [], []
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].to(device).float()
        f = judge.features(x)
        probs.append(F.softmax(judge.head(f).float(), dim=-1).cpu())
        feats.append(f.float().cpu())
    return torch.cat(probs), torch.cat(feats)


def gaussian_stats(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean [F] and unbiased covariance [F, F] of features [N, F], in float64."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(
            f"need features [N >= 2, F], got {tuple(features.shape)}"
        )
    f = features.double()
    mu = f.mean(0)
    centred = f - mu
    return mu, centred.T @ centred / (f.shape[0] - 1)


def _sqrtm_psd(a: Tensor) -> Tensor:
    """Square root of a symmetric positive semi-definite matrix through its eigen-decomposition."""
    vals, vecs = torch.linalg.eigh(a)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_distance(
    mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor
) -> float:
    """d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))   (Frechet distance of two Gaussians; Dowson & Landau, 1982).

    Tr (S1 S2)^(1/2) is computed as Tr (S1^(1/2) S2 S1^(1/2))^(1/2), whose argument is symmetric PSD.
    """
    mu1, mu2, cov1, cov2 = (a.double() for a in (mu1, mu2, cov1, cov2))
    if (
        mu1.shape != mu2.shape
        or cov1.shape != cov2.shape
        or cov1.shape != (mu1.shape[0], mu1.shape[0])
    ):
        raise ValueError(
            f"shape mismatch: mu {tuple(mu1.shape)}/{tuple(mu2.shape)}, cov {tuple(cov1.shape)}/{tuple(cov2.shape)}"
        )
    root1 = _sqrtm_psd(cov1)
    middle = root1 @ cov2 @ root1
    trace_sqrt = (
        torch.linalg.eigvalsh((middle + middle.T) / 2)
        .clamp(min=0)
        .sqrt()
        .sum()
    )
    return float(
        ((mu1 - mu2) ** 2).sum()
        + torch.trace(cov1)
        + torch.trace(cov2)
        - 2 * trace_sqrt
    )


def class_coverage(predicted: Tensor, num_classes: int) -> float:
    """exp(entropy of the predicted-class histogram) / K: 1 when samples spread evenly, 1/K when all share one class."""
    p = (
        torch.bincount(predicted, minlength=num_classes).double()
        / predicted.numel()
    )
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return float(entropy.exp() / num_classes)


def judge_report(
    judge: Judge,
    samples: Tensor,
    *,
    real: Tensor | None = None,
    labels: Tensor | None = None,
    confidence: float = 0.9,
    real_features: Tensor | None = None,
) -> dict[str, Any]:
    """The yardstick for ``samples`` [N, C, H, W] in [0, 1]: confidence, coverage, Frechet distance to ``real``,
    and accuracy against ``labels`` when the samples were asked for given classes."""
    if samples.ndim != 4:
        raise ValueError(
            f"samples must be [N, C, H, W], got {tuple(samples.shape)}"
        )
    if not 0 < confidence < 1:
        raise ValueError(
            f"confidence={confidence} must lie strictly between 0 and 1"
        )
    probs, feats = judge_outputs(judge, samples.clamp(0, 1))
    top, predicted = probs.max(-1)
    out: dict[str, Any] = {
        "judge_confidence": float((top >= confidence).double().mean()),
        "class_coverage": class_coverage(predicted, judge.num_classes),
        "class_histogram": torch.bincount(
            predicted, minlength=judge.num_classes
        ).tolist(),
        "predicted": predicted,
    }
    if real is not None or real_features is not None:
        if real_features is None:
            real_features = judge_outputs(judge, real)[1]
        out["feature_frechet_distance"] = frechet_distance(
            *gaussian_stats(feats), *gaussian_stats(real_features)
        )
    if labels is not None:
        if labels.shape[0] != samples.shape[0]:
            raise ValueError(
                f"labels has {labels.shape[0]} entries for {samples.shape[0]} samples"
            )
        out["conditional_accuracy"] = float(
            (predicted == labels.cpu()).double().mean()
        )
    return out
