"""The Vision Transformer and how to look inside it (chapter 4, ``chapters/04c_vit``).

* :class:`ViT` -- Dosovitskiy et al. (2020): linear patch embedding, [CLS] token, learned 1-D
  positions, pre-norm encoder, classification head; 2-D interpolation of the positions so a
  trained model runs at another image size; an optional CNN stem (the paper's *hybrid*)
* :data:`VIT_CONFIGS` and the named builders :func:`vit_b16`, :func:`vit_l16`, :func:`vit_h14`
  (the paper's Table 1), :func:`vit_toy` and :func:`hybrid_vit_toy` for the toy world
* :func:`attention_rollout` -- Abnar & Zuidema (2020): attention propagated through the layers
* :func:`attention_share_on_mask` -- how much of a map falls on given pixels
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import TransformerBlock, init_transformer_weights


class PatchEmbedding(nn.Module):
    """Cut an image into P x P patches, flatten each and project it linearly: x_p E (Dosovitskiy et al., 2020)."""

    def __init__(self, patch_size: int, in_channels: int, dim: int):
        super().__init__()
        self.patch_size, self.in_channels = patch_size, in_channels
        self.proj = nn.Linear(
            patch_size * patch_size * in_channels, dim
        )  # E: [P^2 C, D]

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """``[B, C, H, W]`` -> tokens ``[B, N, dim]`` and the patch grid ``(H/P, W/P)``."""
        B, C, H, W = x.shape
        P = self.patch_size
        if C != self.in_channels:
            raise ValueError(
                f"expected {self.in_channels} input channels, got {C}"
            )
        if H % P or W % P:
            raise ValueError(
                f"patch_size={P} does not divide the image size {H}x{W}"
            )
        gh, gw = H // P, W // P
        # "b c (h p) (w q) -> b (h w) (p q c)"
        patches = (
            x.reshape(B, C, gh, P, gw, P)
            .permute(0, 2, 4, 3, 5, 1)
            .reshape(B, gh * gw, P * P * C)
        )
        return self.proj(patches), (gh, gw)


def resize_position_embedding(
    pos: Tensor,
    old_grid: tuple[int, int],
    new_grid: tuple[int, int],
    num_prefix: int = 1,
) -> Tensor:
    """Resize learned patch positions ``[1, prefix + gh*gw, D]`` to a new grid, bicubically in 2-D (as ViT does)."""
    if tuple(old_grid) == tuple(new_grid):
        return pos
    prefix, grid = pos[:, :num_prefix], pos[:, num_prefix:]
    D = grid.shape[-1]
    # [1, gh*gw, D] -> [1, D, gh, gw] -> resize -> [1, D, gh', gw'] -> [1, gh'*gw', D]
    grid = grid.reshape(1, old_grid[0], old_grid[1], D).permute(0, 3, 1, 2)
    grid = F.interpolate(
        grid, size=tuple(new_grid), mode="bicubic", align_corners=False
    )
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], D)
    return torch.cat([prefix, grid], dim=1)


class ViT(nn.Module):
    """Vision Transformer (Dosovitskiy et al., 2020): patches, [CLS], learned 1-D positions, pre-norm encoder, head.

    ``stem``: an optional CNN mapping ``[B, in_channels, H, W]`` to a feature map ``[B, C', H', W']``
    whose 1 x 1 (or ``patch_size``) patches become the tokens -- the paper's *hybrid* model.
    A model trained at ``image_size`` also runs at other sizes: its position embeddings are
    interpolated in 2-D to the new patch grid.
    """

    def __init__(
        self,
        image_size: int = 32,
        patch_size: int = 4,
        in_channels: int = 3,
        num_classes: int = 10,
        dim: int = 64,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        stem: nn.Module | None = None,
        stem_channels: int | None = None,
        stem_stride: int = 1,
    ):
        super().__init__()
        if stem is not None and stem_channels is None:
            raise ValueError(
                "a hybrid ViT needs stem_channels (the channels of the stem's feature map)"
            )
        feature_size = image_size // stem_stride
        if image_size % stem_stride or feature_size % patch_size:
            raise ValueError(
                f"patch_size={patch_size} does not divide image_size={image_size}"
                + (f" / stem_stride={stem_stride}" if stem is not None else "")
            )
        if depth < 1:
            raise ValueError(f"depth={depth} must be at least 1")
        self.image_size, self.patch_size, self.stem_stride = (
            image_size,
            patch_size,
            stem_stride,
        )
        self.stem = stem
        self.grid = (feature_size // patch_size, feature_size // patch_size)
        num_patches = self.grid[0] * self.grid[1]
        self.patch_embed = PatchEmbedding(
            patch_size, stem_channels if stem is not None else in_channels, dim
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))  # x_class
        self.pos_embed = nn.Parameter(
            torch.zeros(1, 1 + num_patches, dim)
        )  # E_pos, learned, 1-D
        self.pos_drop = nn.Dropout(dropout)
        # LayerNorm epsilon 1e-6, as in the paper's implementation
        self.blocks = nn.ModuleList(
            TransformerBlock(
                dim, num_heads, mlp_ratio, dropout, layer_norm_eps=1e-6
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(init_transformer_weights)

    def forward_features(
        self, x: Tensor, need_weights: bool = False
    ) -> Tensor:
        """Tokens after the final LayerNorm, ``[B, 1 + N, dim]`` with [CLS] first."""
        if self.stem is not None:
            x = self.stem(x)  # [B, C', H', W']
        tokens, grid = self.patch_embed(x)  # [B, N, dim]
        pos = resize_position_embedding(
            self.pos_embed, self.grid, grid
        )  # [1, 1 + N, dim]
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)  # [B, 1, dim]
        # z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos
        z = self.pos_drop(torch.cat([cls, tokens], dim=1) + pos)
        for block in self.blocks:
            z = block(z, need_weights=need_weights)
        return self.norm(z)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits from the [CLS] token: y = head(LN(z_L^0))."""
        return self.head(self.forward_features(x)[:, 0])

    @torch.no_grad()
    def attention_maps(self, x: Tensor) -> list[Tensor]:
        """Every block's attention weights for ``x``, each ``[B, heads, 1 + N, 1 + N]`` (call ``.eval()`` first)."""
        self.forward_features(x, need_weights=True)
        return [block.last_attention for block in self.blocks]


# --------------------------------------------------------------------------- the paper's models, as data
@dataclass(frozen=True)
class ViTConfig:
    """One row of Table 1 of Dosovitskiy et al. (2020)."""

    dim: int  # hidden size D
    depth: int  # layers
    num_heads: int
    mlp_dim: int  # MLP size


VIT_CONFIGS: dict[str, ViTConfig] = {
    "ViT-Base": ViTConfig(
        dim=768, depth=12, num_heads=12, mlp_dim=3072
    ),  # 86M parameters
    "ViT-Large": ViTConfig(
        dim=1024, depth=24, num_heads=16, mlp_dim=4096
    ),  # 307M
    "ViT-Huge": ViTConfig(
        dim=1280, depth=32, num_heads=16, mlp_dim=5120
    ),  # 632M
}


def _vit_from_table(
    name: str, patch_size: int, num_classes: int, image_size: int
) -> ViT:
    cfg = VIT_CONFIGS[name]
    return ViT(
        image_size=image_size,
        patch_size=patch_size,
        in_channels=3,
        num_classes=num_classes,
        dim=cfg.dim,
        depth=cfg.depth,
        num_heads=cfg.num_heads,
        mlp_ratio=cfg.mlp_dim / cfg.dim,
    )


def vit_b16(num_classes: int = 1000, image_size: int = 224) -> ViT:
    """ViT-B/16 (Dosovitskiy et al., 2020): ViT-Base on 16 x 16 patches."""
    return _vit_from_table("ViT-Base", 16, num_classes, image_size)


def vit_l16(num_classes: int = 1000, image_size: int = 224) -> ViT:
    """ViT-L/16 (Dosovitskiy et al., 2020): ViT-Large on 16 x 16 patches."""
    return _vit_from_table("ViT-Large", 16, num_classes, image_size)


def vit_h14(num_classes: int = 1000, image_size: int = 224) -> ViT:
    """ViT-H/14 (Dosovitskiy et al., 2020): ViT-Huge on 14 x 14 patches."""
    return _vit_from_table("ViT-Huge", 14, num_classes, image_size)


def vit_toy(
    num_classes: int = 6,
    image_size: int = 32,
    patch_size: int = 4,
    dim: int = 64,
    depth: int = 4,
    num_heads: int = 4,
    mlp_ratio: float = 2.0,
    dropout: float = 0.0,
) -> ViT:
    """A ViT small enough to train on the toy world on a CPU: 4 x 4 patches of a 32 x 32 image = 64 tokens."""
    return ViT(
        image_size=image_size,
        patch_size=patch_size,
        num_classes=num_classes,
        dim=dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=mlp_ratio,
        dropout=dropout,
    )


class FeatureMapStem(nn.Module):
    """Wrap a CNN with ``forward_features(x, pool=False)`` so it returns its last feature map ``[B, C, h, w]``."""

    def __init__(self, cnn: nn.Module):
        super().__init__()
        if not hasattr(cnn, "forward_features"):
            raise TypeError(
                f"{type(cnn).__name__} has no forward_features(x, pool=False)"
            )
        self.cnn = cnn

    def forward(self, x: Tensor) -> Tensor:
        return self.cnn.forward_features(x, pool=False)


def hybrid_vit_toy(
    num_classes: int = 6,
    image_size: int = 32,
    dim: int = 64,
    depth: int = 4,
    num_heads: int = 4,
    mlp_ratio: float = 2.0,
    cnn_width: int = 16,
    patch_size: int = 1,
) -> ViT:
    """The hybrid ViT (Dosovitskiy et al., 2020, Sec. 3.1): tokens are patches of a ResNet's feature map.

    The stem is the CIFAR-style ResNet of chapter 3 (:func:`vnotes.cnn.resnet_mini`, stages of
    width w, 2w, 4w, stride 4 overall), so a 32 x 32 image gives an 8 x 8 map: 64 tokens with the
    paper's 1 x 1 patches, 16 with ``patch_size=2``.
    """
    from vnotes.cnn import resnet_mini  # chapter 3

    cnn = resnet_mini(
        num_classes=num_classes, width=cnn_width, blocks=(1, 1, 1)
    )
    cnn.fc = (
        nn.Identity()
    )  # the classifier is never used, only the feature map
    return ViT(
        image_size=image_size,
        patch_size=patch_size,
        num_classes=num_classes,
        dim=dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=mlp_ratio,
        stem=FeatureMapStem(cnn),
        stem_channels=cnn.num_features,
        stem_stride=4,
    )


# --------------------------------------------------------------------------- looking inside
def attention_rollout(
    attentions: list[Tensor],
    residual_weight: float = 0.5,
    head_fusion: str = "mean",
) -> Tensor:
    """Attention rollout (Abnar & Zuidema, 2020): R = prod_l (w I + (1 - w) A_l), rows renormalised.

    ``attentions``: per layer ``[B, heads, T, T]`` (first layer first). Returns ``[B, T, T]``; row 0
    is how much each token contributed to the final [CLS] token.
    """
    if not attentions:
        raise ValueError(
            "attention_rollout needs at least one layer's attention weights"
        )
    if head_fusion not in ("mean", "max", "min"):
        raise ValueError(
            f"head_fusion={head_fusion!r} is unknown; allowed: 'mean', 'max', 'min'"
        )
    if not 0.0 <= residual_weight <= 1.0:
        raise ValueError(
            f"residual_weight={residual_weight} must lie in [0, 1]"
        )
    T = attentions[0].shape[-1]
    eye = torch.eye(T, device=attentions[0].device, dtype=attentions[0].dtype)
    rollout = eye.expand(attentions[0].shape[0], T, T)
    for a in attentions:
        a = {
            "mean": a.mean(dim=1),
            "max": a.amax(dim=1),
            "min": a.amin(dim=1),
        }[head_fusion]  # [B, T, T]
        # the residual connection carries each token through unchanged: A_hat = w I + (1 - w) A
        a = residual_weight * eye + (1.0 - residual_weight) * a
        a = a / a.sum(dim=-1, keepdim=True)
        # layer l mixes the mixtures of layer l-1: R_l = A_hat_l R_{l-1}              [B, T, T]
        rollout = a @ rollout
    return rollout


def cls_attention_grid(attention: Tensor, grid: tuple[int, int]) -> Tensor:
    """The [CLS] row of an attention (or rollout) matrix, without [CLS] itself, as a patch grid ``[B, gh, gw]``."""
    gh, gw = grid
    if attention.shape[-1] != 1 + gh * gw:
        raise ValueError(
            f"attention over {attention.shape[-1]} tokens does not fit [CLS] + a {gh}x{gw} grid"
        )
    return attention[..., 0, 1:].reshape(*attention.shape[:-2], gh, gw)


def attention_share_on_mask(maps: Tensor, masks: Tensor) -> Tensor:
    """Share of each map's mass that falls on the mask's pixels: sum(m * 1_mask) / sum(m), per image ``[B]``.

    ``maps``: ``[B, gh, gw]`` (one value per patch, spread evenly over the patch's pixels);
    ``masks``: ``[B, H, W]`` boolean. Compare with the mask's share of the image, ``masks.float().mean((1, 2))``.
    """
    if maps.dim() != 3 or masks.dim() != 3 or maps.shape[0] != masks.shape[0]:
        raise ValueError(
            f"need maps [B, gh, gw] and masks [B, H, W]; got {tuple(maps.shape)} and {tuple(masks.shape)}"
        )
    H, W = masks.shape[-2:]
    gh, gw = maps.shape[-2:]
    if H % gh or W % gw:
        raise ValueError(f"a {gh}x{gw} map does not tile a {H}x{W} image")
    # the share of each patch covered by the mask                                  [B, gh, gw]
    covered = F.avg_pool2d(
        masks.float()[:, None], kernel_size=(H // gh, W // gw)
    )[:, 0]
    return (maps * covered).sum((1, 2)) / maps.sum((1, 2))
