"""Chapter 3 (convolutional networks): reference solutions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "conv2d_unfold",
    "receptive_field",
    "separable_parameters",
    "channel_shuffle",
    "residual_forward",
    "batch_norm_train",
    "pareto_front",
    "conv_macs",
]


def conv2d_unfold(x, weight, bias=None, stride=1, padding=0, groups=1):
    """A 2-D convolution as unfold (im2col) and one matrix product per group.

    Chapter 3a; the book's version is ``vnotes.cnn.conv.conv2d_unfold``.
    """
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    B, C_in, H, W = x.shape
    C_out, C_per_group, kh, kw = weight.shape
    H_out = (H + 2 * ph - kh) // sh + 1
    W_out = (W + 2 * pw - kw) // sw + 1
    # every k×k patch as a column: [B, C_in*kh*kw, L], L = H_out*W_out
    cols = F.unfold(x, (kh, kw), padding=(ph, pw), stride=(sh, sw))
    # the rows of one group are contiguous (channel-major)
    cols = cols.view(B, groups, C_per_group * kh * kw, H_out * W_out)
    # one kernel matrix per group: [g, C_out/g, C_per_group*kh*kw]
    w = weight.view(groups, C_out // groups, C_per_group * kh * kw)
    y = torch.einsum("gok,bgkl->bgol", w, cols)
    y = y.reshape(B, C_out, H_out, W_out)
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y


def receptive_field(layers):
    """The receptive field of the top layer of a stack of
    (kernel, stride, dilation) layers.

    Chapter 3a; the book's version is ``vnotes.cnn.conv.receptive_field``.
    """
    rf, jump = 1, 1  # one pixel, spaced one pixel apart
    for k, s, d in layers:
        # k taps, d*jump input pixels apart: the field widens by d(k-1)j
        rf = rf + d * (k - 1) * jump
        jump = jump * s  # the next layer's taps are s times further apart
    return rf


def separable_parameters(c_in, c_out, k, bias=False):
    """Parameters of a k×k depthwise convolution followed by a
    1×1 pointwise convolution (Howard et al., 2017).

    Chapter 3b; the book's block is ``vnotes.cnn.mobilenet.DepthwiseSeparable``.
    """
    depthwise = c_in * k * k + (
        c_in if bias else 0
    )  # one k×k filter per channel
    pointwise = c_in * c_out + (
        c_out if bias else 0
    )  # a 1×1 conv mixing channels
    return depthwise + pointwise


def channel_shuffle(x, groups):
    """Interleave the channels of the groups: [B, g*n, H, W] ->
    [B, g, n] -> transpose -> [B, n*g, H, W] (Zhang et al., 2018).

    Chapter 3b; the book's version is ``vnotes.cnn.shufflenet.channel_shuffle``.
    """
    B, C, H, W = x.shape
    x = x.reshape(B, groups, C // groups, H, W)
    return x.transpose(1, 2).reshape(B, C, H, W)


def residual_forward(block, x):
    """ResNet's basic block: y = ReLU(F(x) + shortcut(x)) with
    F = BN(conv(ReLU(BN(conv(x))))) (He et al., 2016).

    Chapter 3b; the book's block is ``vnotes.cnn.resnet.BasicBlock``.
    """
    shortcut = x if block.downsample is None else block.downsample(x)
    out = F.relu(block.bn1(block.conv1(x)))
    out = block.bn2(block.conv2(out))  # no ReLU before the sum
    return F.relu(out + shortcut)


def batch_norm_train(
    x, gamma, beta, running_mean, running_var, momentum=0.1, eps=1e-5
):
    """One training-mode step of 2-D batch norm (Ioffe & Szegedy, 2015):
    normalise each channel with the batch's statistics, and move the
    running statistics towards them, as ``nn.BatchNorm2d`` does.

    Chapter 3c; the book's miniatures use ``nn.BatchNorm2d``.
    """
    dims = (
        0,
        2,
        3,
    )  # one statistic per channel: over the batch and the pixels
    n = x.numel() // x.shape[1]
    mean = x.mean(dims)
    var = x.var(dims, unbiased=False)  # the biased variance normalises
    x_hat = (x - mean.view(1, -1, 1, 1)) / (var.view(1, -1, 1, 1) + eps).sqrt()
    y = gamma.view(1, -1, 1, 1) * x_hat + beta.view(1, -1, 1, 1)
    # PyTorch's convention: new = (1 - momentum) old + momentum batch,
    # with the unbiased variance n / (n - 1) var in the running estimate
    running_mean = (1 - momentum) * running_mean + momentum * mean
    running_var = (1 - momentum) * running_var + momentum * var * n / (n - 1)
    return y, running_mean, running_var


def pareto_front(costs, scores):
    """Indices of the points no other point beats (at most the cost and
    at least the score, one strictly), cheapest first.

    Chapter 3d; the book's version is ``vnotes.cnn.zoo.pareto_front``.
    """
    front = []
    for i, (c, s) in enumerate(zip(costs, scores)):
        beaten = any(
            c2 <= c and s2 >= s and (c2 < c or s2 > s)
            for c2, s2 in zip(costs, scores)
        )
        if not beaten:
            front.append(i)
    return sorted(front, key=lambda i: costs[i])


def conv_macs(c_in, c_out, k, size, stride=1, groups=1):
    """Multiply-adds of a k×k convolution (padding k // 2) on one
    size×size image: each output value needs (c_in / groups)·k·k of them.

    Chapter 3d; the book's version is ``vnotes.cnn.profile.conv_macs``.
    """
    out = (size + 2 * (k // 2) - k) // stride + 1  # output side
    return out * out * c_out * (c_in // groups) * k * k
