"""Deformable convolution (Dai et al., 2017, "Deformable Convolutional Networks") -- 可变形卷积.

An ordinary k x k convolution samples its input on a fixed grid R = {(-1,-1), ..., (1,1)} around each
output position p0. A deformable convolution adds a learned offset to every grid point,

    y(p0) = sum_{p_n in R} w(p_n) * x(p0 + p_n + Δp_n)     (Dai et al., 2017, Eq. 2)

where the offsets Δp_n (2 k^2 numbers per position) come from an ordinary convolution on the same input,
and x at fractional positions is read by bilinear interpolation. The offsets start at zero (a plain
convolution) and learn to move the samples towards the object. With ``modulated=True`` each sample is also
weighted by a learned mask in [0, 1] (DCN v2, Zhu et al., 2019).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import deform_conv2d

from .common import ClassifierMixin, ConvBNAct


def deform_conv2d_reference(
    x: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Deformable convolution written out with ``grid_sample``: equals ``torchvision.ops.deform_conv2d``.

    ``offset`` is [B, 2 k_h k_w, H_out, W_out] holding (Δy, Δx) for each kernel point in row-major order.
    """
    B, C, H, W = x.shape
    C_out, C_in, kh, kw = weight.shape
    if C_in != C:
        raise ValueError(f"weight expects {C_in} input channels, x has {C}")
    H_out, W_out = offset.shape[-2:]
    if offset.shape[1] != 2 * kh * kw:
        raise ValueError(
            f"offset has {offset.shape[1]} channels; a {kh}x{kw} kernel needs {2 * kh * kw}"
        )
    base_y = (
        (torch.arange(H_out, device=x.device) * stride - padding)
        .view(1, H_out, 1)
        .float()
    )
    base_x = (
        (torch.arange(W_out, device=x.device) * stride - padding)
        .view(1, 1, W_out)
        .float()
    )
    y = x.new_zeros(B, C_out, H_out, W_out)
    for n in range(kh * kw):
        u, v = divmod(n, kw)
        # p = p0 + p_n + Δp_n, in pixels of x
        py = base_y + u * dilation + offset[:, 2 * n]  # [B, H_out, W_out]
        px = base_x + v * dilation + offset[:, 2 * n + 1]
        grid = torch.stack(
            [2 * px / max(W - 1, 1) - 1, 2 * py / max(H - 1, 1) - 1], dim=-1
        )  # [B, H_out, W_out, 2]
        sample = F.grid_sample(
            x, grid, mode="bilinear", padding_mode="zeros", align_corners=True
        )  # [B, C, H_out, W_out]
        if mask is not None:
            sample = sample * mask[:, n : n + 1]
        y += torch.einsum("oc,bchw->bohw", weight[:, :, u, v], sample)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


# Two kernels for the same function (the tests check they agree): torchvision's C++/CUDA operator, and the
# grid_sample formulation above, whose backward pass measured 4-5x faster on this CPU.
IMPLEMENTATIONS = {
    "torchvision": deform_conv2d,
    "grid_sample": deform_conv2d_reference,
}


class DeformConv2d(nn.Module):
    """A k x k convolution whose sampling grid is shifted per position by offsets predicted from the input.

    ``impl`` picks the kernel: ``"torchvision"`` (``torchvision.ops.deform_conv2d``) or ``"grid_sample"``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        bias: bool = False,
        modulated: bool = False,
        impl: str = "torchvision",
    ):
        super().__init__()
        if impl not in IMPLEMENTATIONS:
            raise ValueError(
                f"impl={impl!r} is unknown; choose one of {sorted(IMPLEMENTATIONS)}"
            )
        self.stride, self.padding, self.modulated, self.impl = (
            stride,
            padding,
            modulated,
            impl,
        )
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels, kernel_size, kernel_size)
        )
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        k2 = kernel_size * kernel_size
        # the offset branch: an ordinary convolution with the same geometry, 2 k^2 (+ k^2 mask) outputs
        self.offset_conv = nn.Conv2d(
            in_channels,
            (3 if modulated else 2) * k2,
            kernel_size,
            stride,
            padding,
        )
        nn.init.zeros_(
            self.offset_conv.weight
        )  # start as a plain convolution (Δp = 0)
        nn.init.zeros_(self.offset_conv.bias)
        self.last_offset: torch.Tensor | None = None

    def offsets(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Offsets [B, 2k^2, H_out, W_out] and, for DCN v2, the modulation mask [B, k^2, H_out, W_out]."""
        out = self.offset_conv(x)
        k2 = self.kernel_size**2
        if not self.modulated:
            return out, None
        return out[:, : 2 * k2], torch.sigmoid(out[:, 2 * k2 :])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset, mask = self.offsets(x)
        self.last_offset = offset.detach()
        fn = IMPLEMENTATIONS[self.impl]
        # both kernels run in fp32; under bf16 autocast the inputs are cast back
        return fn(
            x.float(),
            offset.float(),
            self.weight.float(),
            None if self.bias is None else self.bias.float(),
            stride=self.stride,
            padding=self.padding,
            mask=None if mask is None else mask.float(),
        )


def sampling_points(
    layer: DeformConv2d, offset: torch.Tensor, i: int, j: int
) -> torch.Tensor:
    """Input-pixel coordinates (y, x) [k^2, 2] that ``layer`` samples for output position (i, j) of image 0."""
    k = layer.kernel_size
    grid = (
        torch.stack(
            torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij"), -1
        )
        .view(-1, 2)
        .float()
    )
    base = torch.tensor(
        [i * layer.stride - layer.padding, j * layer.stride - layer.padding]
    ).float()
    delta = offset[0, :, i, j].view(k * k, 2)  # (Δy, Δx) per kernel point
    return base + grid + delta


class DeformableNet(ClassifierMixin, nn.Module):
    """A small CNN whose last two 3x3 layers are deformable (as Dai et al. deform the last layers of ResNet-101)."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        width: int = 32,
        modulated: bool = False,
        impl: str = "torchvision",
    ):
        super().__init__()
        self.stem = nn.Sequential(
            ConvBNAct(in_channels, width, 3),
            ConvBNAct(width, width, 3, 2),
            ConvBNAct(width, 2 * width, 3),
        )  # [B, 2w, H/2, W/2]
        self.deform1 = DeformConv2d(
            2 * width, 2 * width, 3, 1, 1, modulated=modulated, impl=impl
        )
        self.bn1 = nn.BatchNorm2d(2 * width)
        self.deform2 = DeformConv2d(
            2 * width, 4 * width, 3, 1, 1, modulated=modulated, impl=impl
        )
        self.bn2 = nn.BatchNorm2d(4 * width)
        self.num_features = 4 * width
        self.fc = nn.Linear(4 * width, num_classes)

    def features_map(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = F.relu(self.bn1(self.deform1(x)))
        return F.relu(self.bn2(self.deform2(x)))

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.fc(fmap.mean((2, 3)))  # global average pooling, linear


def deformable_mini(
    num_classes: int = 10,
    in_channels: int = 3,
    width: int = 16,
    modulated: bool = False,
    impl: str = "torchvision",
) -> DeformableNet:
    """The miniature with deformable layers for 32x32 inputs."""
    return DeformableNet(num_classes, in_channels, width, modulated, impl)


def set_implementation(model: nn.Module, impl: str) -> nn.Module:
    """Switch every :class:`DeformConv2d` in ``model`` to kernel ``impl`` (the weights are shared by both)."""
    if impl not in IMPLEMENTATIONS:
        raise ValueError(
            f"impl={impl!r} is unknown; choose one of {sorted(IMPLEMENTATIONS)}"
        )
    for m in model.modules():
        if isinstance(m, DeformConv2d):
            m.impl = impl
    return model
