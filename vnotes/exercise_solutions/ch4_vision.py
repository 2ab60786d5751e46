"""Chapter 4, vision Transformers (pages 4d, 4e, 4f): reference solutions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "shifted_window_mask",
    "token_mixing",
    "bilinear_sample",
    "reference_points",
    "shift_images",
    "vit_parameter_count",
]


def shifted_window_mask(H, W, window_size, shift):
    """Boolean [nW, M*M, M*M]: True where two tokens of one window of the rolled
    grid may attend, i.e. came from the same part of the image (Liu et al., 2021).

    Chapter 4d; the book's version is
    ``vnotes.transformer.shifted_window_mask``.
    """
    M = window_size
    # the roll moves the top `shift` rows (and left columns) to the bottom (right): label the rows of
    # the rolled grid by where they came from, in three bands, and the columns likewise
    regions = torch.zeros(H, W, dtype=torch.long)
    if shift > 0:
        bands = (slice(0, -M), slice(-M, -shift), slice(-shift, None))
        for i, rows in enumerate(bands):
            for j, cols in enumerate(bands):
                regions[rows, cols] = 3 * i + j
    # cut the label map into M x M windows, tokens row by row: [nW, M*M]
    ids = regions.view(H // M, M, W // M, M).permute(0, 2, 1, 3)
    ids = ids.reshape(-1, M * M)
    # a pair may attend when both tokens carry the same label
    return ids[:, :, None] == ids[:, None, :]


def token_mixing(x, w1, b1, w2, b2):
    """The token-mixing MLP of MLP-Mixer (Tolstikhin et al., 2021):
    (W2 GELU(W1 X^T + b1) + b2)^T, one MLP over the S patches, shared by every channel.

    Chapter 4d; the book's version is ``vnotes.transformer.MixerBlock``.
    """
    xt = x.transpose(
        1, 2
    )  # [B, S, C] -> [B, C, S]: a row of S patch values per channel
    h = F.gelu(xt @ w1.T + b1)  # [B, C, hidden]
    out = h @ w2.T + b2  # [B, C, S]
    return out.transpose(1, 2)  # back to [B, S, C]


def bilinear_sample(value, locations):
    """Read value [N, C, H, W] at locations [N, Q, P, 2] ((x, y) in [0, 1], pixel
    centres at (i + 0.5) / size, zeros outside) -> [N, C, Q, P] (Zhu et al., 2021).

    Chapter 4e; the book's version is ``vnotes.transformer.bilinear_sample``
    (which calls ``F.grid_sample``).
    """
    N, C, H, W = value.shape
    # continuous pixel coordinates: pixel i's centre sits at i
    px = locations[..., 0] * W - 0.5  # [N, Q, P]
    py = locations[..., 1] * H - 0.5
    x0, y0 = px.floor(), py.floor()
    fx, fy = px - x0, py - y0  # how far past the left/top neighbour
    x0, y0 = x0.long(), y0.long()
    flat = value.reshape(N, C, H * W)
    out = 0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            inside = (
                (xi >= 0) & (xi < W) & (yi >= 0) & (yi < H)
            )  # outside reads 0
            idx = (yi.clamp(0, H - 1) * W + xi.clamp(0, W - 1)).view(N, 1, -1)
            v = flat.gather(2, idx.expand(N, C, -1)).view(N, C, *px.shape[1:])
            out = out + v * (wx * wy * inside)[:, None]
    return out


def reference_points(H, W):
    """The centres of an H x W grid of cells, (x, y) in [0, 1], row by row: [H*W, 2]
    (Zhu et al., 2021).

    Chapter 4e; the book's version is ``vnotes.transformer.reference_points``.
    """
    ys = (torch.arange(H, dtype=torch.float32) + 0.5) / H  # row centres
    xs = (torch.arange(W, dtype=torch.float32) + 0.5) / W  # column centres
    y, x = torch.meshgrid(ys, xs, indexing="ij")  # [H, W] each, row by row
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=-1)  # x first


def shift_images(images, dx, dy, fill):
    """Move each image's content dx pixels right and dy down (negative: left,
    up); the uncovered border gets the number fill.

    Chapter 4f; the book's version is
    ``vnotes.transformer.inductive_bias.shift_images``.
    """
    N, C, H, W = images.shape
    out = torch.full_like(
        images, fill
    )  # a new tensor: the input stays as it was
    # output pixel (y, x) reads input pixel (y - dy, x - dx), where that lies inside the image
    out[..., max(dy, 0) : H + min(dy, 0), max(dx, 0) : W + min(dx, 0)] = (
        images[
            ..., max(-dy, 0) : H + min(-dy, 0), max(-dx, 0) : W + min(-dx, 0)
        ]
    )
    return out


def vit_parameter_count(
    image_size, patch_size, dim, depth, num_heads, mlp_ratio, num_classes
):
    """The parameters of a ViT (Dosovitskiy et al., 2021) as
    ``vnotes.transformer.vit_toy`` builds it, for RGB images.

    Chapter 4f; the book counts them with
    ``vnotes.cnn.common.count_parameters``.
    """
    num_patches = (image_size // patch_size) ** 2
    hidden = int(dim * mlp_ratio)
    embed = (patch_size * patch_size * 3) * dim + dim  # E and its bias
    tokens = dim + (num_patches + 1) * dim  # [CLS] and one position per token
    attention = 4 * (
        dim * dim + dim
    )  # W^Q, W^K, W^V, W^O: the heads split them, not add to them
    mlp = (dim * hidden + hidden) + (hidden * dim + dim)
    norms = 2 * (2 * dim)  # two LayerNorms per block, a scale and a shift each
    head = (
        2 * dim + dim * num_classes + num_classes
    )  # final LayerNorm and classifier
    return embed + tokens + depth * (attention + mlp + norms) + head
