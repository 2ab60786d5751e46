"""ViLT: one Transformer over words and image patches, with no CNN and no detector (chapter 7b).

Kim, Son & Kim (2021), "ViLT: Vision-and-Language Transformer Without Convolution or Region Supervision".
The image enters the way it enters a ViT -- cut into patches, each projected linearly -- and the
caption the way it enters BERT. Both sequences get position embeddings and a *modality-type*
embedding (text 0, image 1), are concatenated, and one stack of Transformer blocks lets every word
attend to every patch. The pooled first token ([CLS] of the text) answers "does this caption fit
this image?" (image--text matching, ITM); the words' outputs fill in masked words (MLM).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import Vocabulary
from ..transformer import (
    PatchEmbedding,
    TransformerBlock,
    init_transformer_weights,
)
from .data import normalize_pixels
from .objectives import key_padding, mlm_inputs

# ViLT-B/32 (Kim et al., 2021, Sec. 4): a ViT-B/32 backbone at 384 px, 40 words; and the book's mini
VILT_CONFIGS: dict[str, dict] = {
    "ViLT-B/32": dict(
        image_size=384,
        patch_size=32,
        dim=768,
        depth=12,
        num_heads=12,
        mlp_ratio=4.0,
        max_text_len=40,
    ),
    "mini": dict(
        image_size=32,
        patch_size=8,
        dim=64,
        depth=3,
        num_heads=4,
        mlp_ratio=2.0,
        max_text_len=10,
    ),
}


# how the notebook trains the mini at each scale
VILT_TRAINING: dict[str, dict] = {
    "smoke": dict(n_train=256, epochs=1, batch_size=32, lr=1e-3),
    "default": dict(n_train=8000, epochs=8, batch_size=64, lr=1e-3),
    "full": dict(
        n_train=50000,
        epochs=20,
        batch_size=128,
        lr=5e-4,
        overrides=dict(patch_size=4, dim=192, depth=6),
    ),
}


class MLMHead(nn.Module):
    """BERT's masked-LM head (Devlin et al., 2019): dense -> GELU -> LayerNorm -> vocabulary logits."""

    def __init__(self, dim: int, vocab_size: int):
        super().__init__()
        self.transform = nn.Sequential(
            nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim)
        )
        self.decoder = nn.Linear(dim, vocab_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.transform(x))


class ViLT(nn.Module):
    """Vision-and-Language Transformer (Kim et al., 2021): single-stream fusion of word and patch embeddings.

    Input sequence: ``[t_cls, t_1..t_L] + T_pos + t_type ; [v_cls, v_1..v_N] + V_pos + v_type``.
    ``forward`` returns every token's output ``[B, L + 1 + N, dim]``; :meth:`itm_logits` and
    :meth:`mlm_logits` are the two pre-training heads.
    """

    def __init__(
        self,
        vocab_size: int,
        image_size: int = 32,
        patch_size: int = 4,
        dim: int = 64,
        depth: int = 3,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        max_text_len: int = 10,
        pad_id: int = 0,
        dropout: float = 0.0,
    ):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(
                f"patch_size={patch_size} does not divide image_size={image_size}"
            )
        self.pad_id, self.max_text_len = pad_id, max_text_len
        self.grid = image_size // patch_size
        num_patches = self.grid**2
        # text side, as in BERT: word + position embeddings
        self.word_embed = nn.Embedding(vocab_size, dim)
        self.text_pos = nn.Parameter(torch.zeros(1, max_text_len, dim))
        # image side, as in ViT: linear patch projection, an image [class] token, positions
        self.patch_embed = PatchEmbedding(patch_size, 3, dim)
        self.image_cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.image_pos = nn.Parameter(torch.zeros(1, 1 + num_patches, dim))
        # t^type = 0, v^type = 1
        self.modality_embed = nn.Embedding(2, dim)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, mlp_ratio, dropout)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.pooler = nn.Sequential(
            nn.Linear(dim, dim), nn.Tanh()
        )  # on the first token
        self.itm_head = nn.Linear(dim, 2)
        self.mlm_head = MLMHead(dim, vocab_size)
        self.apply(init_transformer_weights)
        for p in (self.text_pos, self.image_cls, self.image_pos):
            nn.init.trunc_normal_(p, std=0.02)
        nn.init.normal_(self.word_embed.weight, std=0.02)
        nn.init.normal_(self.modality_embed.weight, std=0.02)

    def embed(self, images: Tensor, ids: Tensor) -> tuple[Tensor, Tensor]:
        """The joint input sequence ``[B, L + 1 + N, dim]`` and its key-padding mask ``[B, L + 1 + N]``."""
        B, L = ids.shape
        if L > self.max_text_len:
            raise ValueError(
                f"{L} tokens exceed max_text_len={self.max_text_len}"
            )
        # t = [t_cls; t_1 .. t_L] + T_pos + t_type                       [B, L, dim]
        text = (
            self.word_embed(ids)
            + self.text_pos[:, :L]
            + self.modality_embed.weight[0]
        )
        patches, _ = self.patch_embed(normalize_pixels(images))  # [B, N, dim]
        # v = [v_cls; v_1 .. v_N] + V_pos + v_type                        [B, 1 + N, dim]
        image = (
            torch.cat([self.image_cls.expand(B, -1, -1), patches], 1)
            + self.image_pos
            + self.modality_embed.weight[1]
        )
        pad = torch.cat(
            [
                key_padding(ids, self.pad_id),
                torch.zeros(
                    B, image.shape[1], dtype=torch.bool, device=ids.device
                ),
            ],
            1,
        )
        return torch.cat([text, image], 1), pad

    def forward(
        self, images: Tensor, ids: Tensor, need_weights: bool = False
    ) -> Tensor:
        x, pad = self.embed(images, ids)
        for block in self.blocks:
            x = block(x, key_padding_mask=pad, need_weights=need_weights)
        return self.norm(x)

    def itm_logits(self, images: Tensor, ids: Tensor) -> Tensor:
        """``[B, 2]`` logits of (mismatch, match) from the pooled first token."""
        return self.itm_head(self.pooler(self(images, ids)[:, 0]))

    def mlm_logits(self, images: Tensor, ids: Tensor) -> Tensor:
        """``[B, L, vocab]`` logits at the text positions."""
        return self.mlm_head(self(images, ids)[:, : ids.shape[1]])

    @torch.no_grad()
    def word_patch_attention(
        self, images: Tensor, ids: Tensor, layer: int = -1
    ) -> Tensor:
        """Attention from each word to each image patch, heads averaged: ``[B, L, grid, grid]``.

        ViLT aligns words and patches with optimal transport (WPA); here we read the alignment
        the model learned directly from its attention weights.
        """
        was = self.training
        self.eval()
        self(images, ids, need_weights=True)
        self.train(was)
        att = self.blocks[
            layer
        ].last_attention  # [B, heads, L + 1 + N, L + 1 + N]
        L = ids.shape[1]
        to_patches = att[:, :, :L, L + 1 :].mean(
            1
        )  # [B, L, N] (image [class] skipped)
        return to_patches.reshape(ids.shape[0], L, self.grid, self.grid)


def build_vilt(
    name: str = "mini", *, vocab_size: int, pad_id: int = 0, **overrides
) -> ViLT:
    """A ViLT from :data:`VILT_CONFIGS`, any field overridable."""
    if name not in VILT_CONFIGS:
        raise ValueError(
            f"name={name!r} is unknown; allowed: {sorted(VILT_CONFIGS)}"
        )
    unknown = set(overrides) - set(VILT_CONFIGS["mini"])
    if unknown:
        raise ValueError(
            f"unknown ViLT settings {sorted(unknown)}; allowed: {sorted(VILT_CONFIGS['mini'])}"
        )
    return ViLT(
        vocab_size, pad_id=pad_id, **{**VILT_CONFIGS[name], **overrides}
    )


def random_image_swap(
    images: Tensor,
    caption_id: Tensor,
    prob: float = 0.5,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """ViLT's ITM negatives: replace each image by another of the batch with probability ``prob``.

    Returns the images and the labels (1 = the caption fits). A replacement that happens to show
    what the caption says (equal ``caption_id``) is labelled a match, because it is one.
    """
    B = images.shape[0]
    swap = (torch.rand(B, generator=generator) < prob).to(images.device)
    # a random *other* index: shift by 1..B-1
    other = (
        torch.arange(B) + torch.randint(1, B, (B,), generator=generator)
    ) % B
    other = other.to(images.device)
    src = torch.where(swap, other, torch.arange(B, device=images.device))
    labels = (caption_id[src] == caption_id).long()
    return images[src], labels


def vilt_step(vocab: Vocabulary, mlm_prob: float = 0.15, seed: int = 0):
    """A :func:`vnotes.fit` step for ViLT: ITM (random image swaps) + MLM (on matched pairs), summed as in the paper.

    ``batch = (images, tokens, caption_id)``.
    """
    generator = torch.Generator().manual_seed(seed)

    def step(
        model: ViLT, batch: tuple[Tensor, ...]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        images, ids, caption_id = batch[0], batch[1], batch[2]
        itm_images, labels = random_image_swap(
            images, caption_id, generator=generator
        )
        itm_logits = model.itm_logits(itm_images, ids)
        loss_itm = F.cross_entropy(itm_logits, labels)
        masked, targets = mlm_inputs(ids, vocab, mlm_prob, generator)
        mlm_logits = model.mlm_logits(images, masked)
        loss_mlm = F.cross_entropy(
            mlm_logits.flatten(0, 1), targets.flatten(), ignore_index=-100
        )
        acc = (itm_logits.argmax(1) == labels).float().mean()
        return loss_itm + loss_mlm, {
            "itm": loss_itm.detach(),
            "mlm": loss_mlm.detach(),
            "itm_acc": acc.detach(),
        }

    return step
