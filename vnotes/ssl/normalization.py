"""Batch-independent normalisation for BYOL's heads and encoder (for chapter 5, 批处理 / 隐式的负样本).

BatchNorm normalises each unit with the mean and variance of the *batch*, so one image's output
depends on the other images in it: information leaks across the batch, which may act as implicit
negatives (the debate over why BYOL does not collapse). Richemond et al. (2020), "BYOL works even
without batch statistics", replaced it with GroupNorm (Wu & He, 2018) after weight-standardised
layers (Qiao et al., 2019), which normalise each sample on its own, and BYOL still trained.

* :class:`WSLinear`, :class:`WSConv2d` -- weights standardised per output unit before use
* :func:`head_norm_layer` -- the normalisation after a head's hidden layer: ``batch``, ``none``, ``group_ws``
* :func:`batch_independent_` -- a ResNet's BatchNorms -> GroupNorm, its convolutions -> weight-standardised
* :func:`batch_dependence` -- how much a sample's output moves when the rest of its batch changes
* :func:`pretrain_byol` -- chapter 5's BYOL run (:func:`vnotes.ssl.experiments.pretrain`) with a chosen normalisation
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

HEAD_NORMS = (
    "batch",
    "none",
    "group_ws",
)  # what a projector / predictor may normalise with
ENCODER_NORMS = (
    "batch",
    "group_ws",
)  # what the ResNet encoder may normalise with
GROUPS = 16  # GroupNorm's groups (Wu & He, 2018: 32 on ImageNet; 16 fits the book's 16-128 widths)


def standardize_weight(weight: Tensor, eps: float = 1e-5) -> Tensor:
    """W_hat = (W - mean) / std over each output unit's fan-in (Qiao et al., 2019, Eq. 5): ``weight.shape``."""
    fan_in = weight.flatten(1)  # [out, in * k * k]
    mean = fan_in.mean(1, keepdim=True)
    var = fan_in.var(1, unbiased=False, keepdim=True)
    return ((fan_in - mean) / torch.sqrt(var + eps)).view_as(weight)


class WSLinear(nn.Linear):
    """A linear layer whose weight rows are standardised before use (Qiao et al., 2019), as in Richemond et al. (2020)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, standardize_weight(self.weight), self.bias)


class WSConv2d(nn.Conv2d):
    """A convolution with each filter standardised to zero mean and unit variance over its fan-in (Qiao et al., 2019)."""

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(
            x, standardize_weight(self.weight), self.bias
        )


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is unknown; allowed: {allowed}")


def head_norm_layer(norm: str, dim: int, groups: int = GROUPS) -> nn.Module:
    """The normalisation after a head's hidden linear layer of width ``dim``: BatchNorm, nothing, or GroupNorm."""
    _check("norm", norm, HEAD_NORMS)
    if norm == "batch":
        return nn.BatchNorm1d(dim)
    if norm == "none":
        return nn.Identity()
    if dim % groups:
        raise ValueError(
            f"groups={groups} does not divide the hidden width {dim}"
        )
    return nn.GroupNorm(
        groups, dim
    )  # statistics over each sample's groups of units


def head_linear(norm: str, in_dim: int, out_dim: int) -> nn.Linear:
    """The hidden linear layer before :func:`head_norm_layer`: no bias where a norm follows, standardised weights for ``group_ws``."""
    _check("norm", norm, HEAD_NORMS)
    if norm == "group_ws":
        return WSLinear(in_dim, out_dim, bias=False)
    return nn.Linear(in_dim, out_dim, bias=norm == "none")


@torch.no_grad()
def batch_independent_(encoder: nn.Module, groups: int = GROUPS) -> nn.Module:
    """Swap every BatchNorm2d of ``encoder`` for GroupNorm and every Conv2d for a :class:`WSConv2d`, in place (Richemond et al., 2020).

    The swapped layers keep the trained (or initial) weights and affine parameters.
    """

    def convert(module: nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, nn.BatchNorm2d):
                c = child.num_features
                if c % groups:
                    raise ValueError(
                        f"groups={groups} does not divide the {c} channels of {name}"
                    )
                gn = nn.GroupNorm(groups, c, affine=child.affine)
                if child.affine:
                    gn.weight.copy_(child.weight)
                    gn.bias.copy_(child.bias)
                setattr(module, name, gn)
            elif isinstance(child, nn.Conv2d) and not isinstance(
                child, WSConv2d
            ):
                ws = WSConv2d(
                    child.in_channels,
                    child.out_channels,
                    child.kernel_size,
                    child.stride,
                    child.padding,
                    child.dilation,
                    child.groups,
                    bias=child.bias is not None,
                )
                ws.weight.copy_(child.weight)
                if child.bias is not None:
                    ws.bias.copy_(child.bias)
                setattr(module, name, ws)
            else:
                convert(child)

    convert(encoder)
    return encoder


@torch.no_grad()
def batch_dependence(module: nn.Module, x: Tensor, others: Tensor) -> float:
    """Largest change of ``x[0]``'s output when the rest of its batch ``x[1:]`` is replaced by ``others`` (train mode).

    0 for a batch-independent module; BatchNorm in train mode gives a clearly positive number.
    """
    if x.shape[0] < 2 or others.shape[0] != x.shape[0] - 1:
        raise ValueError(
            f"x has {x.shape[0]} samples and others {others.shape[0]}; give x with at least 2 and others with one fewer"
        )
    was_training = module.training
    module.train()
    state = {k: v.clone() for k, v in module.state_dict().items()}
    first = module(x)[0]
    second = module(torch.cat([x[:1], others]))[0]
    module.load_state_dict(state)  # running statistics as they were
    module.train(was_training)
    return float((first - second).abs().max())


def pretrain_byol(
    data: Any,
    scale: str,
    head_norm: str = "batch",
    encoder_norm: str = "batch",
    seed: int = 0,
    epochs: int | None = None,
    n_images: int | None = None,
    rank_images: Tensor | None = None,
    desc: str | None = None,
) -> tuple[nn.Module, Any]:
    """Chapter 5's BYOL (:func:`vnotes.ssl.experiments.pretrain`) with ``head_norm`` in projector and predictor and ``encoder_norm`` in the ResNet.

    Trains on the first ``n_images`` unlabelled images (all by default) for ``epochs`` (the method's own
    by default). With ``rank_images``, the effective rank of the frozen encoder's features of those
    images is measured before training and after every epoch: ``history["effective_rank"]``
    (epochs + 1 values). Returns the BYOL module and its history.
    """
    from . import experiments as ex
    from .evaluation import effective_rank, extract_features

    _check("head_norm", head_norm, HEAD_NORMS)
    _check("encoder_norm", encoder_norm, ENCODER_NORMS)
    overrides: dict[str, Any] = dict(
        head_norm=head_norm, encoder_norm=encoder_norm
    )
    if epochs is not None:
        overrides["epochs"] = epochs
    monitors = (
        {}
        if rank_images is None
        else {  # eval-mode features: draws no random numbers
            "effective_rank": lambda model: effective_rank(
                extract_features(model.encoder, rank_images)
            )
        }
    )
    return ex.pretrain(
        "byol",
        data,
        scale,
        seed=seed,
        desc=desc or f"BYOL, heads: {head_norm}, encoder: {encoder_norm}",
        n_images=n_images,
        monitors=monitors,
        **overrides,
    )
