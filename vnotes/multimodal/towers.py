"""The towers every model of chapter 7 is built from: text encoders and image encoders.

* :class:`TextTransformer` -- CLIP's causal text tower (Radford et al., 2021) or a BERT-style
  bidirectional encoder (Devlin et al., 2019), from the blocks of chapter 4
* :class:`AttentionPool2d`, :class:`ResNetTower` -- CLIP's ResNet image encoder with attention pooling
* :func:`image_tokens` -- any image tower's output as tokens ``[B, 1 + N, dim]`` for the fusion models
* :func:`frozen_tokens`, :func:`frozen_features` -- a frozen tower's tokens, per batch or for a whole training set once
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..transformer import (
    MultiHeadAttention,
    TransformerBlock,
    ViT,
    init_transformer_weights,
)
from .data import normalize_pixels


# ----------------------------------------------------------------------------- text tower
class TextTransformer(nn.Module):
    """A Transformer text encoder: token + learned position embeddings, pre-norm blocks, a final LayerNorm.

    ``causal=True`` is CLIP's text tower (Radford et al., 2021): masked self-attention, and the
    caption is summarised by the activation at its [EOS] token. ``causal=False`` is a BERT-style
    encoder (Devlin et al., 2019), summarised by its first token ([BOS] plays [CLS]).
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int = 64,
        depth: int = 2,
        num_heads: int = 4,
        max_len: int = 10,
        mlp_ratio: float = 4.0,
        causal: bool = True,
        pad_id: int = 0,
        eos_id: int | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        if causal and eos_id is None:
            raise ValueError("a causal text tower pools at [EOS]: give eos_id")
        self.causal, self.pad_id, self.eos_id, self.max_len = (
            causal,
            pad_id,
            eos_id,
            max_len,
        )
        self.token_embed = nn.Embedding(vocab_size, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, max_len, dim))
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, mlp_ratio, dropout)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.apply(init_transformer_weights)
        nn.init.normal_(self.token_embed.weight, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.01)

    def embed(self, ids: Tensor) -> Tensor:
        """Token plus position embeddings ``[B, L, dim]``."""
        if ids.shape[1] > self.max_len:
            raise ValueError(
                f"{ids.shape[1]} tokens exceed max_len={self.max_len}"
            )
        return self.token_embed(ids) + self.pos_embed[:, : ids.shape[1]]

    def forward_tokens(
        self, ids: Tensor, need_weights: bool = False
    ) -> Tensor:
        """Every token's features after the final LayerNorm, ``[B, L, dim]``."""
        x = self.embed(ids)
        # a causal tower never looks past [EOS], so padding needs no mask there
        pad = None if self.causal else ids == self.pad_id
        for block in self.blocks:
            x = block(
                x,
                key_padding_mask=pad,
                is_causal=self.causal,
                need_weights=need_weights,
            )
        return self.norm(x)

    def pool(self, ids: Tensor, tokens: Tensor) -> Tensor:
        """The caption's summary ``[B, dim]``: features at [EOS] (causal) or at the first token."""
        if not self.causal:
            return tokens[:, 0]
        has_eos = (ids == self.eos_id).any(1)
        if not has_eos.all():
            raise ValueError(
                "every caption needs an [EOS] token for CLIP's pooling; encode with eos=True"
            )
        eos_at = (ids == self.eos_id).int().argmax(1)  # [B]
        return tokens[torch.arange(ids.shape[0], device=ids.device), eos_at]

    def forward(self, ids: Tensor) -> Tensor:
        return self.pool(ids, self.forward_tokens(ids))


# ----------------------------------------------------------------------------- ResNet image tower
class AttentionPool2d(nn.Module):
    """CLIP's attention pooling (Radford et al., 2021, Sec. 2.4): one multi-head attention layer whose single
    query is the mean of the feature map, attending over [mean; every position] with learned positions.

    It replaces the global average pool of a ResNet; its weights (``.last_attention``) show where
    the image tower looked.
    """

    def __init__(self, grid: int, channels: int, num_heads: int, out_dim: int):
        super().__init__()
        self.pos_embed = nn.Parameter(
            torch.randn(1, grid * grid + 1, channels) / channels**0.5
        )
        self.attn = MultiHeadAttention(channels, num_heads)
        self.proj = nn.Linear(channels, out_dim)
        self.last_attention: Tensor | None = None  # [B, heads, 1, 1 + h*w]

    def forward(self, fmap: Tensor, need_weights: bool = False) -> Tensor:
        """``[B, C, h, w]`` -> ``[B, out_dim]``."""
        tokens = fmap.flatten(2).transpose(1, 2)  # [B, h*w, C]
        # x = [mean_p x_p; x_1 .. x_hw] + E_pos
        x = (
            torch.cat([tokens.mean(1, keepdim=True), tokens], 1)
            + self.pos_embed
        )  # [B, 1 + h*w, C]
        out = self.attn(
            x[:, :1], x, x, need_weights=need_weights
        )  # the mean token queries all
        if need_weights:
            self.last_attention = self.attn.last_attention
        return self.proj(out[:, 0])

    def dense(self, fmap: Tensor) -> Tensor:
        """Per-position features in the pooled output's space, ``[B, h*w, out_dim]``.

        Each position is passed through the value and output projections alone -- what the pool
        would return if that position had all the attention (the dense reading of MaskCLIP,
        Zhou, Loy & Dai, 2022). Fusion models attend to these tokens.
        """
        x = (
            fmap.flatten(2).transpose(1, 2) + self.pos_embed[:, 1:]
        )  # [B, h*w, C]
        return self.proj(self.attn.out_proj(self.attn.v_proj(x)))


class ResNetTower(nn.Module):
    """CLIP's ResNet image encoder: a ResNet of chapter 3 (He et al., 2016) whose global average pool is
    replaced by :class:`AttentionPool2d` (Radford et al., 2021). (CLIP's ResNets also use a three-convolution
    stem and anti-aliased strides; the chapter-3 ResNets keep He et al.'s stem.)"""

    def __init__(self, cnn: nn.Module, grid: int, heads: int, out_dim: int):
        super().__init__()
        if not hasattr(cnn, "forward_features") or not hasattr(
            cnn, "num_features"
        ):
            raise TypeError(
                f"{type(cnn).__name__} needs forward_features(x, pool=False) and num_features"
            )
        self.cnn = cnn
        self.cnn.fc = (
            nn.Identity()
        )  # the classifier is never used, only the feature map
        self.attnpool = AttentionPool2d(grid, cnn.num_features, heads, out_dim)
        self.width = out_dim

    def forward(self, images: Tensor, need_weights: bool = False) -> Tensor:
        """``[B, 3, H, W]`` -> ``[B, out_dim]``."""
        return self.attnpool(
            self.cnn.forward_features(images, pool=False),
            need_weights=need_weights,
        )

    def forward_tokens(self, images: Tensor) -> Tensor:
        """``[B, 1 + h*w, out_dim]``: the pooled embedding first (it plays [CLS]), then one token per position."""
        fmap = self.cnn.forward_features(images, pool=False)  # [B, C, h, w]
        return torch.cat(
            [self.attnpool(fmap)[:, None], self.attnpool.dense(fmap)], 1
        )


def tower_width(visual: nn.Module) -> int:
    """The width of the tokens an image tower hands to a fusion model (a ResNet tower's ``width``, a ViT's [CLS])."""
    if isinstance(visual, ResNetTower):
        return visual.width
    if hasattr(visual, "cls_token"):
        return visual.cls_token.shape[-1]
    raise TypeError(
        f"{type(visual).__name__} is not an image tower: give a ResNetTower or a ViT"
    )


def fit_width_to_tower(
    cfg: dict, visual: nn.Module | None, overrides: dict
) -> dict:
    """``cfg`` with ``dim`` set to the tower's token width unless the caller chose one: the fusion layers
    read the tower's tokens, so a wider CLIP (as at the ``full`` scale) widens the model built on it."""
    if visual is None or "dim" in overrides:
        return cfg
    return {**cfg, "dim": tower_width(visual)}


# ----------------------------------------------------------------------------- tokens for fusion
def frozen_tokens(visual: ViT | ResNetTower, images: Tensor) -> Tensor:
    """A frozen tower's :func:`image_tokens` ``[B, 1 + N, dim]`` of images ``[B, 3, H, W]``, computed without a graph;
    tokens computed earlier (``[B, T, dim]``, e.g. by :func:`frozen_features`) pass through unchanged."""
    if images.ndim == 3:
        return images
    with torch.no_grad():
        return image_tokens(visual, images)


@torch.no_grad()
def frozen_features(fn, images: Tensor, batch_size: int = 256) -> Tensor:
    """``fn(images)`` for every image, ``batch_size`` at a time, concatenated: a frozen tower's output computed once.

    When a tower is frozen and its training images are never augmented, what it gives each image is the
    same at every step, so the models of 7g and 7h take these features in place of the images while they
    train, instead of running the tower again on every batch. The numbers are the same: the tower treats
    each image on its own (eval mode, no batch statistics), and tests/test_multimodal.py checks that a
    shuffled batch gives the same features bit for bit.
    """
    if images.ndim != 4:
        raise ValueError(
            f"images must be [N, 3, H, W]; got shape {tuple(images.shape)}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1")
    return torch.cat(
        [
            fn(images[i : i + batch_size])
            for i in range(0, len(images), batch_size)
        ]
    )


def image_tokens(
    visual: ViT | ResNetTower, images: Tensor, need_weights: bool = False
) -> Tensor:
    """Normalise pixels and run an image tower: ``[B, 3, H, W]`` -> tokens ``[B, 1 + N, dim]`` ([CLS] first)."""
    x = normalize_pixels(images)
    if isinstance(visual, ResNetTower):
        return visual.forward_tokens(x)
    return visual.forward_features(x, need_weights=need_weights)
