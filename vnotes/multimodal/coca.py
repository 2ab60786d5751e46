"""CoCa: a contrastive loss and a captioning loss in one image-text model (chapter 7d).

Yu, Wang, Vasudevan, Yeung, Seyedhosseini & Wu (2022), "CoCa: Contrastive Captioners are Image-Text
Foundation Models". The text decoder is split in two halves. The lower, *unimodal* half is a
causal decoder with no access to the image; a learned [CLS] appended after the caption collects
the text embedding for a CLIP-style contrastive loss. The upper, *multimodal* half adds
cross-attention to the image and predicts the next word. Attentional poolers -- a single
attention layer with learned queries -- turn the image tokens into one embedding (contrastive)
or a few (captioning). One forward pass of each tower serves both losses; there is no ITM and
no second pass over negatives, which is why CoCa is cheaper per step than ALBEF or BLIP:

    L = lambda_con * L_con + lambda_cap * L_cap     (lambda_con = 1, lambda_cap = 2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import Vocabulary
from ..transformer import (
    MultiHeadAttention,
    TransformerBlock,
    init_transformer_weights,
)
from .blip import decode
from .objectives import itc_loss
from .towers import fit_width_to_tower, image_tokens

# CoCa-Base (Yu et al., 2022, Table 1): 12 image layers, 12 unimodal + 12 multimodal text layers, width 768;
# 256 captioning queries; and the book's mini
COCA_CONFIGS: dict[str, dict] = {
    "CoCa-Base": dict(
        dim=768,
        unimodal_depth=12,
        multimodal_depth=12,
        num_heads=12,
        embed_dim=768,
        caption_queries=256,
        max_len=64,
    ),
    "mini": dict(
        dim=64,
        unimodal_depth=1,
        multimodal_depth=1,
        num_heads=4,
        embed_dim=64,
        caption_queries=8,
        max_len=10,
    ),
}


class AttentionalPooler(nn.Module):
    """``n`` learned queries attend once over the image tokens: ``[B, N, dim]`` -> ``[B, n, dim]`` (Yu et al., 2022)."""

    def __init__(self, dim: int, num_heads: int, num_queries: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(1, num_queries, dim) * 0.02)
        self.norm_q, self.norm_k = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, num_heads)

    def forward(self, tokens: Tensor) -> Tensor:
        kv = self.norm_k(tokens)
        return self.attn(
            self.norm_q(self.queries).expand(tokens.shape[0], -1, -1), kv, kv
        )


class CoCa(nn.Module):
    """Contrastive Captioner (Yu et al., 2022): image encoder, unimodal and multimodal text decoders, two losses."""

    def __init__(
        self,
        vocab: Vocabulary,
        visual: nn.Module,
        dim: int = 64,
        unimodal_depth: int = 1,
        multimodal_depth: int = 1,
        num_heads: int = 4,
        embed_dim: int = 64,
        caption_queries: int = 8,
        max_len: int = 10,
        lambda_con: float = 1.0,
        lambda_cap: float = 2.0,
    ):
        super().__init__()
        self.vocab, self.max_len = vocab, max_len
        self.lambda_con, self.lambda_cap = lambda_con, lambda_cap
        self.visual = visual
        self.contrastive_pooler = AttentionalPooler(dim, num_heads, 1)
        self.caption_pooler = AttentionalPooler(
            dim, num_heads, caption_queries
        )
        self.token_embed = nn.Embedding(len(vocab), dim)
        self.pos_embed = nn.Parameter(
            torch.zeros(1, max_len + 1, dim)
        )  # +1 for the appended [CLS]
        self.cls_embed = nn.Parameter(torch.zeros(1, 1, dim))
        self.unimodal = nn.ModuleList(
            TransformerBlock(dim, num_heads) for _ in range(unimodal_depth)
        )
        self.multimodal = nn.ModuleList(
            TransformerBlock(dim, num_heads, cross_attention=True)
            for _ in range(multimodal_depth)
        )
        self.norm_cls, self.norm_out = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.image_proj = nn.Linear(dim, embed_dim, bias=False)
        self.text_proj = nn.Linear(dim, embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.lm_head = nn.Linear(dim, len(vocab), bias=False)
        for (
            name,
            child,
        ) in (
            self.named_children()
        ):  # never re-initialise the pretrained image tower
            if name != "visual":
                child.apply(init_transformer_weights)
        nn.init.normal_(self.token_embed.weight, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.01)
        nn.init.normal_(self.cls_embed, std=0.02)
        self.lm_head.weight = self.token_embed.weight

    def encode_image(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Captioning queries' outputs ``[B, n, dim]`` and the normalised contrastive embedding ``[B, E]``."""
        tokens = image_tokens(self.visual, images)  # [B, 1 + N, dim]
        pooled = self.contrastive_pooler(tokens)[:, 0]
        return self.caption_pooler(tokens), F.normalize(
            self.image_proj(pooled), dim=-1
        )

    def unimodal_text(
        self, ids: Tensor, with_cls: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """Causal unimodal decoder over ``ids`` (+ [CLS] appended): word states ``[B, L, dim]`` and text embedding."""
        B, L = ids.shape
        x = self.token_embed(ids)
        padding = ids == self.vocab.pad
        if with_cls:
            x = torch.cat(
                [x, self.cls_embed.expand(B, -1, -1)], 1
            )  # [B, L + 1, dim]
            padding = torch.cat(
                [
                    padding,
                    torch.zeros(B, 1, dtype=torch.bool, device=ids.device),
                ],
                1,
            )
        x = x + self.pos_embed[:, : x.shape[1]]
        for block in self.unimodal:
            x = block(x, key_padding_mask=padding, is_causal=True)
        if not with_cls:
            return x, None
        return x[:, :L], F.normalize(
            self.text_proj(self.norm_cls(x[:, L])), dim=-1
        )

    def caption_logits(
        self, word_states: Tensor, caption_queries: Tensor
    ) -> Tensor:
        """Multimodal decoder: causal self-attention + cross-attention to the image -> ``[B, L, vocab]``."""
        x = word_states
        for block in self.multimodal:
            x = block(x, context=caption_queries, is_causal=True)
        return self.lm_head(self.norm_out(x))

    def encode_text(self, ids: Tensor) -> Tensor:
        return self.unimodal_text(ids)[1]

    def similarity(self, images: Tensor, ids: Tensor) -> Tensor:
        return self.encode_image(images)[1] @ self.encode_text(ids).T

    def lm_logits(
        self,
        images: Tensor | None,
        ids: Tensor,
        image_tokens_: Tensor | None = None,
    ) -> Tensor:
        queries = (
            self.encode_image(images)[0]
            if image_tokens_ is None
            else image_tokens_
        )
        return self.caption_logits(
            self.unimodal_text(ids, with_cls=False)[0], queries
        )

    def forward(
        self, images: Tensor, ids: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        queries, img_feat = self.encode_image(images)
        words, txt_feat = self.unimodal_text(
            ids
        )  # one pass serves both losses
        loss_con = itc_loss(
            img_feat, txt_feat, self.logit_scale.exp().clamp(max=100)
        )
        logits = self.caption_logits(
            words[:, :-1], queries
        )  # predict token t+1
        loss_cap = F.cross_entropy(
            logits.flatten(0, 1),
            ids[:, 1:].flatten(),
            ignore_index=self.vocab.pad,
        )
        loss = self.lambda_con * loss_con + self.lambda_cap * loss_cap
        return loss, {"con": loss_con.detach(), "cap": loss_cap.detach()}

    @torch.no_grad()
    def generate(
        self,
        images: Tensor,
        max_len: int | None = None,
        top_p: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Captions ``[B, L]`` from [BOS]: greedy, or nucleus sampling with ``top_p`` > 0."""
        return decode(
            lambda ids, q: self.lm_logits(None, ids, image_tokens_=q),
            self.encode_image(images)[0],
            self.vocab,
            max_len or self.max_len,
            top_p,
            generator,
        )


def build_coca(
    vocab: Vocabulary, visual: nn.Module, name: str = "mini", **overrides
) -> CoCa:
    """A CoCa from :data:`COCA_CONFIGS` around a pretrained image tower (the book passes its CLIP's)."""
    if name not in COCA_CONFIGS:
        raise ValueError(
            f"name={name!r} is unknown; allowed: {sorted(COCA_CONFIGS)}"
        )
    unknown = set(overrides) - set(COCA_CONFIGS["mini"])
    if unknown:
        raise ValueError(
            f"unknown CoCa settings {sorted(unknown)}; allowed: {sorted(COCA_CONFIGS['mini'])}"
        )
    cfg = fit_width_to_tower(
        {**COCA_CONFIGS[name], **overrides}, visual, overrides
    )
    return CoCa(vocab, visual, **cfg)


def coca_step(
    model: CoCa, batch: tuple[Tensor, ...]
) -> tuple[Tensor, dict[str, Tensor]]:
    """A :func:`vnotes.fit` step: ``batch = (images, tokens, ...)``."""
    return model(batch[0], batch[1])
