"""Chapter 2 -- Regularization: the remedies for overfitting, written from scratch and measured.

The notes put the cause in one line: overfitting happens when the complexity of the data and
the complexity of the model do not match (数据复杂度与模型复杂度不相匹配). The remedies act on
one of three things:

* the **model**: penalties on the weights (:func:`l1_penalty`, :func:`l2_penalty`), inverted
  :class:`Dropout` (Srivastava et al., 2014) and its consistency loss R-Drop
  (:func:`rdrop_loss`, Liang et al., 2021), batch normalisation (:class:`BatchNorm1d`,
  :class:`BatchNorm2d`, Ioffe & Szegedy, 2015);
* the **data**: augmentation with ``torchvision.transforms.v2`` (:func:`augment_batch`);
* the **training procedure**: early stopping, k-fold cross-validation (:func:`kfold_indices`),
  ensembles of seeds or bootstrap samples (:func:`ensemble_probs`), and test-time multi-crop
  (:func:`multi_crop_probs`).

Every experiment of the chapter is a function here (:class:`Recipe`, :func:`train_recipe`,
:func:`run_seeds`, :func:`ranking_table`), so the notebooks ``chapters/02a_regularization`` and
``chapters/02b_regularization`` only call, measure and show.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .data import TensorLoader, load_digits
from .plot import budget_columns
from .runtime import pick_device, seed_everything

if TYPE_CHECKING:
    import numpy as np
from .train import EarlyStopping, History, fit


# =========================================================================== dropout
def dropout(
    x: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Inverted dropout (Srivastava et al., 2014): zero each unit with probability ``p``, scale survivors by 1/(1-p)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability p={p} must lie in [0, 1]")
    if not training or p == 0.0:
        return x  # test time: the full network, no rescaling needed
    if p == 1.0:
        return torch.zeros_like(x)
    # m_i ~ Bernoulli(1 - p): 1 keeps unit i, 0 drops it
    keep = torch.empty_like(x).bernoulli_(1.0 - p, generator=generator)
    # y_i = x_i * m_i / (1 - p), so E[y_i] = x_i and the test-time network needs no change
    return x * keep.div_(1.0 - p)


class Dropout(nn.Module):
    """Inverted dropout as a module: active in ``train()`` mode only (Srivastava et al., 2014)."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability p={p} must lie in [0, 1]")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


# =========================================================================== batch normalisation
class BatchNorm(nn.Module):
    """Batch normalisation over every dimension but the channel dimension 1 (Ioffe & Szegedy, 2015).

    Training: normalise with the batch's mean and (biased) variance, then scale by gamma and
    shift by beta; keep exponential moving averages of the mean and the *unbiased* variance.
    Evaluation: normalise with those running statistics instead, so one example's output no
    longer depends on the rest of its batch. Parameter and buffer names match ``nn.BatchNorm*d``.
    """

    expected_dims: tuple[int, ...] = ()

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ):
        super().__init__()
        if num_features < 1:
            raise ValueError(f"num_features={num_features} must be at least 1")
        if eps <= 0:
            raise ValueError(f"eps={eps} must be positive")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(
                f"momentum={momentum} must lie in [0, 1] or be None (cumulative average)"
            )
        self.num_features, self.eps, self.momentum = (
            num_features,
            eps,
            momentum,
        )
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = nn.Parameter(
                torch.ones(num_features)
            )  # gamma, the learnable scale
            self.bias = nn.Parameter(
                torch.zeros(num_features)
            )  # beta, the learnable shift
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features))
            self.register_buffer("running_var", torch.ones(num_features))
            self.register_buffer(
                "num_batches_tracked", torch.tensor(0, dtype=torch.long)
            )
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = (
                None
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in self.expected_dims:
            raise ValueError(
                f"{type(self).__name__} expects a {' or '.join(f'{d}-D' for d in self.expected_dims)} "
                f"input, got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"input has {x.shape[1]} channels, but num_features={self.num_features}"
            )
        dims = [
            d for d in range(x.dim()) if d != 1
        ]  # all but channels: [B] or [B, H, W]
        shape = [1, -1] + [1] * (
            x.dim() - 2
        )  # broadcast per channel: [1, C, 1, 1]
        xf = x.float()  # statistics in fp32, also under bf16 autocast
        use_batch_stats = self.training or not self.track_running_stats
        if use_batch_stats:
            n = xf.numel() // self.num_features  # values per channel, B*H*W
            if n < 2 and self.training:
                raise ValueError(
                    f"batch norm needs more than one value per channel in training, got shape {tuple(x.shape)}"
                )
            # mu_B = (1/n) sum_i x_i ;  sigma_B^2 = (1/n) sum_i (x_i - mu_B)^2   (biased, as the paper normalises)
            var, mean = torch.var_mean(
                xf, dim=dims, unbiased=False
            )  # [C], [C]
            if self.training and self.track_running_stats:
                with torch.no_grad():
                    self.num_batches_tracked += 1
                    m = (
                        self.momentum
                        if self.momentum is not None
                        else 1.0 / float(self.num_batches_tracked)
                    )
                    # running <- (1 - m) running + m * batch; the variance enters unbiased, times n/(n-1)
                    self.running_mean.mul_(1 - m).add_(m * mean.detach())
                    self.running_var.mul_(1 - m).add_(
                        m * var.detach() * n / (n - 1)
                    )
        else:
            mean, var = self.running_mean, self.running_var
        # x_hat = (x - mu) / sqrt(sigma^2 + eps) ;  y = gamma * x_hat + beta
        inv_std = torch.rsqrt(var + self.eps)  # [C]
        scale = (
            inv_std * self.weight if self.affine else inv_std
        )  # gamma / sigma
        shift = (
            self.bias if self.affine else 0.0
        ) - mean * scale  # beta - gamma * mu / sigma
        # the two equations folded into one multiply-add per element: y = x * scale + shift
        y = xf * scale.reshape(shape) + shift.reshape(shape)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(BatchNorm):
    """Batch norm for ``[B, C]`` or ``[B, C, L]`` inputs (Ioffe & Szegedy, 2015); same interface as ``nn.BatchNorm1d``."""

    expected_dims = (2, 3)


class BatchNorm2d(BatchNorm):
    """Batch norm for ``[B, C, H, W]`` feature maps (Ioffe & Szegedy, 2015); same interface as ``nn.BatchNorm2d``."""

    expected_dims = (4,)


# =========================================================================== weight penalties
def penalized_weights(model: nn.Module) -> list[nn.Parameter]:
    """The weights a penalty acts on: matrices and kernels of Linear/Conv layers (biases and norm scales are left free)."""
    return [p for p in model.parameters() if p.requires_grad and p.dim() > 1]


def l1_penalty(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """Omega_1(w) = sum_i |w_i|, the lasso penalty (Tibshirani, 1996): its constant pull drives weights to exactly zero."""
    params = list(params)
    if not params:
        raise ValueError("l1_penalty got no parameters")
    return sum(p.abs().sum() for p in params)


def l2_penalty(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """Omega_2(w) = 1/2 sum_i w_i^2 (ridge; weight decay, Krogh & Hertz, 1992): its pull lambda*w fades as w shrinks."""
    params = list(params)
    if not params:
        raise ValueError("l2_penalty got no parameters")
    return 0.5 * sum(p.pow(2).sum() for p in params)


def fraction_near_zero(
    params: Iterable[torch.Tensor], tol: float = 1e-3
) -> float:
    """Share of weights with ``|w| < tol``: the sparsity an L1 penalty produces."""
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    return float((flat.abs() < tol).float().mean())


def penalized_step(
    l1: float = 0.0, l2: float = 0.0
) -> Callable[[nn.Module, Any], tuple[torch.Tensor, dict]]:
    """A ``fit`` step: L = CE(f(x), y) + l1 * sum|w| + l2 * 1/2 sum w^2 over :func:`penalized_weights`."""
    if l1 < 0 or l2 < 0:
        raise ValueError(
            f"penalty strengths must be non-negative, got l1={l1}, l2={l2}"
        )

    def step(model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict]:
        x, y = batch[0], batch[1]
        ce = F.cross_entropy(model(x), y)
        loss = ce
        weights = penalized_weights(model)
        if l1 > 0:
            loss = loss + l1 * l1_penalty(weights)
        if l2 > 0:
            loss = loss + l2 * l2_penalty(weights)
        return loss, {"ce": ce.detach()}

    return step


# =========================================================================== R-Drop
def symmetric_kl(
    logits_p: torch.Tensor, logits_q: torch.Tensor
) -> torch.Tensor:
    """1/2 [KL(P || Q) + KL(Q || P)] between two categorical predictions, summed over classes and averaged over the batch."""
    log_p = F.log_softmax(logits_p.float(), dim=-1)  # [B, K]
    log_q = F.log_softmax(logits_q.float(), dim=-1)  # [B, K]
    # KL(P || Q) = sum_k p_k (log p_k - log q_k)
    kl_pq = (log_p.exp() * (log_p - log_q)).sum(-1)  # [B]
    kl_qp = (log_q.exp() * (log_q - log_p)).sum(-1)  # [B]
    return 0.5 * (kl_pq + kl_qp).mean()


def rdrop_loss(
    logits_1: torch.Tensor,
    logits_2: torch.Tensor,
    target: torch.Tensor,
    alpha: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """R-Drop (Liang et al., 2021): mean CE of two dropout passes + alpha * their symmetric KL."""
    if alpha < 0:
        raise ValueError(f"alpha={alpha} must be non-negative")
    # L_NLL = 1/2 [-log P_1(y|x) - log P_2(y|x)]   (averaged over the two passes, as in the authors' code)
    nll = 0.5 * (
        F.cross_entropy(logits_1.float(), target)
        + F.cross_entropy(logits_2.float(), target)
    )
    # L_KL = 1/2 [KL(P_1 || P_2) + KL(P_2 || P_1)]
    kl = symmetric_kl(logits_1, logits_2)
    return nll + alpha * kl, {"ce": nll.detach(), "kl": kl.detach()}


def rdrop_step(
    alpha: float = 1.0,
) -> Callable[[nn.Module, Any], tuple[torch.Tensor, dict]]:
    """A ``fit`` step for R-Drop: the batch passes twice through the model, each pass with its own dropout mask."""

    def step(model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict]:
        x, y = batch[0], batch[1]
        # one forward on [x; x] draws independent masks for the two copies, at the cost of one call
        logits = model(torch.cat([x, x]))  # [2B, K]
        logits_1, logits_2 = logits.chunk(2)  # [B, K] each
        return rdrop_loss(logits_1, logits_2, y, alpha)

    return step


# =========================================================================== data
@dataclass
class DigitSplits:
    """Digit images ``[N, 1, S, S]`` and labels for train / validation / test (test is touched only to report)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def __repr__(self) -> str:
        return (
            f"DigitSplits(train={len(self.y_train)}, val={len(self.y_val)}, test={len(self.y_test)}, "
            f"image={tuple(self.x_train.shape[1:])})"
        )


def balanced_subset(
    labels: torch.Tensor, n: int, seed: int = 0
) -> torch.Tensor:
    """Indices of ``n`` examples with the classes as equally represented as possible (fixed by ``seed``)."""
    classes = labels.unique()
    if not 1 <= n <= len(labels):
        raise ValueError(
            f"n={n} must lie between 1 and the {len(labels)} examples available"
        )
    g = torch.Generator().manual_seed(seed)
    per_class = [torch.nonzero(labels == c).flatten() for c in classes]
    per_class = [
        idx[torch.randperm(len(idx), generator=g)] for idx in per_class
    ]
    # round-robin over the classes, so the first n picks are balanced
    longest = max(len(idx) for idx in per_class)
    order = [
        idx[r] for r in range(longest) for idx in per_class if r < len(idx)
    ]
    return torch.stack(order[:n]).sort().values


def small_digits(
    n_train: int | None = 100, *, size: int = 16, seed: int = 0
) -> DigitSplits:
    """scikit-learn's digits with a deliberately small, class-balanced training set of ``n_train`` images."""
    train, val, test = (
        load_digits(s, size=size) for s in ("train", "val", "test")
    )
    idx = (
        balanced_subset(train.labels, n_train, seed)
        if n_train is not None
        else torch.arange(len(train))
    )
    return DigitSplits(
        train.images[idx],
        train.labels[idx],
        val.images,
        val.labels,
        test.images,
        test.labels,
    )


# =========================================================================== models
def mlp(
    in_features: int = 256,
    hidden: int = 256,
    depth: int = 2,
    num_classes: int = 10,
    dropout: float = 0.0,
    batchnorm: bool = False,
) -> nn.Sequential:
    """Flatten -> depth x [Linear -> (BatchNorm1d) -> ReLU -> (Dropout)] -> Linear: the chapter's over-parameterised MLP."""
    if depth < 1 or hidden < 1:
        raise ValueError(
            f"depth={depth} and hidden={hidden} must be at least 1"
        )
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for _ in range(depth):
        layers.append(nn.Linear(width, hidden, bias=not batchnorm))
        if batchnorm:
            layers.append(BatchNorm1d(hidden))
        layers.append(nn.ReLU())
        if dropout > 0:
            layers.append(Dropout(dropout))
        width = hidden
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def small_cnn(
    width: int = 16,
    num_classes: int = 10,
    in_channels: int = 1,
    batchnorm: bool = False,
    dropout: float = 0.0,
) -> nn.Sequential:
    """Three 3x3 convolutions (w, 2w, 4w channels), one 2x2 max-pool, global average pool and a linear classifier."""
    if width < 1:
        raise ValueError(f"width={width} must be at least 1")

    def block(c_in: int, c_out: int) -> list[nn.Module]:
        conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batchnorm)
        return (
            [conv, BatchNorm2d(c_out), nn.ReLU()]
            if batchnorm
            else [conv, nn.ReLU()]
        )

    return nn.Sequential(
        *block(in_channels, width),  # [B, w, S, S]
        *block(width, 2 * width),  # [B, 2w, S, S]
        nn.MaxPool2d(2),  # [B, 2w, S/2, S/2]
        *block(2 * width, 4 * width),  # [B, 4w, S/2, S/2]
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),  # [B, 4w]
        *([Dropout(dropout)] if dropout > 0 else []),
        nn.Linear(4 * width, num_classes),  # [B, K]
    )


# =========================================================================== data augmentation
def digit_augmentation(
    kind: str = "crop",
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A ``torchvision.transforms.v2`` augmentation for one digit image ``[C, H, W]``, by name (never flips: a mirrored 2 is no digit).

    ``crop``: pad by one pixel and crop back to the original size at a random offset (shifts of up to 1 pixel);
    ``affine``: rotations up to 10 degrees, shifts up to 1/16 of the side, zoom 0.9-1.1, bilinear;
    ``elastic``: a smooth random displacement field, the distortion Simard et al. (2003) proposed for
    handwriting (images of at least 13 pixels a side).
    """
    from torchvision.transforms import v2

    bilinear = v2.InterpolationMode.BILINEAR
    if kind == "crop":

        def crop(img: torch.Tensor) -> torch.Tensor:
            return v2.RandomCrop(list(img.shape[-2:]), padding=AUG_CROP_PAD)(
                img
            )

        return crop
    if kind == "affine":
        return v2.RandomAffine(
            degrees=10,
            translate=(1 / 16, 1 / 16),
            scale=(0.9, 1.1),
            interpolation=bilinear,
        )
    if kind == "elastic":
        return v2.ElasticTransform(
            alpha=AUG_ELASTIC_ALPHA,
            sigma=AUG_ELASTIC_SIGMA,
            interpolation=bilinear,
        )
    raise ValueError(
        f"augmentation kind={kind!r} is unknown; allowed: 'crop', 'affine', 'elastic'"
    )


AUG_CROP_PAD = 1  # pixels
AUG_ELASTIC_ALPHA, AUG_ELASTIC_SIGMA = (
    20.0,
    3.0,
)  # displacement scale and smoothing, in pixels (16x16 images)


def augment_batch(
    images: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Apply ``transform`` to each image of ``[B, C, H, W]`` separately (v2 draws one set of parameters per call)."""
    if images.dim() != 4:
        raise ValueError(
            f"augment_batch expects [B, C, H, W] images, got shape {tuple(images.shape)}"
        )
    return torch.stack([transform(img) for img in images])


def augmented_step(
    transform: Callable[[torch.Tensor], torch.Tensor],
    inner: Callable[[nn.Module, Any], Any] | None = None,
) -> Callable[[nn.Module, Any], Any]:
    """A ``fit`` step that augments the images of each batch afresh, then runs ``inner`` (plain cross-entropy by default)."""

    def plain(model: nn.Module, batch: Any) -> torch.Tensor:
        return F.cross_entropy(model(batch[0]), batch[1])

    inner = inner or plain

    def step(model: nn.Module, batch: Any) -> Any:
        x, y = batch[0], batch[1]
        return inner(model, (augment_batch(x, transform), y))

    return step


# =========================================================================== ensembles and multi-crop
@torch.no_grad()
def predict_probs(
    model: nn.Module, images: torch.Tensor, batch_size: int = 1024
) -> torch.Tensor:
    """Softmax probabilities ``[N, K]`` of ``model`` in eval mode."""
    was = model.training
    model.eval()
    images = images.to(next(model.parameters()).device)
    probs = torch.cat(
        [
            F.softmax(model(images[i : i + batch_size]).float(), -1)
            for i in range(0, len(images), batch_size)
        ]
    )
    model.train(was)
    return probs


def ensemble_probs(
    models: Sequence[nn.Module], images: torch.Tensor
) -> torch.Tensor:
    """p(y|x) = 1/M sum_m p_m(y|x): the ensemble averages its members' probabilities (Breiman, 1996; Lakshminarayanan et al., 2017)."""
    if not models:
        raise ValueError("ensemble_probs needs at least one model")
    return torch.stack([predict_probs(m, images) for m in models]).mean(
        0
    )  # [N, K]


def bootstrap_indices(n: int, seed: int) -> torch.Tensor:
    """n draws with replacement from range(n): one bagging sample (Breiman, 1996); about 63% of examples appear."""
    if n < 1:
        raise ValueError(f"n={n}: a bootstrap sample needs at least 1 example")
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, n, (n,), generator=g)


CROP_OFFSETS = {
    "center": [(0, 0)],
    "five": [
        (0, 0),
        (-1, -1),
        (-1, 1),
        (1, -1),
        (1, 1),
    ],  # centre and the four corners
    "nine": [
        (dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
    ],  # every shift by at most `pad`
}


def shifted_crops(
    images: torch.Tensor, crops: str = "five", pad: int = 1
) -> torch.Tensor:
    """Crops of the zero-padded images at the offsets of ``CROP_OFFSETS[crops]`` (times ``pad``): ``[n_crops, B, C, H, W]``."""
    if crops not in CROP_OFFSETS:
        raise ValueError(
            f"crops={crops!r} is unknown; allowed: {sorted(CROP_OFFSETS)}"
        )
    if pad < 1:
        raise ValueError(f"pad={pad} must be at least 1 pixel")
    H, W = images.shape[-2:]
    padded = F.pad(images, (pad, pad, pad, pad))  # [B, C, H + 2p, W + 2p]
    out = [
        padded[
            ...,
            pad + dy * pad : pad + dy * pad + H,
            pad + dx * pad : pad + dx * pad + W,
        ]
        for dy, dx in CROP_OFFSETS[crops]
    ]
    return torch.stack(out)


def multi_crop_probs(
    model: nn.Module, images: torch.Tensor, crops: str = "five", pad: int = 1
) -> torch.Tensor:
    """Test-time augmentation (multi-crop, Krizhevsky et al., 2012): average the softmax over shifted crops."""
    views = shifted_crops(images, crops, pad)  # [V, B, C, H, W]
    return torch.stack([predict_probs(model, v) for v in views]).mean(
        0
    )  # [B, K]


def accuracy_of(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of rows whose arg-max equals the label."""
    if labels.shape != probs.shape[:-1]:
        raise ValueError(
            f"labels of shape {tuple(labels.shape)} do not match probs of shape {tuple(probs.shape)}; "
            f"give one label per row, shape {tuple(probs.shape[:-1])}"
        )
    return float((probs.argmax(-1) == labels.to(probs.device)).float().mean())


# =========================================================================== cross-validation
def kfold_indices(
    labels: torch.Tensor, k: int = 5, seed: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Stratified k-fold split (Kohavi, 1995): k pairs (train_idx, val_idx); each example is validated on exactly once."""
    if not 2 <= k <= len(labels):
        raise ValueError(
            f"k={k} must lie between 2 and the {len(labels)} examples"
        )
    g = torch.Generator().manual_seed(seed)
    fold_of = torch.empty(len(labels), dtype=torch.long)
    for c in labels.unique():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        fold_of[idx] = (
            torch.arange(len(idx)) % k
        )  # deal each class round-robin
    return [
        (
            torch.nonzero(fold_of != f).flatten(),
            torch.nonzero(fold_of == f).flatten(),
        )
        for f in range(k)
    ]


# =========================================================================== the experiment
@dataclass(frozen=True)
class Recipe:
    """One way to train: the model, the optimiser and which remedies are switched on (the chapter's table, as data)."""

    name: str = "no regularization"
    model: str = "mlp"  # "mlp" or "cnn"
    hidden: int = 256  # MLP width (CNN: base width)
    depth: int = 2
    dropout: float = 0.0
    batchnorm: bool = False
    l1: float = 0.0  # lambda_1 of the L1 penalty in the loss
    l2: float = 0.0  # lambda_2 of the L2 penalty in the loss (coupled: it passes through the optimiser)
    weight_decay: float = 0.0  # decoupled weight decay (AdamW): w <- w - lr * lambda * w, outside the gradient
    rdrop_alpha: float = (
        0.0  # weight of the R-Drop KL term (needs dropout > 0)
    )
    augment: str = ""  # a digit_augmentation() kind, "" for none
    early_stopping: int = (
        0  # patience in epochs (0: off); restores the best val-loss weights
    )
    optimizer: str = (
        "adamw"  # "adamw" (Adam when weight_decay=0) or "sgd" (momentum 0.9)
    )
    lr: float = 1e-3
    epochs: int = 100
    batch_size: int = 20

    def __post_init__(self):
        if self.model not in ("mlp", "cnn"):
            raise ValueError(
                f"model={self.model!r} is unknown; allowed: 'mlp', 'cnn'"
            )
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(
                f"optimizer={self.optimizer!r} is unknown; allowed: 'adamw', 'sgd'"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(
                f"recipe {self.name!r}: dropout={self.dropout} must lie in [0, 1)"
            )
        if self.rdrop_alpha > 0 and self.dropout == 0:
            raise ValueError(
                f"recipe {self.name!r}: R-Drop (rdrop_alpha={self.rdrop_alpha}) needs dropout > 0"
            )
        if self.l2 > 0 and self.weight_decay > 0:
            raise ValueError(
                f"recipe {self.name!r}: choose L2 in the loss (l2) or decoupled weight_decay, not both"
            )
        if self.augment:
            digit_augmentation(
                self.augment
            )  # fails early, naming the allowed kinds
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(
                f"recipe {self.name!r}: epochs={self.epochs} and batch_size={self.batch_size} must be >= 1"
            )

    def vary(self, name: str, **changes: Any) -> "Recipe":
        """This recipe with some settings changed: ``BASELINE.vary("dropout", dropout=0.5)``."""
        return replace(self, name=name, **changes)

    def build(self, in_features: int = 256) -> nn.Module:
        """A fresh model for this recipe."""
        if self.model == "mlp":
            return mlp(
                in_features,
                self.hidden,
                self.depth,
                dropout=self.dropout,
                batchnorm=self.batchnorm,
            )
        return small_cnn(
            self.hidden, batchnorm=self.batchnorm, dropout=self.dropout
        )

    def step_fn(self) -> Callable[[nn.Module, Any], Any]:
        """The loss this recipe optimises, as a ``fit`` step."""
        step = (
            rdrop_step(self.rdrop_alpha)
            if self.rdrop_alpha > 0
            else penalized_step(self.l1, self.l2)
        )
        return (
            augmented_step(digit_augmentation(self.augment), step)
            if self.augment
            else step
        )

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """AdamW (Loshchilov & Hutter, 2019; plain Adam when weight_decay=0) or SGD with momentum 0.9.

        Weight decay acts on :func:`penalized_weights` only, like the penalties.
        """
        decay = penalized_weights(model)
        keep = [
            p for p in model.parameters() if p.requires_grad and p.dim() <= 1
        ]
        groups = [
            {"params": decay, "weight_decay": self.weight_decay},
            {"params": keep, "weight_decay": 0.0},
        ]
        if self.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=self.lr, momentum=0.9)
        return torch.optim.AdamW(groups, lr=self.lr)


BASELINE = Recipe()
"""The unregularised reference: a 256-256 ReLU MLP, Adam (lr 1e-3), batch 20, 100 epochs, no remedy."""

# The remedies of the chapter, each a change to BASELINE. Strengths are common choices, not tuned on the
# test set. Decoupled decay needs a large lambda here: with lr = 1e-3 and ~500 steps a weight shrinks by
# (1 - lr * lambda)^500 -- 0.22 for lambda = 3, but only 0.995 for AdamW's default 0.01; lambda = 3 makes
# AdamW shrink the mean |w| about as much as the L2 penalty lambda = 1e-3 does (measured in the chapter).
REMEDIES: dict[str, dict[str, Any]] = {
    "L1 penalty (Adam)": dict(l1=3e-5),
    "L2 penalty in the loss (Adam)": dict(l2=1e-3),
    "decoupled weight decay (AdamW)": dict(weight_decay=3.0),
    "dropout": dict(dropout=0.5),
    "R-Drop": dict(dropout=0.5, rdrop_alpha=1.0),
    "batch norm": dict(batchnorm=True),
    "augmentation: random crop": dict(augment="crop"),
    "augmentation: affine": dict(augment="affine"),
    "early stopping": dict(early_stopping=10),
    "batch norm + crop + dropout": dict(
        batchnorm=True, augment="crop", dropout=0.3
    ),
}


def remedy(name: str, base: Recipe = BASELINE) -> Recipe:
    """The recipe of one entry of :data:`REMEDIES`, applied to ``base``."""
    if name not in REMEDIES:
        raise ValueError(
            f"remedy {name!r} is unknown; allowed: {list(REMEDIES)}"
        )
    return base.vary(name, **REMEDIES[name])


@dataclass
class RunResult:
    """One trained model and what it measured: accuracies in [0, 1] on the clean train, val and test sets."""

    recipe: Recipe
    seed: int
    model: nn.Module
    history: History
    train_acc: float
    val_acc: float
    test_acc: float
    test_loss: float
    best_epoch: int = -1
    n_train: int = 0

    @property
    def gap(self) -> float:
        """Generalisation gap: train accuracy - test accuracy (both in eval mode, on clean images)."""
        return self.train_acc - self.test_acc


@torch.no_grad()
def _acc_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[float, float]:
    probs = predict_probs(model, x)
    loss = F.nll_loss(probs.clamp_min(1e-12).log(), y.to(probs.device))
    return accuracy_of(probs, y), float(loss)


def _eval_with_train(
    x_tr: torch.Tensor, y_tr: torch.Tensor
) -> Callable[[nn.Module, Iterable], dict[str, float]]:
    """An ``eval_fn`` for ``fit``: validation loss/accuracy plus the same on the clean training set (logged as val_train_*)."""

    def eval_fn(model: nn.Module, loader: Iterable) -> dict[str, float]:
        x_val, y_val = loader.tensors[:2]
        val_acc, val_loss = _acc_loss(model, x_val, y_val)
        train_acc, train_loss = _acc_loss(model, x_tr, y_tr)
        return {
            "loss": val_loss,
            "acc": val_acc,
            "train_loss": train_loss,
            "train_acc": train_acc,
        }

    return eval_fn


def train_recipe(
    recipe: Recipe,
    data: DigitSplits,
    seed: int = 0,
    *,
    train_idx: torch.Tensor | None = None,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    device: torch.device | str | None = None,
    precision: str = "fp32",
    verbose: bool = False,
) -> RunResult:
    """Train one model of ``recipe`` on ``data`` (or the rows ``train_idx`` of its training set) with ``vnotes.fit``.

    Every epoch logs validation loss/accuracy and, for the curves, loss/accuracy on the clean training
    images (``history["val_train_acc"]``). Test numbers are computed once, at the end.
    """
    device = torch.device(device) if device is not None else pick_device()
    seed_everything(seed)
    x_tr, y_tr = data.x_train, data.y_train
    if train_idx is not None:
        x_tr, y_tr = x_tr[train_idx], y_tr[train_idx]
    x_val, y_val = val if val is not None else (data.x_val, data.y_val)
    x_tr, y_tr, x_val, y_val = (
        t.to(device) for t in (x_tr, y_tr, x_val, y_val)
    )
    model = recipe.build(in_features=x_tr[0].numel())
    train_loader = TensorLoader(
        x_tr, y_tr, batch_size=recipe.batch_size, shuffle=True, seed=seed
    )
    val_loader = TensorLoader(x_val, y_val, batch_size=len(y_val))
    stopper = (
        EarlyStopping("val_loss", "min", patience=recipe.early_stopping)
        if recipe.early_stopping
        else None
    )
    history = fit(
        model,
        train_loader,
        optimizer=recipe.make_optimizer(model),
        epochs=recipe.epochs,
        step_fn=recipe.step_fn(),
        val_loader=val_loader,
        eval_fn=_eval_with_train(x_tr, y_tr),
        early_stopping=stopper,
        device=device,
        precision=precision,
        progress=False,
        verbose=verbose,
        desc=f"{recipe.name} (seed {seed})",
    )
    train_acc, _ = _acc_loss(model, x_tr, y_tr)
    val_acc, _ = _acc_loss(model, x_val, y_val)
    test_acc, test_loss = _acc_loss(
        model, data.x_test.to(device), data.y_test.to(device)
    )
    return RunResult(
        recipe,
        seed,
        model,
        history,
        train_acc,
        val_acc,
        test_acc,
        test_loss,
        best_epoch=stopper.best_epoch if stopper else history.epochs_run - 1,
        n_train=len(y_tr),
    )


def run_seeds(
    recipe: Recipe,
    data: DigitSplits,
    seeds: Sequence[int] = (0, 1, 2),
    **kw: Any,
) -> list[RunResult]:
    """Train ``recipe`` once per seed (same data; new initialisation, shuffling, dropout masks and augmentations)."""
    if len(seeds) < 1:
        raise ValueError("run_seeds needs at least one seed")
    return [train_recipe(recipe, data, s, **kw) for s in seeds]


def epochs_for_steps(n_train: int, batch_size: int, steps: int) -> int:
    """Epochs that make about ``steps`` optimisation steps, so runs on different data sizes train equally long."""
    if batch_size < 1:
        raise ValueError(
            f"batch_size={batch_size} must be a positive number of examples"
        )
    return max(1, round(steps / math.ceil(n_train / batch_size)))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_std got no values")
    return statistics.fmean(values), (
        statistics.stdev(values) if len(values) > 1 else 0.0
    )


def summarize(
    runs: Sequence[RunResult],
    baseline: Sequence[RunResult] | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """One table row: test accuracy and gap as mean ± std over seeds, the change against ``baseline``, and the
    training budget (steps and images seen, mean over seeds; :func:`vnotes.plot.show_table` marks unequal ones)."""
    acc, acc_sd = mean_std([r.test_acc for r in runs])
    gap, gap_sd = mean_std([r.gap for r in runs])
    loss, loss_sd = mean_std([r.test_loss for r in runs])
    row: dict[str, Any] = {
        "remedy": name or runs[0].recipe.name,
        "seeds": len(runs),
        "test accuracy": f"{acc:.3f} ± {acc_sd:.3f}",
        "gap (train − test acc.)": f"{gap:.3f} ± {gap_sd:.3f}",
        "test loss": f"{loss:.3f} ± {loss_sd:.3f}",
    }
    if baseline is not None:
        base_acc, _ = mean_std([r.test_acc for r in baseline])
        base_gap, _ = mean_std([r.gap for r in baseline])
        row["Δ accuracy"] = f"{acc - base_acc:+.3f}"
        row["Δ gap"] = f"{gap - base_gap:+.3f}"
    if all(
        r.n_train for r in runs
    ):  # the budget, mean over seeds (early stopping may end runs sooner)
        row.update(
            budget_columns(
                steps=round(
                    statistics.mean(
                        len(r.history.step.get("loss", [])) for r in runs
                    )
                ),
                images_seen=round(
                    statistics.mean(
                        r.history.epochs_run * r.n_train for r in runs
                    )
                ),
            )
        )
    return row


def mean_curve(runs: Sequence[RunResult], key: str) -> list[float]:
    """The per-epoch curve ``history[key]`` averaged over runs (cut to the shortest run)."""
    curves = [r.history[key] for r in runs]
    n = min(len(c) for c in curves)
    return [statistics.fmean(c[i] for c in curves) for i in range(n)]


def weight_stats(
    runs: Sequence[RunResult], tol: float = 1e-3
) -> dict[str, tuple[float, float]]:
    """Share of near-zero weights and mean |w| of the penalised weights, each as (mean, std) over runs."""
    zero = [fraction_near_zero(penalized_weights(r.model), tol) for r in runs]
    size = [
        float(
            torch.cat(
                [
                    w.detach().abs().flatten()
                    for w in penalized_weights(r.model)
                ]
            ).mean()
        )
        for r in runs
    ]
    return {"near_zero": mean_std(zero), "mean_abs": mean_std(size)}


# =========================================================================== dropout as bagging, R-Drop's mismatch
@torch.no_grad()
def mc_dropout_probs(
    model: nn.Module, images: torch.Tensor, samples: int, seed: int = 0
) -> torch.Tensor:
    """Average the softmax of ``samples`` thinned networks (dropout kept on): the bagging view of dropout.

    Srivastava et al. (2014) compare this Monte-Carlo average with the weight-scaling rule (eval mode).
    """
    if samples < 1:
        raise ValueError(f"samples={samples} must be at least 1")
    drops = [
        m for m in model.modules() if isinstance(m, (Dropout, nn.Dropout))
    ]
    if not drops:
        raise ValueError(
            "the model has no dropout layer, so every thinned network is the same network"
        )
    was = model.training
    model.eval()
    for m in drops:
        m.train()  # only the dropout layers sample masks; batch norm stays in eval
    torch.manual_seed(seed)
    probs = torch.stack(
        [F.softmax(model(images).float(), -1) for _ in range(samples)]
    ).mean(0)  # [N, K]
    model.train(was)
    return probs


@torch.no_grad()
def dropout_mismatch(
    model: nn.Module, images: torch.Tensor, samples: int = 8, seed: int = 0
) -> float:
    """Mean symmetric KL between one dropout pass and the full (eval-mode) network: the mismatch R-Drop targets."""
    was = model.training
    model.eval()
    full = model(images)  # [N, K]
    model.train()
    torch.manual_seed(seed)
    kl = statistics.fmean(
        float(symmetric_kl(model(images), full)) for _ in range(samples)
    )
    model.train(was)
    return kl


# =========================================================================== cross-validation, ensembles
def cross_validate(
    recipe: Recipe, data: DigitSplits, k: int = 5, seed: int = 0, **kw: Any
) -> list[RunResult]:
    """k-fold cross-validation on the training set alone: fold f trains on the other k-1 folds, validates on f."""
    runs = []
    for fold, (tr, va) in enumerate(kfold_indices(data.y_train, k, seed)):
        run = train_recipe(
            recipe,
            data,
            seed + fold,
            train_idx=tr,
            val=(data.x_train[va], data.y_train[va]),
            **kw,
        )
        runs.append(run)
    return runs


def ensemble_accuracy_by_size(
    models: Sequence[nn.Module], images: torch.Tensor, labels: torch.Tensor
) -> list[float]:
    """Test accuracy of the ensemble of the first m members, for m = 1 .. len(models)."""
    probs = torch.stack(
        [predict_probs(m, images) for m in models]
    )  # [M, N, K]
    running = (
        probs.cumsum(0)
        / torch.arange(1, len(models) + 1, device=probs.device)[:, None, None]
    )
    return [accuracy_of(p, labels.to(p.device)) for p in running]


def subset_ensembles(
    models: Sequence[nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    size: int,
) -> tuple[list[float], list[float]]:
    """Every ensemble of ``size`` members out of ``models``: (ensemble accuracies, mean-member accuracies)."""
    from itertools import combinations

    if not 1 <= size <= len(models):
        raise ValueError(
            f"size={size} must lie between 1 and the {len(models)} models"
        )
    probs = torch.stack(
        [predict_probs(m, images) for m in models]
    )  # [M, N, K]
    labels = labels.to(probs.device)
    member = [accuracy_of(p, labels) for p in probs]
    ens, mean_member = [], []
    for subset in combinations(range(len(models)), size):
        ens.append(accuracy_of(probs[list(subset)].mean(0), labels))
        mean_member.append(statistics.fmean(member[i] for i in subset))
    return ens, mean_member


# =========================================================================== figures of the chapter
def plot_mean_std(
    x: Sequence[float],
    runs_by_x: Sequence[Sequence[float]],
    *,
    label: str,
    ax=None,
    xlabel: str = "",
    ylabel: str = "",
    logx: bool = False,
    **kw: Any,
):
    """Mean over seeds with a ±1 standard-deviation band, one point per ``x``."""
    import matplotlib.pyplot as plt
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
    stats = np.array([mean_std(v) for v in runs_by_x])  # [len(x), 2]
    (line,) = ax.plot(x, stats[:, 0], marker="o", label=label, **kw)
    ax.fill_between(
        x,
        stats[:, 0] - stats[:, 1],
        stats[:, 0] + stats[:, 1],
        alpha=0.2,
        color=line.get_color(),
    )
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return ax


def plot_weight_histograms(
    weights: dict[str, Sequence[torch.Tensor]],
    *,
    tol: float = 1e-3,
    bins: int = 80,
    limit: float = 0.1,
    axes=None,
):
    """One histogram of |w| (log-scaled count) per named set of weights, with the share below ``tol`` in the title."""
    import matplotlib.pyplot as plt
    import numpy as np

    if axes is None:
        _, axes = plt.subplots(
            1,
            len(weights),
            figsize=(3.3 * len(weights), 3),
            layout="constrained",
            sharey=True,
        )
    axes = np.atleast_1d(axes)
    edges = np.linspace(-limit, limit, bins + 1)
    for ax, (name, ws) in zip(axes, weights.items()):
        flat = torch.cat(
            [w.detach().float().reshape(-1).cpu() for w in ws]
        ).numpy()
        ax.hist(np.clip(flat, -limit, limit), bins=edges, color="tab:blue")
        ax.set_yscale("log")
        ax.set_title(
            f"{name}\n{(np.abs(flat) < tol).mean():.0%} of |w| < {tol:g}",
            fontsize=9,
        )
        ax.set_xlabel("weight value (clipped to ±%g)" % limit)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("number of weights (log scale)")
    return axes


def plot_grid_heatmap(
    values: "np.ndarray",
    rows: Sequence[Any],
    cols: Sequence[Any],
    *,
    row_label: str,
    col_label: str,
    title: str,
    fmt: str = "{:.3f}",
    ax=None,
    cmap: str = "viridis",
):
    """A labelled heat map of ``values[i, j]`` for row setting i and column setting j, each cell annotated."""
    import matplotlib.pyplot as plt
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.8), layout="constrained")
    values = np.asarray(values, dtype=float)
    im = ax.imshow(values, cmap=cmap, aspect="auto", origin="lower")
    ax.set_xticks(range(len(cols)), [str(c) for c in cols])
    ax.set_yticks(range(len(rows)), [str(r) for r in rows])
    ax.set_xlabel(col_label)
    ax.set_ylabel(row_label)
    ax.set_title(title, fontsize=10)
    mid = (np.nanmax(values) + np.nanmin(values)) / 2
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            ax.text(
                j,
                i,
                fmt.format(values[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="black" if values[i, j] > mid else "white",
            )
    ax.figure.colorbar(im, ax=ax, shrink=0.8)
    return ax


# =========================================================================== the ranking
@dataclass
class Effect:
    """Test accuracy and generalisation gap of one remedy, one value per seed (or per ensemble subset)."""

    name: str
    test_acc: list[float]
    gap: list[float]
    note: str = ""

    @classmethod
    def of(
        cls, name: str, runs: Sequence[RunResult], note: str = ""
    ) -> "Effect":
        """The effect measured by trained runs."""
        return cls(
            name, [r.test_acc for r in runs], [r.gap for r in runs], note
        )


def ensemble_effect(
    name: str,
    runs: Sequence[RunResult],
    data: DigitSplits,
    size: int,
    note: str = "",
) -> Effect:
    """Every ensemble of ``size`` of the runs' models: test accuracy and gap (ensemble train − test accuracy)."""
    models = [r.model for r in runs]
    test_acc, _ = subset_ensembles(models, data.x_test, data.y_test, size)
    train_acc, _ = subset_ensembles(models, data.x_train, data.y_train, size)
    return Effect(
        name, test_acc, [tr - te for tr, te in zip(train_acc, test_acc)], note
    )


def tta_effect(
    name: str,
    runs: Sequence[RunResult],
    data: DigitSplits,
    crops: str = "nine",
    note: str = "",
) -> Effect:
    """Multi-crop prediction with each run's model: test accuracy and gap, both measured with the crops."""
    test = [
        accuracy_of(multi_crop_probs(r.model, data.x_test, crops), data.y_test)
        for r in runs
    ]
    train = [
        accuracy_of(
            multi_crop_probs(r.model, data.x_train, crops), data.y_train
        )
        for r in runs
    ]
    return Effect(name, test, [tr - te for tr, te in zip(train, test)], note)


def ranking_table(
    effects: Sequence[Effect], baseline: Effect
) -> list[dict[str, Any]]:
    """Rows sorted by mean test accuracy: mean ± std of accuracy and gap, and the change against ``baseline``."""
    base_acc, base_gap = (
        mean_std(baseline.test_acc)[0],
        mean_std(baseline.gap)[0],
    )
    rows = []
    for e in sorted(effects, key=lambda e: -mean_std(e.test_acc)[0]):
        (acc, acc_sd), (gap, gap_sd) = mean_std(e.test_acc), mean_std(e.gap)
        rows.append(
            {
                "remedy": e.name,
                "n": len(e.test_acc),
                "test accuracy": f"{acc:.3f} ± {acc_sd:.3f}",
                "Δ accuracy": f"{acc - base_acc:+.3f}",
                "gap (train − test)": f"{gap:.3f} ± {gap_sd:.3f}",
                "Δ gap": f"{gap - base_gap:+.3f}",
                "note": e.note,
            }
        )
    for i, row in enumerate(rows, 1):
        row["rank"] = i
    return [{"rank": r.pop("rank"), **r} for r in rows]
