"""The convolution itself (chapter 3: 稀疏交互 / 参数共享 / 平移等变), written out and measured.

A 2-D convolution of an input x [B, C_in, H, W] with a kernel w [C_out, C_in/g, k_h, k_w] is

    y[b, o, i, j] = bias[o] + sum_{c, u, v} w[o, c, u, v] * x_pad[b, c, s*i + d*u, s*j + d*v]

(deep-learning libraries compute this cross-correlation and call it convolution; Goodfellow et al., 2016,
ch. 9). ``unfold`` gathers every k_h x k_w patch into a column, after which the whole layer is one matrix
product: that is :func:`conv2d_unfold`, which the tests compare with ``torch.nn.functional.conv2d``.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _pair(v: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (v, v) if isinstance(v, int) else tuple(v)
    if len(pair) != 2 or any((not isinstance(p, int)) or p < 0 for p in pair):
        raise ValueError(
            f"{name}={v!r} must be a non-negative int or a pair of them"
        )
    return pair  # type: ignore[return-value]


def conv_output_size(
    size: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
) -> int:
    """Output length of a convolution along one axis: floor((n + 2p - d(k-1) - 1) / s) + 1."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv2d_unfold(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> torch.Tensor:
    """2-D convolution as unfold (im2col) + matrix multiplication; equals ``F.conv2d`` with the same arguments."""
    if x.ndim != 4 or weight.ndim != 4:
        raise ValueError(
            f"expected x [B, C, H, W] and weight [C_out, C_in/groups, kh, kw], got "
            f"{tuple(x.shape)} and {tuple(weight.shape)}"
        )
    stride, padding, dilation = (
        _pair(stride, "stride"),
        _pair(padding, "padding"),
        _pair(dilation, "dilation"),
    )
    if min(stride) < 1 or min(dilation) < 1:
        raise ValueError(
            f"stride={stride} and dilation={dilation} must be at least 1"
        )
    B, C_in, H, W = x.shape
    C_out, C_per_group, kh, kw = weight.shape
    if (
        groups < 1
        or C_in % groups
        or C_out % groups
        or C_per_group * groups != C_in
    ):
        raise ValueError(
            f"groups={groups} does not fit C_in={C_in}, C_out={C_out} and weight {tuple(weight.shape)}"
        )
    H_out = conv_output_size(H, kh, stride[0], padding[0], dilation[0])
    W_out = conv_output_size(W, kw, stride[1], padding[1], dilation[1])
    # every receptive field as a column: [B, C_in * kh * kw, L] with L = H_out * W_out
    cols = F.unfold(
        x, (kh, kw), dilation=dilation, padding=padding, stride=stride
    )
    cols = cols.view(
        B, groups, C_per_group * kh * kw, H_out * W_out
    )  # [B, g, C_in/g * kh * kw, L]
    w = weight.view(
        groups, C_out // groups, C_per_group * kh * kw
    )  # [g, C_out/g, C_in/g * kh * kw]
    # y = W_g @ cols_g for each group g: one shared kernel for every position (parameter sharing)
    y = torch.einsum("gok,bgkl->bgol", w, cols)  # [B, g, C_out/g, L]
    y = y.reshape(B, C_out, H_out, W_out)
    if bias is not None:
        y = y + bias.view(1, C_out, 1, 1)
    return y


def conv2d_loops(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    padding: int = 0,
) -> torch.Tensor:
    """The same convolution (stride 1, one group) as explicit sums over kernel offsets: slow, for reading."""
    x = F.pad(x, (padding, padding, padding, padding))
    C_out, C_in, kh, kw = weight.shape
    H_out, W_out = x.shape[2] - kh + 1, x.shape[3] - kw + 1
    y = x.new_zeros(x.shape[0], C_out, H_out, W_out)
    for u in range(kh):
        for v in range(kw):
            patch = x[
                :, :, u : u + H_out, v : v + W_out
            ]  # [B, C_in, H_out, W_out]
            # y[b, o, i, j] += sum_c w[o, c, u, v] * x[b, c, i + u, j + v]
            y += torch.einsum("oc,bchw->bohw", weight[:, :, u, v], patch)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


def conv_vs_dense_parameters(
    height: int,
    width: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
) -> dict[str, int]:
    """Parameters (weights + biases) of a 'same' convolution vs a dense layer mapping the same tensors.

    A dense layer connects every input value to every output value: (C_in H W) (C_out H W) weights.
    A convolution connects each output only to a k x k window (sparse interactions) and reuses the
    same kernel at every position (parameter sharing): C_out C_in k^2 weights, whatever H and W are.
    """
    n_in, n_out = in_channels * height * width, out_channels * height * width
    return {
        "dense": n_in * n_out + n_out,
        "locally_connected": out_channels
        * height
        * width
        * (in_channels * kernel_size**2 + 1),  # sparse, unshared
        "convolution": out_channels
        * (in_channels * kernel_size**2 + 1),  # sparse, shared
        "dense_connections_per_output": n_in,
        "conv_connections_per_output": in_channels * kernel_size**2,
    }


def shift_equivariance_error(
    layer: nn.Module, x: torch.Tensor, shift: tuple[int, int]
) -> float:
    """max |f(T x) - T f(x)| for a circular shift T by ``shift`` pixels (0 for a circularly padded convolution)."""
    with torch.no_grad():
        a = layer(torch.roll(x, shift, dims=(2, 3)))
        b = torch.roll(layer(x), shift, dims=(2, 3))
    return float((a - b).abs().max())


def receptive_field(
    layers: Iterable[tuple[int, int, int]],
) -> list[dict[str, int]]:
    """Receptive field after each layer of a stack given as (kernel, stride, dilation) triples.

    With r_0 = 1 and j_0 = 1 (the input's own pixel and spacing):
        r_l = r_{l-1} + d_l (k_l - 1) j_{l-1},    j_l = j_{l-1} s_l
    (Araujo et al., 2019): the field grows linearly with depth at stride 1 and geometrically with strides.
    """
    rf, jump, out = 1, 1, []
    for i, (k, s, d) in enumerate(layers):
        if k < 1 or s < 1 or d < 1:
            raise ValueError(
                f"layer {i}: kernel={k}, stride={s}, dilation={d} must all be at least 1"
            )
        rf = rf + d * (k - 1) * jump
        jump = jump * s
        out.append(
            {
                "layer": i + 1,
                "kernel": k,
                "stride": s,
                "dilation": d,
                "receptive_field": rf,
                "jump": jump,
            }
        )
    return out


def empirical_receptive_field(
    model: nn.Module, image_size: int = 64, in_channels: int = 1
) -> torch.Tensor:
    """|d y_center / d x|: which input pixels can change the centre output of ``model`` (its measured field)."""
    x = torch.zeros(1, in_channels, image_size, image_size, requires_grad=True)
    y = model(x)  # [1, C, h, w]
    h, w = y.shape[-2:]
    y[..., h // 2, w // 2].sum().backward()
    return x.grad.abs().sum(1)[0]  # [H, W]


def gaussian_kernel(size: int = 5, sigma: float = 1.0) -> torch.Tensor:
    """A normalised 2-D Gaussian blur kernel [size, size]."""
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    k = g[:, None] * g[None, :]
    return k / k.sum()


# Classic hand-designed 3x3 kernels, to compare with the ones a network learns.
CLASSIC_KERNELS: dict[str, torch.Tensor] = {
    "sobel_x": torch.tensor(
        [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]
    ),
    "sobel_y": torch.tensor(
        [[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]]
    ),
    "laplacian": torch.tensor(
        [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]
    ),
    "box_blur": torch.full((3, 3), 1.0 / 9.0),
}


def sample_photo(
    name: str = "china.jpg", size: int | None = 256
) -> torch.Tensor:
    """One of scikit-learn's two bundled photographs (``china.jpg``, ``flower.jpg``) as [3, H, W] in [0, 1]."""
    if name not in ("china.jpg", "flower.jpg"):
        raise ValueError(
            f"name={name!r} is not bundled with scikit-learn; choose 'china.jpg' or 'flower.jpg'"
        )
    from sklearn.datasets import load_sample_image

    img = (
        torch.from_numpy(load_sample_image(name).copy())
        .permute(2, 0, 1)
        .float()
        / 255.0
    )  # [3, 427, 640]
    if size is not None:
        h, w = img.shape[1:]
        scale = size / min(h, w)
        img = F.interpolate(
            img[None],
            size=(round(h * scale), round(w * scale)),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )[0].clamp(0, 1)
    return img
