"""The Swin Transformer (Liu et al., 2021): attention inside shifted windows, in a hierarchy (``04d_swin_mixer``).

Each stage works on a grid of tokens ``[B, H, W, C]``. Its blocks alternate two kinds of
window attention: W-MSA attends within non-overlapping M x M windows; SW-MSA first rolls the
grid by M/2 so that the new windows straddle the old borders, and masks the pairs of tokens
that the roll brought together from opposite edges. Every window adds a learned bias that
depends only on the relative position of two tokens. Between stages, patch merging
concatenates each 2 x 2 group of tokens (4C channels) and projects them to 2C, halving the grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .attention import (
    MLP,
    init_transformer_weights,
    fused_attention,
    scaled_dot_product_attention,
)
from .vit import PatchEmbedding


# --------------------------------------------------------------------------- windows
def window_partition(x: Tensor, window_size: int) -> Tensor:
    """``[B, H, W, C]`` -> ``[B * nW, M * M, C]``: the tokens of each M x M window, row by row."""
    B, H, W, C = x.shape
    M = window_size
    if H % M or W % M:
        raise ValueError(
            f"window_size={M} does not divide the {H}x{W} token grid"
        )
    x = x.view(B, H // M, M, W // M, M, C).permute(
        0, 1, 3, 2, 4, 5
    )  # [B, H/M, W/M, M, M, C]
    return x.reshape(-1, M * M, C)


def window_reverse(
    windows: Tensor, window_size: int, H: int, W: int
) -> Tensor:
    """Inverse of :func:`window_partition`: ``[B * nW, M * M, C]`` -> ``[B, H, W, C]``."""
    M = window_size
    C = windows.shape[-1]
    x = windows.view(-1, H // M, W // M, M, M, C).permute(
        0, 1, 3, 2, 4, 5
    )  # [B, H/M, M, W/M, M, C]
    return x.reshape(-1, H, W, C)


def shifted_window_regions(
    H: int, W: int, window_size: int, shift: int
) -> Tensor:
    """Region ids ``[H, W]`` of the rolled grid: tokens with different ids came from different parts of the image.

    After rolling by ``shift``, the last M - shift ... rows mix tokens from the bottom edge with
    tokens from the top edge; each horizontal band (3) times each vertical band (3) gets its own id.
    """
    regions = torch.zeros(H, W, dtype=torch.long)
    M = window_size
    bands = (slice(0, -M), slice(-M, -shift), slice(-shift, None))
    count = 0
    for rows in bands:
        for cols in bands:
            regions[rows, cols] = count
            count += 1
    return regions


def shifted_window_mask(
    H: int, W: int, window_size: int, shift: int
) -> Tensor:
    """Boolean ``[nW, M*M, M*M]``, True where two tokens of a shifted window may attend to each other."""
    if shift == 0:
        return torch.ones(
            (H // window_size) * (W // window_size),
            window_size**2,
            window_size**2,
            dtype=torch.bool,
        )
    if not 0 < shift < window_size:
        raise ValueError(
            f"shift={shift} must lie in (0, window_size={window_size})"
        )
    regions = shifted_window_regions(H, W, window_size, shift)
    ids = window_partition(regions[None, :, :, None], window_size)[
        ..., 0
    ]  # [nW, M*M]
    # attend only within the same region: same id <=> neighbours in the original image
    return ids[:, :, None] == ids[:, None, :]


def relative_position_index(window_size: int) -> Tensor:
    """``[M*M, M*M]`` index into the ``(2M-1)^2`` bias table for every pair of tokens in a window."""
    M = window_size
    coords = torch.stack(
        torch.meshgrid(torch.arange(M), torch.arange(M), indexing="ij")
    ).flatten(1)  # [2, M*M]
    # relative offset (dy, dx) of token j seen from token i, each in -(M-1)..M-1, shifted to 0..2M-2
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (
        M - 1
    )  # [M*M, M*M, 2]
    return rel[..., 0] * (2 * M - 1) + rel[..., 1]


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with a learned relative position bias B (Liu et al., 2021, Eq. 4).

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d) + B + mask) V.
    """

    def __init__(self, dim: int, window_size: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(
                f"dim={dim} must be a multiple of num_heads={num_heads}"
            )
        self.dim, self.window_size, self.num_heads = (
            dim,
            window_size,
            num_heads,
        )
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        # B_hat in R^{(2M-1) x (2M-1)} per head; B is read from it by relative offset
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads)
        )
        self.register_buffer(
            "relative_position_index",
            relative_position_index(window_size),
            persistent=False,
        )
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.last_attention: Tensor | None = None  # [B * nW, heads, M*M, M*M]

    def relative_position_bias(self) -> Tensor:
        """``[heads, M*M, M*M]``: the bias added to every window's attention scores."""
        N = self.window_size**2
        bias = self.relative_position_bias_table[
            self.relative_position_index.reshape(-1)
        ]  # [N*N, heads]
        return bias.view(N, N, self.num_heads).permute(2, 0, 1)

    def forward(
        self,
        windows: Tensor,
        mask: Tensor | None = None,
        need_weights: bool = False,
    ) -> Tensor:
        """``windows``: ``[B * nW, N, C]``; ``mask``: bool ``[nW, N, N]`` (True = attend) or None."""
        Bw, N, C = windows.shape
        qkv = (
            self.qkv(windows)
            .view(Bw, N, 3, self.num_heads, C // self.num_heads)
            .permute(2, 0, 3, 1, 4)
        )
        q, k, v = qkv[0], qkv[1], qkv[2]  # [B * nW, heads, N, d]
        bias = self.relative_position_bias()[None]  # [1, heads, N, N]
        if mask is not None:
            nW = mask.shape[0]
            blocked = torch.zeros(
                mask.shape, dtype=q.dtype, device=q.device
            ).masked_fill(~mask, float("-inf"))
            # [B, nW, heads, N, N]: each window gets its own mask, every image the same ones
            bias = bias[None] + blocked[None, :, None]
            bias = bias.expand(Bw // nW, -1, -1, -1, -1).reshape(
                Bw, self.num_heads, N, N
            )
        if need_weights:
            out, weights = scaled_dot_product_attention(
                q, k, v, attn_mask=bias
            )
            self.last_attention = weights.detach()
        else:
            out = fused_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.proj(out.transpose(1, 2).reshape(Bw, N, C))


class SwinBlock(nn.Module):
    """One Swin block: z = x + (S)W-MSA(LN(x)); out = z + MLP(LN(z)) (Liu et al., 2021, Eq. 3)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        shift_size: int = 0,
        mlp_ratio: float = 4.0,
    ):
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError(
                f"shift_size={shift_size} must lie in [0, window_size={window_size})"
            )
        self.window_size, self.shift_size = window_size, shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio))
        self._masks: dict[tuple[int, int, str], Tensor] = {}

    def effective_shift(self, H: int, W: int) -> int:
        """The shift used on an H x W grid: none when one window covers the whole grid (nothing to connect)."""
        return 0 if self.window_size >= min(H, W) else self.shift_size

    def mask(self, H: int, W: int, device: torch.device) -> Tensor | None:
        """The shifted-window mask for an H x W grid (cached), or None for plain windows."""
        shift = self.effective_shift(H, W)
        if shift == 0:
            return None
        key = (H, W, str(device))
        if key not in self._masks:
            self._masks[key] = shifted_window_mask(
                H, W, self.window_size, shift
            ).to(device)
        return self._masks[key]

    def forward(self, x: Tensor, need_weights: bool = False) -> Tensor:
        """``x``: ``[B, H, W, C]`` -> ``[B, H, W, C]``."""
        B, H, W, C = x.shape
        M = self.window_size
        shift = self.effective_shift(H, W)
        h = self.norm1(x)
        if shift:
            # cyclic shift up-left by M/2: the new windows straddle the old borders
            h = torch.roll(h, shifts=(-shift, -shift), dims=(1, 2))
        windows = window_partition(h, M)  # [B * nW, M*M, C]
        windows = self.attn(windows, self.mask(H, W, x.device), need_weights)
        h = window_reverse(windows, M, H, W)
        if shift:
            h = torch.roll(h, shifts=(shift, shift), dims=(1, 2))
        x = x + h
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """Concatenate each 2 x 2 group of neighbours (4C) and project to 2C: ``[B, H, W, C]`` -> ``[B, H/2, W/2, 2C]``."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        B, H, W, C = x.shape
        if H % 2 or W % 2:
            raise ValueError(f"patch merging needs an even grid, got {H}x{W}")
        # the four tokens of each 2x2 group, in the paper's order: (0,0), (1,0), (0,1), (1,1)
        x = torch.cat(
            [
                x[:, 0::2, 0::2],
                x[:, 1::2, 0::2],
                x[:, 0::2, 1::2],
                x[:, 1::2, 1::2],
            ],
            dim=-1,
        )
        return self.reduction(self.norm(x))  # [B, H/2, W/2, 2C]


# --------------------------------------------------------------------------- the model
class Swin(nn.Module):
    """Swin Transformer (Liu et al., 2021): patch embedding, stages of (S)W-MSA blocks and patch merging, pooled head."""

    def __init__(
        self,
        image_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 3,
        num_classes: int = 10,
        embed_dim: int = 32,
        depths: tuple[int, ...] = (2, 2),
        num_heads: tuple[int, ...] = (2, 4),
        window_size: int = 4,
        mlp_ratio: float = 4.0,
    ):
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(
                f"depths={depths} and num_heads={num_heads} need one entry per stage"
            )
        grid = image_size // patch_size
        if image_size % patch_size or grid % (2 ** (len(depths) - 1)):
            raise ValueError(
                f"image_size={image_size} / patch_size={patch_size} must halve {len(depths) - 1} times"
            )
        self.patch_size, self.window_size = patch_size, window_size
        self.patch_embed = PatchEmbedding(patch_size, in_channels, embed_dim)
        self.patch_norm = nn.LayerNorm(embed_dim)
        self.stages = nn.ModuleList()
        self.merges = nn.ModuleList()
        dim = embed_dim
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            # blocks alternate W-MSA (no shift) and SW-MSA (shift M/2)
            self.stages.append(
                nn.ModuleList(
                    SwinBlock(
                        dim,
                        heads,
                        window_size,
                        shift_size=0 if j % 2 == 0 else window_size // 2,
                        mlp_ratio=mlp_ratio,
                    )
                    for j in range(depth)
                )
            )
            if i < len(depths) - 1:
                self.merges.append(PatchMerging(dim))
                dim *= 2
        self.num_features = dim
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.apply(init_transformer_weights)

    def forward_features(
        self, x: Tensor, need_weights: bool = False
    ) -> Tensor:
        """The last stage's token grid after the final LayerNorm, ``[B, H', W', C']``."""
        tokens, (gh, gw) = self.patch_embed(x)
        x = self.patch_norm(tokens).view(
            x.shape[0], gh, gw, -1
        )  # [B, H/P, W/P, C]
        for i, stage in enumerate(self.stages):
            for block in stage:
                x = block(x, need_weights=need_weights)
            if i < len(self.merges):
                x = self.merges[i](x)
        return self.norm(x)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits from the average of the last stage's tokens."""
        return self.head(self.forward_features(x).mean(dim=(1, 2)))


@dataclass(frozen=True)
class SwinConfig:
    """One Swin variant (Liu et al., 2021, Sec. 3.3): C, layers per stage, heads per stage (head width 32), window 7."""

    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: int = 7


SWIN_CONFIGS: dict[str, SwinConfig] = {
    "Swin-T": SwinConfig(96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "Swin-S": SwinConfig(96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "Swin-B": SwinConfig(128, (2, 2, 18, 2), (4, 8, 16, 32)),
    "Swin-L": SwinConfig(192, (2, 2, 18, 2), (6, 12, 24, 48)),
}


def _swin_from_table(name: str, num_classes: int) -> Swin:
    cfg = SWIN_CONFIGS[name]
    return Swin(
        image_size=224,
        patch_size=4,
        num_classes=num_classes,
        embed_dim=cfg.embed_dim,
        depths=cfg.depths,
        num_heads=cfg.num_heads,
        window_size=cfg.window_size,
    )


def swin_t(num_classes: int = 1000) -> Swin:
    """Swin-T (Liu et al., 2021) for 224 x 224 images."""
    return _swin_from_table("Swin-T", num_classes)


def swin_s(num_classes: int = 1000) -> Swin:
    """Swin-S (Liu et al., 2021) for 224 x 224 images."""
    return _swin_from_table("Swin-S", num_classes)


def swin_b(num_classes: int = 1000) -> Swin:
    """Swin-B (Liu et al., 2021) for 224 x 224 images."""
    return _swin_from_table("Swin-B", num_classes)


def swin_toy(
    num_classes: int = 6,
    image_size: int = 32,
    embed_dim: int = 32,
    depths: tuple[int, ...] = (2, 2),
    num_heads: tuple[int, ...] = (2, 4),
    window_size: int = 4,
    patch_size: int = 2,
) -> Swin:
    """A two-stage Swin for 32 x 32 toy-world images: 16 x 16 tokens in 4 x 4 windows, then 8 x 8 after merging."""
    return Swin(
        image_size=image_size,
        patch_size=patch_size,
        num_classes=num_classes,
        embed_dim=embed_dim,
        depths=depths,
        num_heads=num_heads,
        window_size=window_size,
    )
