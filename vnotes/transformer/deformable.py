"""Deformable attention (Zhu et al., 2021), single scale: each query looks at a few sampled points (``04e_deformable``).

For query q with reference point p_q (its own position), head m and sampling point k:

    DeformAttn(z_q, p_q, x) = sum_m W_m [ sum_k A_mqk * W'_m x(p_q + Delta p_mqk) ]

The offsets Delta p_mqk and the weights A_mqk (softmax over k) are linear functions of z_q;
x(p) is read by bilinear interpolation. The cost grows with H*W*K instead of (H*W)^2.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import MLP, init_transformer_weights
from .vit import PatchEmbedding


def reference_points(
    H: int, W: int, device: torch.device | str | None = None
) -> Tensor:
    """The centres of an H x W grid of cells in normalised (x, y) coordinates in [0, 1], ``[H*W, 2]``, row by row."""
    ys = (torch.arange(H, device=device, dtype=torch.float32) + 0.5) / H
    xs = (torch.arange(W, device=device, dtype=torch.float32) + 0.5) / W
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=-1)


def bilinear_sample(value: Tensor, locations: Tensor) -> Tensor:
    """Read ``value`` ``[N, C, H, W]`` at ``locations`` ``[N, Q, P, 2]`` (x, y in [0, 1]) -> ``[N, C, Q, P]``.

    Pixel centres sit at (i + 0.5) / size; points outside the map read zeros.
    """
    # grid_sample wants coordinates in [-1, 1] with align_corners=False: g = 2 p - 1
    return F.grid_sample(
        value,
        2.0 * locations - 1.0,
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )


class DeformableAttention(nn.Module):
    """Single-scale deformable attention (Zhu et al., 2021, Eq. 2) with the paper's initialisation."""

    def __init__(self, dim: int, num_heads: int = 4, num_points: int = 4):
        super().__init__()
        if dim % num_heads:
            raise ValueError(
                f"dim={dim} must be a multiple of num_heads={num_heads}"
            )
        if num_points < 1:
            raise ValueError(f"num_points={num_points} must be at least 1")
        self.dim, self.num_heads, self.num_points = dim, num_heads, num_points
        self.head_dim = dim // num_heads
        self.sampling_offsets = nn.Linear(
            dim, num_heads * num_points * 2
        )  # Delta p_mqk, in cells
        self.attention_weights = nn.Linear(
            dim, num_heads * num_points
        )  # A_mqk before the softmax
        self.value_proj = nn.Linear(dim, dim)  # W'_m for all heads
        self.output_proj = nn.Linear(dim, dim)  # W_m for all heads
        self.last_locations: Tensor | None = (
            None  # [B, Q, heads, points, 2] after need_weights=True
        )
        self.last_attention: Tensor | None = None  # [B, Q, heads, points]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As in the paper's code: zero offset weights, and biases that start head m looking in direction 2 pi m / M,
        point k at distance k + 1; uniform attention weights."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.num_heads, dtype=torch.float32) * (
            2.0 * math.pi / self.num_heads
        )
        directions = torch.stack(
            [angles.cos(), angles.sin()], -1
        )  # [heads, 2]
        directions = directions / directions.abs().max(-1, keepdim=True).values
        bias = (
            directions[:, None, :]
            * torch.arange(1, self.num_points + 1, dtype=torch.float32)[
                None, :, None
            ]
        )
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(bias.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for layer in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(
        self,
        query: Tensor,
        reference: Tensor,
        value: Tensor,
        need_weights: bool = False,
    ) -> Tensor:
        """``query`` [B, Q, C], ``reference`` [B or 1, Q, 2] (x, y in [0, 1]), ``value`` [B, H, W, C] -> [B, Q, C]."""
        B, Q, C = query.shape
        _, H, W, _ = value.shape
        M, K, d = self.num_heads, self.num_points, self.head_dim
        v = self.value_proj(value)  # [B, H, W, C]
        v = (
            v.view(B, H, W, M, d)
            .permute(0, 3, 4, 1, 2)
            .reshape(B * M, d, H, W)
        )  # [B*M, d, H, W]
        # offsets are predicted in grid cells; divide by (W, H) to move in normalised coordinates
        offsets = self.sampling_offsets(query).view(B, Q, M, K, 2)
        scale = torch.tensor([W, H], dtype=query.dtype, device=query.device)
        locations = (
            reference[:, :, None, None, :] + offsets / scale
        )  # [B, Q, M, K, 2]
        # A_mqk = softmax over the K points of each head
        weights = (
            self.attention_weights(query).view(B, Q, M, K).softmax(dim=-1)
        )  # [B, Q, M, K]
        grid = locations.permute(0, 2, 1, 3, 4).reshape(B * M, Q, K, 2)
        sampled = bilinear_sample(v, grid)  # [B*M, d, Q, K]
        w = weights.permute(0, 2, 1, 3).reshape(B * M, 1, Q, K)
        # sum_k A_mqk W'_m x(p_q + Delta p_mqk), then concatenate the heads
        out = (
            (sampled * w)
            .sum(-1)
            .view(B, M, d, Q)
            .permute(0, 3, 1, 2)
            .reshape(B, Q, C)
        )
        if need_weights:
            self.last_locations, self.last_attention = (
                locations.detach(),
                weights.detach(),
            )
        return self.output_proj(out)


class DeformableBlock(nn.Module):
    """A pre-norm encoder block with deformable self-attention: each token samples K points per head around itself."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        num_points: int = 4,
        mlp_ratio: float = 2.0,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = DeformableAttention(dim, num_heads, num_points)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(
        self, x: Tensor, grid: tuple[int, int], need_weights: bool = False
    ) -> Tensor:
        """``x``: tokens ``[B, H*W, C]`` of an H x W grid (row by row)."""
        B, N, C = x.shape
        H, W = grid
        h = self.norm1(x)
        ref = reference_points(H, W, x.device)[None].to(x.dtype)  # [1, N, 2]
        x = x + self.attn(h, ref, h.view(B, H, W, C), need_weights)
        return x + self.mlp(self.norm2(x))


class DeformableViT(nn.Module):
    """An image classifier of deformable-attention blocks: patches, learned positions, blocks, mean pool, head."""

    def __init__(
        self,
        image_size: int = 32,
        patch_size: int = 4,
        in_channels: int = 3,
        num_classes: int = 10,
        dim: int = 64,
        depth: int = 4,
        num_heads: int = 4,
        num_points: int = 4,
        mlp_ratio: float = 2.0,
    ):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(
                f"patch_size={patch_size} does not divide image_size={image_size}"
            )
        self.grid = (image_size // patch_size, image_size // patch_size)
        self.patch_embed = PatchEmbedding(patch_size, in_channels, dim)
        self.pos_embed = nn.Parameter(
            torch.zeros(1, self.grid[0] * self.grid[1], dim)
        )
        self.blocks = nn.ModuleList(
            DeformableBlock(dim, num_heads, num_points, mlp_ratio)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.apply(init_transformer_weights)
        for block in self.blocks:
            block.attn.reset_parameters()  # deformable attention keeps the paper's own initialisation
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward_features(
        self, x: Tensor, need_weights: bool = False
    ) -> Tensor:
        """Tokens after the last block and the LayerNorm, ``[B, H*W, dim]``."""
        tokens, grid = self.patch_embed(x)
        if grid != self.grid:
            raise ValueError(
                f"this model was built for a {self.grid} patch grid; got {grid}"
            )
        z = tokens + self.pos_embed
        for block in self.blocks:
            z = block(z, grid, need_weights)
        return self.norm(z)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x).mean(dim=1))

    @torch.no_grad()
    def sampling_points(self, x: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Per block: sampling locations [B, N, heads, points, 2] (x, y in [0, 1]) and weights [B, N, heads, points]."""
        self.forward_features(x, need_weights=True)
        return [
            (b.attn.last_locations, b.attn.last_attention) for b in self.blocks
        ]
