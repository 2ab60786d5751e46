"""Region-based vision--language Transformers, before ViLT removed the detector (chapter 7j).

All four read the output of an object detector (:mod:`.regions`): one feature vector and one box
per object, instead of pixels or patches.

* :class:`ViLBERT` (Lu et al., 2019) -- **two streams**, one for words and one for regions, that
  meet in *co-attention* layers: each stream's queries attend to the *other* stream's keys and
  values. The text stream is deeper (it starts with text-only layers, BERT's job).
* :class:`LXMERT` (Tan & Bansal, 2019) -- a language encoder, an object-relationship encoder, then
  cross-modality layers: cross-attention, then self-attention, then a feed-forward net per stream.
* :class:`UNITER` (Chen et al., 2020) -- **one stream** over [words; regions]; masked modelling
  with *conditional masking*: an example has its words *or* its regions masked, never both.
* :class:`OSCAR` (Li et al., 2020) -- one stream over the triple (words, object tags, regions): the
  detector's class words sit in the same vocabulary as the caption's, an *anchor* that makes
  alignment easy; trained with masked tokens and the "polluted tags" contrastive loss.

Each model keeps the book's conventions: pre-norm :class:`vnotes.transformer.TransformerBlock`\\ s
(the papers use BERT's post-norm), key-padding masks ``True = padding``, attention weights kept
for plotting. A forward pass takes ``(features, geometry, region_pad, tags, ids)``; the pooled
output answers image--text matching (ITM) and, with an answer head, questions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import Vocabulary
from ..data.toyworld import SPECIAL_TOKENS
from ..transformer import (
    MLP,
    MultiHeadAttention,
    TransformerBlock,
    init_transformer_weights,
    mask_tokens,
)
from .objectives import key_padding, mlm_inputs
from .regions import GEOMETRY_DIM, TAG_WORDS, WHOLE_IMAGE
from .vilt import MLMHead, ViLT

# The papers' sizes (written once, as data) and the book's minis. ViLBERT's visual stream is wider
# (1024) than its text stream (768) in the paper; the minis give both streams one width.
REGION_MODEL_CONFIGS: dict[str, dict[str, dict]] = {
    "vilbert": {
        "paper": dict(
            dim=768, num_heads=12, text_layers=6, co_layers=6, mlp_ratio=4.0
        ),  # 12 text TRMs in all
        "mini": dict(
            dim=64, num_heads=4, text_layers=2, co_layers=2, mlp_ratio=2.0
        ),
    },
    "lxmert": {
        "paper": dict(
            dim=768,
            num_heads=12,
            language_layers=9,
            relation_layers=5,
            cross_layers=5,
            mlp_ratio=4.0,
        ),
        "mini": dict(
            dim=64,
            num_heads=4,
            language_layers=2,
            relation_layers=1,
            cross_layers=2,
            mlp_ratio=2.0,
        ),
    },
    "uniter": {
        "paper": dict(
            dim=768, num_heads=12, depth=12, mlp_ratio=4.0
        ),  # UNITER-base
        "mini": dict(dim=64, num_heads=4, depth=4, mlp_ratio=2.0),
    },
    "oscar": {
        "paper": dict(
            dim=768, num_heads=12, depth=12, mlp_ratio=4.0
        ),  # OSCAR-base
        "mini": dict(dim=64, num_heads=4, depth=4, mlp_ratio=2.0),
    },
}

# how the notebook trains every model (the four region models and the ViLT reference) at each scale
# (``random_first``: the share of pre-training steps with random caption negatives only, before hard ones join;
# lr and random_first were chosen on a validation split at default scale)
REGION_TRAINING: dict[str, dict] = {
    "smoke": dict(
        n_train=256,
        epochs=1,
        batch_size=32,
        lr=2e-3,
        random_first=0.7,
        n_qa=256,
        qa_epochs=1,
        n_test=128,
        n_detector=300,
    ),
    "default": dict(
        n_train=4000,
        epochs=5,
        batch_size=32,
        lr=2e-3,
        random_first=0.7,
        n_qa=2000,
        qa_epochs=2,
        n_test=1000,
        n_detector=2000,
    ),
    "full": dict(
        n_train=50000,
        epochs=20,
        batch_size=128,
        lr=5e-4,
        random_first=0.3,
        n_qa=20000,
        qa_epochs=10,
        n_test=5000,
        n_detector=10000,
        overrides=dict(dim=192),
    ),
}

FIRST_WORD = len(
    SPECIAL_TOKENS
)  # the vocabulary lists its special tokens first


# ----------------------------------------------------------------------------- embeddings
class TextEmbedding(nn.Module):
    """BERT's input embedding (Devlin et al., 2019): word + position (+ segment) embeddings, then LayerNorm."""

    def __init__(
        self, vocab_size: int, dim: int, max_len: int, num_segments: int = 1
    ):
        super().__init__()
        self.max_len = max_len
        self.word = nn.Embedding(vocab_size, dim)
        self.position = nn.Parameter(torch.zeros(1, max_len, dim))
        self.segment = nn.Embedding(num_segments, dim)
        self.norm = nn.LayerNorm(dim)
        nn.init.normal_(self.word.weight, std=0.02)
        nn.init.normal_(self.segment.weight, std=0.02)
        nn.init.trunc_normal_(self.position, std=0.02)

    def forward(self, ids: Tensor, segments: Tensor | None = None) -> Tensor:
        L = ids.shape[1]
        if L > self.max_len:
            raise ValueError(f"{L} tokens exceed max_len={self.max_len}")
        segments = torch.zeros_like(ids) if segments is None else segments
        # e = LN(E_word[w] + E_pos[i] + E_seg[s])                           [B, L, dim]
        return self.norm(
            self.word(ids) + self.position[:, :L] + self.segment(segments)
        )


class RegionEmbedding(nn.Module):
    """A region's feature f and geometry g projected to the model width.

    ``separate_norms=False``: LN(W_f f + W_g g) -- ViLBERT and UNITER (OSCAR's W [f; g] on the
    concatenation is the same map). ``separate_norms=True``: (LN(W_f f) + LN(W_g g)) / 2 -- LXMERT.
    """

    def __init__(
        self, feature_dim: int, dim: int, separate_norms: bool = False
    ):
        super().__init__()
        self.separate_norms = separate_norms
        self.feature_proj = nn.Linear(feature_dim, dim)
        self.geometry_proj = nn.Linear(GEOMETRY_DIM, dim)
        self.norm = nn.LayerNorm(dim)
        if separate_norms:
            self.geometry_norm = nn.LayerNorm(dim)

    def forward(self, features: Tensor, geometry: Tensor) -> Tensor:
        if self.separate_norms:
            return (
                self.norm(self.feature_proj(features))
                + self.geometry_norm(self.geometry_proj(geometry))
            ) / 2
        return self.norm(
            self.feature_proj(features) + self.geometry_proj(geometry)
        )


def mask_regions(
    region_pad: Tensor,
    prob: float = 0.15,
    generator: torch.Generator | None = None,
    at_least_one: bool = False,
    rows: Tensor | None = None,
) -> Tensor:
    """``[B, R]`` boolean: which real regions to mask, each with probability ``prob``.

    ``at_least_one`` masks one random real region in rows where the draw picked none (with one or two
    objects per image, 15 % would often mask nothing); ``rows`` ``[B]`` restricts masking to some rows.
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob={prob} must lie in [0, 1]")
    real = ~region_pad
    chosen = (torch.rand(region_pad.shape, generator=generator) < prob).to(
        real.device
    ) & real
    if at_least_one:
        none = ~chosen.any(1) & real.any(1)
        # a random real region: argmax of random scores over the real ones
        score = (
            torch.rand(region_pad.shape, generator=generator)
            .to(real.device)
            .masked_fill(~real, -1.0)
        )
        one = F.one_hot(score.argmax(1), region_pad.shape[1]).bool()
        chosen = chosen | (one & none[:, None])
    if rows is not None:
        chosen = chosen & rows[:, None]
    return chosen


def masked_region_kl(
    logits: Tensor, target_probs: Tensor, masked: Tensor
) -> Tensor:
    """Masked-region classification with KL divergence (ViLBERT; UNITER's MRC-kl): KL(detector || model) on masked boxes."""
    if not masked.any():
        return logits.sum() * 0.0
    log_p = F.log_softmax(logits[masked], -1)
    return F.kl_div(log_p, target_probs[masked], reduction="batchmean")


# ----------------------------------------------------------------------------- the shared interface
class RegionVLModel(nn.Module):
    """What the four region models share: ITM and MLM heads on top of ``encode``, and word--region attention."""

    def __init__(self, vocab_size: int, dim: int, pad_id: int):
        super().__init__()
        self.pad_id, self.dim = pad_id, dim
        self.pooler = nn.Sequential(nn.Linear(dim, dim), nn.Tanh())
        self.itm_head = nn.Linear(dim, 2)
        self.mlm_head = MLMHead(dim, vocab_size)

    def encode(
        self,
        features: Tensor,
        geometry: Tensor,
        region_pad: Tensor,
        tags: Tensor,
        ids: Tensor,
        region_mask: Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """(token outputs ``[B, L', dim]`` with the caption's words first, region outputs ``[B, R', dim]``)."""
        raise NotImplementedError

    def pool(
        self, tokens: Tensor, regions: Tensor, region_pad: Tensor
    ) -> Tensor:
        """The joint representation ``[B, dim]``: by default the pooled first token ([BOS] plays [CLS])."""
        return self.pooler(tokens[:, 0])

    def pooled(
        self,
        features: Tensor,
        geometry: Tensor,
        region_pad: Tensor,
        tags: Tensor,
        ids: Tensor,
    ) -> Tensor:
        return self.pool(
            *self.encode(features, geometry, region_pad, tags, ids), region_pad
        )

    def itm_logits(
        self,
        features: Tensor,
        geometry: Tensor,
        region_pad: Tensor,
        tags: Tensor,
        ids: Tensor,
    ) -> Tensor:
        """``[B, 2]`` logits of (mismatch, match)."""
        return self.itm_head(
            self.pooled(features, geometry, region_pad, tags, ids)
        )

    def mlm_logits(
        self,
        features: Tensor,
        geometry: Tensor,
        region_pad: Tensor,
        tags: Tensor,
        ids: Tensor,
    ) -> Tensor:
        """``[B, L, vocab]`` logits at the caption's positions."""
        tokens, _ = self.encode(features, geometry, region_pad, tags, ids)
        return self.mlm_head(tokens[:, : ids.shape[1]])

    def pretraining_losses(
        self,
        features: Tensor,
        geometry: Tensor,
        region_pad: Tensor,
        tags: Tensor,
        class_probs: Tensor,
        ids: Tensor,
        labels: Tensor,
        true_ids: Tensor,
        vocab: Vocabulary,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """The paper's pre-training losses, ITM included, for one batch of :func:`region_pretrain_step`.

        ``ids``/``tags`` are the ITM inputs (some captions or tags wrong, ``labels`` 1 where they fit);
        ``true_ids`` are the images' own captions. By default (ViLBERT, LXMERT, OSCAR) one pass does
        everything: the ITM inputs are masked, ITM reads the pooled output, and the masked losses count
        on the matching pairs only.
        """
        masked, word_labels, region_mask = self.mask_inputs(
            ids, tags, region_pad, vocab, generator
        )
        matched = labels.bool()
        word_labels = word_labels.masked_fill(~matched[:, None], -100)
        region_mask = region_mask & matched[:, None]
        L = ids.shape[1]
        masked_tags = (
            masked[:, L:] if masked.shape[1] > L else tags
        )  # OSCAR masks its tags too
        tokens, regions = self.encode(
            features,
            geometry,
            region_pad,
            masked_tags,
            masked[:, :L],
            region_mask=region_mask,
        )
        out = {
            "itm": F.cross_entropy(
                self.itm_head(self.pool(tokens, regions, region_pad)), labels
            )
        }
        out.update(
            self.masked_losses(
                tokens,
                regions,
                word_labels,
                region_mask,
                features,
                class_probs,
            )
        )
        return out

    def mask_inputs(
        self,
        ids: Tensor,
        tags: Tensor,
        region_pad: Tensor,
        vocab: Vocabulary,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(masked token ids, their labels, region mask): BERT's masking of words, 15 % of the regions."""
        masked_ids, labels = mlm_inputs(ids, vocab, 0.15, generator)
        return masked_ids, labels, mask_regions(region_pad, 0.15, generator)

    def masked_losses(
        self,
        tokens: Tensor,
        regions: Tensor,
        word_labels: Tensor,
        region_mask: Tensor,
        features: Tensor,
        class_probs: Tensor,
    ) -> dict[str, Tensor]:
        """The masked-modelling losses from one pass's outputs."""
        raise NotImplementedError

    def _word_region_weights(self, L: int, R: int) -> Tensor:
        """``[B, L, R]`` attention of the caption's words on the real-region slots, after a ``need_weights`` pass."""
        raise NotImplementedError

    @torch.no_grad()
    def word_region_attention(
        self,
        features: Tensor,
        geometry: Tensor,
        region_pad: Tensor,
        tags: Tensor,
        ids: Tensor,
    ) -> Tensor:
        """Attention from each word to each region (heads averaged, last fusion layer): ``[B, L, R]``."""
        was = self.training
        self.eval()
        self.encode(
            features, geometry, region_pad, tags, ids, need_weights=True
        )
        self.train(was)
        return self._word_region_weights(ids.shape[1], features.shape[1])


def _mlm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy at the chosen positions (labels != -100); zero, not NaN, when a batch chose none."""
    if not (labels != -100).any():
        return logits.sum() * 0.0
    return F.cross_entropy(
        logits.flatten(0, 1), labels.flatten(), ignore_index=-100
    )


# ----------------------------------------------------------------------------- ViLBERT
class CoAttention(nn.Module):
    """ViLBERT's co-attention (Lu et al., 2019, Fig. 2b): the words' queries attend to the regions' keys and
    values, and the regions' queries to the words' keys and values -- two attentions with swapped K/V."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.text_from_regions = MultiHeadAttention(dim, num_heads, dropout)
        self.regions_from_text = MultiHeadAttention(dim, num_heads, dropout)

    def forward(
        self,
        text: Tensor,
        regions: Tensor,
        text_pad: Tensor | None = None,
        region_pad: Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor]:
        # text_i <- sum_j softmax(q(t_i) . k(v_j)) val(v_j);  region_j <- sum_i softmax(q(v_j) . k(t_i)) val(t_i)
        t = self.text_from_regions(
            text,
            regions,
            regions,
            key_padding_mask=region_pad,
            need_weights=need_weights,
        )
        v = self.regions_from_text(
            regions,
            text,
            text,
            key_padding_mask=text_pad,
            need_weights=need_weights,
        )
        return t, v


class CoTransformerBlock(nn.Module):
    """ViLBERT's Co-TRM: co-attention and a feed-forward net in each stream (pre-norm here), both streams
    updated from the same inputs; a standard TRM block per stream follows it (:class:`ViLBERT`)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.norm_text, self.norm_regions = (
            nn.LayerNorm(dim),
            nn.LayerNorm(dim),
        )
        self.co_attention = CoAttention(dim, num_heads, dropout)
        self.norm_text_mlp, self.norm_regions_mlp = (
            nn.LayerNorm(dim),
            nn.LayerNorm(dim),
        )
        self.mlp_text = MLP(dim, int(dim * mlp_ratio), dropout)
        self.mlp_regions = MLP(dim, int(dim * mlp_ratio), dropout)

    def forward(
        self,
        text: Tensor,
        regions: Tensor,
        text_pad: Tensor | None = None,
        region_pad: Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor]:
        t_ctx, v_ctx = self.co_attention(
            self.norm_text(text),
            self.norm_regions(regions),
            text_pad,
            region_pad,
            need_weights,
        )
        text, regions = text + t_ctx, regions + v_ctx
        return (
            text + self.mlp_text(self.norm_text_mlp(text)),
            regions + self.mlp_regions(self.norm_regions_mlp(regions)),
        )


class ViLBERT(RegionVLModel):
    """ViLBERT (Lu et al., 2019): a text stream and a region stream joined by co-attention layers.

    Text: ``text_layers`` text-only blocks, then per co-layer a Co-TRM and a TRM. Regions: an
    ``[IMG]`` token (the mean region feature with the whole-image box) then the regions, and per
    co-layer a Co-TRM and a TRM -- so the text stream is deeper. ITM reads h_CLS ⊙ h_IMG.
    Pre-training: MLM and masked-region classification (KL to the detector's class distribution),
    words and regions masked together.
    """

    def __init__(
        self,
        vocab_size: int,
        feature_dim: int,
        dim: int = 64,
        num_heads: int = 4,
        text_layers: int = 2,
        co_layers: int = 2,
        mlp_ratio: float = 2.0,
        max_text_len: int = 16,
        pad_id: int = 0,
        dropout: float = 0.0,
    ):
        super().__init__(vocab_size, dim, pad_id)
        self.text_embed = TextEmbedding(vocab_size, dim, max_text_len)
        self.region_embed = RegionEmbedding(feature_dim, dim)
        self.text_blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, mlp_ratio, dropout)
            for _ in range(text_layers)
        )
        self.co_blocks = nn.ModuleList(
            CoTransformerBlock(dim, num_heads, mlp_ratio, dropout)
            for _ in range(co_layers)
        )
        self.text_trm = nn.ModuleList(
            TransformerBlock(dim, num_heads, mlp_ratio, dropout)
            for _ in range(co_layers)
        )
        self.region_trm = nn.ModuleList(
            TransformerBlock(dim, num_heads, mlp_ratio, dropout)
            for _ in range(co_layers)
        )
        self.norm_text, self.norm_regions = (
            nn.LayerNorm(dim),
            nn.LayerNorm(dim),
        )
        self.region_pooler = nn.Sequential(nn.Linear(dim, dim), nn.Tanh())
        self.region_class_head = nn.Linear(dim, len(TAG_WORDS))
        self.apply(init_transformer_weights)

    def region_inputs(
        self,
        features: Tensor,
        geometry: Tensor,
        region_pad: Tensor,
        region_mask: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """``[IMG; r_1..r_R]`` embeddings ``[B, 1 + R, dim]`` and their padding mask."""
        real = (~region_pad).float()[..., None]
        # [IMG] = mean of the real regions' features, at the whole image's geometry
        img_feat = (features * real).sum(1, keepdim=True) / real.sum(
            1, keepdim=True
        ).clamp(min=1)
        img_geom = geometry.new_tensor(WHOLE_IMAGE).expand(
            features.shape[0], 1, -1
        )
        if region_mask is not None:  # a masked region's feature is zeroed
            features = features.masked_fill(region_mask[..., None], 0.0)
        x = self.region_embed(
            torch.cat([img_feat, features], 1),
            torch.cat([img_geom, geometry], 1),
        )
        pad = torch.cat([torch.zeros_like(region_pad[:, :1]), region_pad], 1)
        return x, pad

    def encode(
        self,
        features,
        geometry,
        region_pad,
        tags,
        ids,
        region_mask=None,
        need_weights=False,
    ):
        t_pad = key_padding(ids, self.pad_id)
        t = self.text_embed(ids)
        for (
            block
        ) in self.text_blocks:  # the text stream's head start (BERT's layers)
            t = block(t, key_padding_mask=t_pad)
        v, v_pad = self.region_inputs(
            features, geometry, region_pad, region_mask
        )
        for co, trm_t, trm_v in zip(
            self.co_blocks, self.text_trm, self.region_trm
        ):
            t, v = co(t, v, t_pad, v_pad, need_weights=need_weights)
            t = trm_t(t, key_padding_mask=t_pad)
            v = trm_v(v, key_padding_mask=v_pad)
        return self.norm_text(t), self.norm_regions(v)

    def pool(self, tokens, regions, region_pad):
        # ViLBERT's overall representation: h_CLS ⊙ h_IMG
        return self.pooler(tokens[:, 0]) * self.region_pooler(regions[:, 0])

    def masked_losses(
        self, tokens, regions, word_labels, region_mask, features, class_probs
    ):
        return {
            "mlm": _mlm_loss(self.mlm_head(tokens), word_labels),
            "mrc": masked_region_kl(
                self.region_class_head(regions[:, 1:]),
                class_probs,
                region_mask,
            ),
        }

    def _word_region_weights(self, L, R):
        att = self.co_blocks[
            -1
        ].co_attention.text_from_regions.last_attention  # [B, heads, L, 1 + R]
        return att.mean(1)[:, :, 1:]  # [IMG] left out


# ----------------------------------------------------------------------------- LXMERT
class LXMERTCrossLayer(nn.Module):
    """One cross-modality layer of LXMERT (Tan & Bansal, 2019, Fig. 1): a bi-directional cross-attention
    sub-layer, then a self-attention and a feed-forward sub-layer in each stream (pre-norm here).

    ``share_cross_attention=True`` uses one attention module for both directions, as the authors'
    code does; ``False`` gives each direction its own weights.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        share_cross_attention: bool = True,
    ):
        super().__init__()
        self.norm_text_cross, self.norm_regions_cross = (
            nn.LayerNorm(dim),
            nn.LayerNorm(dim),
        )
        self.cross_text = MultiHeadAttention(dim, num_heads, dropout)
        self.cross_regions = (
            self.cross_text
            if share_cross_attention
            else MultiHeadAttention(dim, num_heads, dropout)
        )
        self.text_block = TransformerBlock(
            dim, num_heads, mlp_ratio, dropout
        )  # self-attention + FFN
        self.region_block = TransformerBlock(
            dim, num_heads, mlp_ratio, dropout
        )

    def forward(
        self,
        text: Tensor,
        regions: Tensor,
        text_pad: Tensor | None = None,
        region_pad: Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor]:
        t_n, v_n = self.norm_text_cross(text), self.norm_regions_cross(regions)
        # cross: h_t += CrossAtt(h_t -> h_v), h_v += CrossAtt(h_v -> h_t), both from the layer's inputs
        text = text + self.cross_text(
            t_n,
            v_n,
            v_n,
            key_padding_mask=region_pad,
            need_weights=need_weights,
        )
        text_attention = self.cross_text.last_attention
        regions = regions + self.cross_regions(
            v_n, t_n, t_n, key_padding_mask=text_pad
        )
        self.last_text_attention = (
            text_attention if need_weights else None
        )  # [B, heads, L, R]
        return (
            self.text_block(text, key_padding_mask=text_pad),
            self.region_block(regions, key_padding_mask=region_pad),
        )


class LXMERT(RegionVLModel):
    """LXMERT (Tan & Bansal, 2019): language encoder, object-relationship encoder, cross-modality encoder.

    Regions are embedded as (LN(W_f f) + LN(W_p p)) / 2. The pooled [CLS] of the language output
    answers ITM ("cross-modality matching") and questions. Pre-training: MLM and masked-object
    prediction -- RoI-feature regression and detected-label classification -- with words and
    objects masked in the same pass. (The paper also pre-trains on image QA; here every model
    meets the questions only when fine-tuned.)
    """

    def __init__(
        self,
        vocab_size: int,
        feature_dim: int,
        dim: int = 64,
        num_heads: int = 4,
        language_layers: int = 2,
        relation_layers: int = 1,
        cross_layers: int = 2,
        mlp_ratio: float = 2.0,
        max_text_len: int = 16,
        pad_id: int = 0,
        dropout: float = 0.0,
        share_cross_attention: bool = True,
    ):
        super().__init__(vocab_size, dim, pad_id)
        self.text_embed = TextEmbedding(vocab_size, dim, max_text_len)
        self.region_embed = RegionEmbedding(
            feature_dim, dim, separate_norms=True
        )
        self.language_encoder = nn.ModuleList(
            TransformerBlock(dim, num_heads, mlp_ratio, dropout)
            for _ in range(language_layers)
        )
        self.relation_encoder = nn.ModuleList(
            TransformerBlock(dim, num_heads, mlp_ratio, dropout)
            for _ in range(relation_layers)
        )
        self.cross_encoder = nn.ModuleList(
            LXMERTCrossLayer(
                dim, num_heads, mlp_ratio, dropout, share_cross_attention
            )
            for _ in range(cross_layers)
        )
        self.norm_text, self.norm_regions = (
            nn.LayerNorm(dim),
            nn.LayerNorm(dim),
        )
        self.region_class_head = nn.Linear(dim, len(TAG_WORDS))
        self.feature_head = nn.Linear(dim, feature_dim)
        self.apply(init_transformer_weights)

    def encode(
        self,
        features,
        geometry,
        region_pad,
        tags,
        ids,
        region_mask=None,
        need_weights=False,
    ):
        t_pad = key_padding(ids, self.pad_id)
        t = self.text_embed(ids)
        for block in self.language_encoder:
            t = block(t, key_padding_mask=t_pad)
        if region_mask is not None:
            features = features.masked_fill(region_mask[..., None], 0.0)
        v = self.region_embed(features, geometry)
        for block in self.relation_encoder:
            v = block(v, key_padding_mask=region_pad)
        for layer in self.cross_encoder:
            t, v = layer(t, v, t_pad, region_pad, need_weights=need_weights)
        return self.norm_text(t), self.norm_regions(v)

    def masked_losses(
        self, tokens, regions, word_labels, region_mask, features, class_probs
    ):
        out = {"mlm": _mlm_loss(self.mlm_head(tokens), word_labels)}
        if region_mask.any():
            # masked-object prediction: regress the RoI feature, classify the detected label
            out["feat"] = F.mse_loss(
                self.feature_head(regions[region_mask]), features[region_mask]
            )
            out["label"] = F.cross_entropy(
                self.region_class_head(regions[region_mask]),
                class_probs[region_mask].argmax(-1),
            )
        return out

    def _word_region_weights(self, L, R):
        return self.cross_encoder[-1].last_text_attention.mean(1)  # [B, L, R]


# ----------------------------------------------------------------------------- UNITER
def conditional_masks(
    ids: Tensor,
    region_pad: Tensor,
    vocab: Vocabulary,
    prob: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """UNITER's conditional masking (Chen et al., 2020): each example masks its words *or* its regions.

    Returns (masked ids, word labels with -100 where nothing is predicted, region mask ``[B, R]``,
    ``text_rows`` ``[B]``: True where the words were masked). A row with words masked keeps all its
    regions, and a row with regions masked keeps all its words -- the model always sees one
    modality whole. (UNITER draws one task per mini-batch; drawing per example lets one pass serve both.)
    """
    B = ids.shape[0]
    text_rows = (torch.rand(B, generator=generator) < 0.5).to(ids.device)
    masked_ids, labels = mlm_inputs(ids, vocab, prob, generator)
    masked_ids = torch.where(text_rows[:, None], masked_ids, ids)
    labels = torch.where(
        text_rows[:, None], labels, torch.full_like(labels, -100)
    )
    region_mask = mask_regions(
        region_pad, prob, generator, at_least_one=True, rows=~text_rows
    )
    return masked_ids, labels, region_mask, text_rows


class UNITER(RegionVLModel):
    """UNITER (Chen et al., 2020): one Transformer over [words; regions] with a modality-type embedding.

    Regions are embedded as LN(W_f f + W_p p). Pre-training: ITM, MLM and masked-region
    classification (MRC-kl) under conditional masking (:func:`conditional_masks`). (UNITER's
    word--region alignment by optimal transport and feature regression are left out.)
    """

    def __init__(
        self,
        vocab_size: int,
        feature_dim: int,
        dim: int = 64,
        num_heads: int = 4,
        depth: int = 4,
        mlp_ratio: float = 2.0,
        max_text_len: int = 16,
        pad_id: int = 0,
        dropout: float = 0.0,
    ):
        super().__init__(vocab_size, dim, pad_id)
        self.text_embed = TextEmbedding(vocab_size, dim, max_text_len)
        self.region_embed = RegionEmbedding(feature_dim, dim)
        self.modality_embed = nn.Embedding(2, dim)  # text 0, region 1
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, mlp_ratio, dropout)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.region_class_head = nn.Linear(dim, len(TAG_WORDS))
        self.apply(init_transformer_weights)
        nn.init.normal_(self.modality_embed.weight, std=0.02)

    def encode(
        self,
        features,
        geometry,
        region_pad,
        tags,
        ids,
        region_mask=None,
        need_weights=False,
    ):
        L = ids.shape[1]
        t = self.text_embed(ids) + self.modality_embed.weight[0]
        if region_mask is not None:
            features = features.masked_fill(region_mask[..., None], 0.0)
        v = (
            self.region_embed(features, geometry)
            + self.modality_embed.weight[1]
        )
        x = torch.cat([t, v], 1)  # [B, L + R, dim]
        pad = torch.cat([key_padding(ids, self.pad_id), region_pad], 1)
        for block in self.blocks:
            x = block(x, key_padding_mask=pad, need_weights=need_weights)
        x = self.norm(x)
        return x[:, :L], x[:, L:]

    def pretraining_losses(
        self,
        features,
        geometry,
        region_pad,
        tags,
        class_probs,
        ids,
        labels,
        true_ids,
        vocab,
        generator=None,
    ):
        # UNITER's ITM sees whole inputs; the masked losses take a second pass over the true pairs
        out = {
            "itm": F.cross_entropy(
                self.itm_logits(features, geometry, region_pad, tags, ids),
                labels,
            )
        }
        masked_ids, word_labels, region_mask, _ = conditional_masks(
            true_ids, region_pad, vocab, 0.15, generator
        )
        t, v = self.encode(
            features,
            geometry,
            region_pad,
            tags,
            masked_ids,
            region_mask=region_mask,
        )
        out["mlm"] = _mlm_loss(self.mlm_head(t), word_labels)
        out["mrc"] = masked_region_kl(
            self.region_class_head(v), class_probs, region_mask
        )
        return out

    def _word_region_weights(self, L, R):
        return self.blocks[-1].last_attention.mean(1)[:, :L, L : L + R]


# ----------------------------------------------------------------------------- OSCAR
def oscar_inputs(
    ids: Tensor, tags: Tensor, sep_id: int
) -> tuple[Tensor, Tensor]:
    """OSCAR's token sequence (Li et al., 2020): ``[words (with [BOS] .. [EOS]); tags; [SEP]]`` and its segments.

    Words are segment 0 ([EOS] closes them, as BERT's first [SEP]); the object tags and the final
    [SEP] are segment 1. The region features follow this sequence in the model. Returns
    (tokens ``[B, L + R + 1]``, segment ids ``[B, L + R + 1]``).
    """
    B, L = ids.shape
    R = tags.shape[1]
    sep = torch.full((B, 1), sep_id, dtype=ids.dtype, device=ids.device)
    tokens = torch.cat([ids, tags, sep], 1)
    segments = torch.cat(
        [
            torch.zeros(B, L, dtype=torch.long, device=ids.device),
            torch.ones(B, R + 1, dtype=torch.long, device=ids.device),
        ],
        1,
    )
    return tokens, segments


def pollute_tags(
    tags: Tensor, prob: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """OSCAR's polluted tags: with probability ``prob`` a row's tags become another row's (the batch shifted).

    Returns (tags, polluted ``[B]``); a row whose new tags equal its own (same shapes) counts as clean.
    """
    B = tags.shape[0]
    swap = (torch.rand(B, generator=generator) < prob).to(tags.device)
    other = (
        (
            torch.arange(B)
            + torch.randint(1, max(B, 2), (B,), generator=generator)
        )
        % B
    ).to(tags.device)
    new = torch.where(swap[:, None], tags[other], tags)
    same = (new.sort(1).values == tags.sort(1).values).all(1)
    return new, swap & ~same


class OSCAR(RegionVLModel):
    """OSCAR (Li et al., 2020): one Transformer over the triple (words w, object tags q, region features v).

    Tags are words of the same vocabulary, embedded by the same table as the caption's words, so a
    caption word and the tag of the region it describes start out identical -- the *anchor*.
    Regions are embedded as LN(W [f; g]). Pre-training: the masked token loss over words *and*
    tags, and the contrastive loss on [CLS] that tells clean triples from ones with polluted tags
    (:func:`pollute_tags`, mixed into the ITM negatives by :func:`region_pretrain_step`).
    """

    uses_tags = True

    def __init__(
        self,
        vocab_size: int,
        feature_dim: int,
        dim: int = 64,
        num_heads: int = 4,
        depth: int = 4,
        mlp_ratio: float = 2.0,
        max_text_len: int = 16,
        max_regions: int = 4,
        pad_id: int = 0,
        sep_id: int = 2,
        dropout: float = 0.0,
    ):
        super().__init__(vocab_size, dim, pad_id)
        self.sep_id = sep_id
        self.text_embed = TextEmbedding(
            vocab_size, dim, max_text_len + max_regions + 1, num_segments=2
        )
        self.region_embed = RegionEmbedding(feature_dim, dim)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, mlp_ratio, dropout)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.apply(init_transformer_weights)

    def encode(
        self,
        features,
        geometry,
        region_pad,
        tags,
        ids,
        region_mask=None,
        need_weights=False,
    ):
        tokens, segments = oscar_inputs(ids, tags, self.sep_id)
        h = self.text_embed(tokens, segments)  # [B, L + R + 1, dim]
        v = self.region_embed(features, geometry)  # [B, R, dim]
        x = torch.cat([h, v], 1)
        pad = torch.cat([key_padding(tokens, self.pad_id), region_pad], 1)
        for block in self.blocks:
            x = block(x, key_padding_mask=pad, need_weights=need_weights)
        x = self.norm(x)
        n_tok = tokens.shape[1]
        self._layout = (ids.shape[1], tags.shape[1], n_tok)
        return x[:, :n_tok], x[:, n_tok:]

    def mask_inputs(self, ids, tags, region_pad, vocab, generator):
        # masked token loss over the "dictionary view" h = [w; q]: words and tags alike; no region masking
        h = torch.cat([ids, tags], 1)
        masked, labels = mask_tokens(
            h.cpu(),
            (h >= FIRST_WORD).cpu(),
            mask_id=vocab.mask,
            random_ids=(FIRST_WORD, len(vocab)),
            prob=0.15,
            generator=generator,
        )
        return (
            masked.to(ids.device),
            labels.to(ids.device),
            torch.zeros_like(region_pad),
        )

    def masked_losses(
        self, tokens, regions, word_labels, region_mask, features, class_probs
    ):
        n = word_labels.shape[
            1
        ]  # words and tags; the final [SEP] is never masked
        return {"mtl": _mlm_loss(self.mlm_head(tokens[:, :n]), word_labels)}

    def _word_region_weights(self, L, R):
        _, _, n_tok = self._layout
        return self.blocks[-1].last_attention.mean(1)[:, :L, n_tok : n_tok + R]

    @torch.no_grad()
    def word_tag_attention(
        self, features, geometry, region_pad, tags, ids
    ) -> Tensor:
        """Attention from each word to each object tag (last layer, heads averaged): ``[B, L, R]``."""
        self.word_region_attention(features, geometry, region_pad, tags, ids)
        L, R, _ = self._layout
        return self.blocks[-1].last_attention.mean(1)[:, :L, L : L + R]


MODEL_CLASSES: dict[str, type[RegionVLModel]] = {
    "vilbert": ViLBERT,
    "lxmert": LXMERT,
    "uniter": UNITER,
    "oscar": OSCAR,
}


def build_region_model(
    name: str,
    config: str = "mini",
    *,
    vocab: Vocabulary,
    feature_dim: int,
    max_text_len: int = 16,
    **overrides,
) -> RegionVLModel:
    """One of :data:`MODEL_CLASSES` at the sizes of :data:`REGION_MODEL_CONFIGS`, any field overridable."""
    if name not in MODEL_CLASSES:
        raise ValueError(
            f"name={name!r} is unknown; allowed: {sorted(MODEL_CLASSES)}"
        )
    if config not in REGION_MODEL_CONFIGS[name]:
        raise ValueError(
            f"config={config!r} is unknown; allowed: {sorted(REGION_MODEL_CONFIGS[name])}"
        )
    settings = {**REGION_MODEL_CONFIGS[name][config], **overrides}
    extra = dict(sep_id=vocab.sep) if name == "oscar" else {}
    return MODEL_CLASSES[name](
        len(vocab),
        feature_dim,
        max_text_len=max_text_len,
        pad_id=vocab.pad,
        **extra,
        **settings,
    )


# ----------------------------------------------------------------------------- where words look
def object_word_positions(
    ids: Tensor, vocab: Vocabulary, n_objects: Tensor
) -> Tensor:
    """``[B, 2, 3]`` positions of (size, colour, shape) words of objects 0 and 1 in two-object captions
    ``[BOS] a s c h <relation> a s c h [EOS]`` (-1 for rows with one object)."""
    eos = (ids == vocab.eos).int().argmax(1)  # [B]
    first = torch.tensor([2, 3, 4]).expand(len(ids), 3)
    second = eos[:, None] - torch.tensor([3, 2, 1])
    pos = torch.stack([first, second], 1).clone()
    pos[n_objects != 2] = -1
    return pos


def own_region_share(
    att: Tensor,
    ids: Tensor,
    vocab: Vocabulary,
    n_objects: Tensor,
    labels: Tensor,
    attribute: int = 2,
) -> tuple[float, int]:
    """How a word of object k splits its region attention between region k and the other region.

    ``att`` ``[B, L, R]`` (:meth:`RegionVLModel.word_region_attention`); ``attribute`` 1 = colour,
    2 = shape word. For every two-object scene whose two objects differ in that attribute (so the
    word names one of them), the share att[own] / (att[own] + att[other]); 0.5 is no preference.
    Returns (mean share, number of words scored). ``labels`` ``[B, 2, 3]`` (size, colour, shape ids)
    decides which scenes qualify.
    """
    pos = object_word_positions(ids, vocab, n_objects)
    keep = (n_objects == 2) & (
        labels[:, 0, attribute] != labels[:, 1, attribute]
    )
    shares = []
    for k in (0, 1):
        rows = keep.nonzero().flatten()
        p = pos[rows, k, attribute]
        a = att[rows, p][:, :2]  # [n, 2] regions 0 and 1
        shares.append(a[:, k] / a.sum(1).clamp(min=1e-12))
    s = torch.cat(shares)
    return s.mean().item(), len(s)


def mini_init(model: nn.Module) -> nn.Module:
    """Give every linear layer PyTorch's default initialisation instead of BERT's N(0, 0.02); returns ``model``.

    BERT's std 0.02 (Devlin et al., 2019) was set for width 768, about 0.55 / sqrt(768). At the minis'
    width 64 the same std leaves the attention logits and the gradients reaching the body tiny, and
    ITM idles at chance (loss ln 2) for 300 to 500 steps -- longer than the book's budget. PyTorch's
    default (Kaiming-uniform, std 1 / sqrt(3 fan_in), 0.07 at width 64) keeps roughly BERT's scale
    relative to the width. Embeddings keep their std 0.02. The notebook applies this to all four minis.
    """
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            layer.reset_parameters()
    return model


# ----------------------------------------------------------------------------- pre-training
def caption_negatives(
    ids: Tensor,
    hard_ids: Tensor,
    p_hard: float = 0.25,
    p_random: float = 0.25,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The ITM batch of every model in 7j: each image keeps its caption (label 1) or gets a wrong one.

    With probability ``p_hard`` the caption is its hard negative (one attribute of one object
    changed), with ``p_random`` the caption of another image of the batch (a match if it says the
    same). Returns (captions, labels, kind ``[B]``: 0 kept, 1 hard, 2 random).
    """
    if p_hard < 0 or p_random < 0 or p_hard + p_random > 1:
        raise ValueError(
            f"p_hard={p_hard}, p_random={p_random} must be non-negative with a sum <= 1"
        )
    B = ids.shape[0]
    u = torch.rand(B, generator=generator).to(ids.device)
    kind = torch.where(u < p_hard, 1, torch.where(u < p_hard + p_random, 2, 0))
    other = (
        (
            torch.arange(B)
            + torch.randint(1, max(B, 2), (B,), generator=generator)
        )
        % B
    ).to(ids.device)
    out = torch.where((kind == 1)[:, None], hard_ids, ids)
    out = torch.where((kind == 2)[:, None], ids[other], out)
    labels = (kind == 0) | ((kind == 2) & (ids[other] == ids).all(1))
    return out, labels.long(), kind


def region_pretrain_step(vocab: Vocabulary, seed: int = 0, hard_from: int = 0):
    """A :func:`vnotes.fit` step for the region models: ITM (hard and random negatives) + the paper's masked losses.

    ``batch = (features, geometry, region_pad, tags, class_probs, ids, hard_ids)``. For OSCAR a third
    of the negatives are polluted tags instead of wrong captions (its contrastive loss).
    ``hard_from`` is a curriculum: for the first ``hard_from`` steps every wrong caption is another
    image's (random negatives only); hard negatives join after that.
    """
    generator = torch.Generator().manual_seed(seed)
    calls = [0]

    def step(
        model: RegionVLModel, batch: tuple[Tensor, ...]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        features, geometry, region_pad, tags, class_probs, ids, hard_ids = (
            batch
        )
        hard = calls[0] >= hard_from if model.training else True
        calls[0] += model.training
        if getattr(model, "uses_tags", False):
            p_hard = 1 / 6 if hard else 0.0
            itm_ids, labels, kind = caption_negatives(
                ids, hard_ids, p_hard, 1 / 3 - p_hard, generator
            )
            polluted, was_polluted = pollute_tags(tags, 1.0, generator)
            pollute = (
                torch.rand(len(ids), generator=generator).to(ids.device)
                < 1 / 4
            ) & (kind == 0)
            itm_tags = torch.where(pollute[:, None], polluted, tags)
            labels = torch.where(
                pollute & was_polluted, torch.zeros_like(labels), labels
            )
        else:
            p_hard = 0.25 if hard else 0.0
            itm_ids, labels, _ = caption_negatives(
                ids, hard_ids, p_hard, 0.5 - p_hard, generator
            )
            itm_tags = tags
        losses = model.pretraining_losses(
            features,
            geometry,
            region_pad,
            itm_tags,
            class_probs,
            itm_ids,
            labels,
            ids,
            vocab,
            generator,
        )
        return sum(losses.values()), {k: v.detach() for k, v in losses.items()}

    return step


# ----------------------------------------------------------------------------- question answering
class AnswerClassifier(nn.Module):
    """VQA as classification over a closed answer set: an MLP on the model's pooled joint representation,
    as all four papers (and ViLT) fine-tune for VQA. ``forward(*visual, ids)``: ``visual`` is the
    region inputs ``(features, geometry, region_pad, tags)`` or, for ViLT, ``(images,)``."""

    def __init__(self, model: RegionVLModel | ViLT, num_answers: int):
        super().__init__()
        self.model = model
        dim = model.pooler[0].out_features
        self.head = nn.Sequential(
            nn.Linear(dim, 2 * dim),
            nn.GELU(),
            nn.LayerNorm(2 * dim),
            nn.Linear(2 * dim, num_answers),
        )

    def forward(self, *inputs: Tensor) -> Tensor:
        *visual, ids = inputs
        if isinstance(self.model, ViLT):
            pooled = self.model.pooler(self.model(visual[0], ids)[:, 0])
        else:
            pooled = self.model.pooled(*visual, ids)
        return self.head(pooled)


def vqa_step(
    model: AnswerClassifier, batch: tuple[Tensor, ...]
) -> tuple[Tensor, dict[str, Tensor]]:
    """Cross-entropy over the answers; ``batch = (*visual, question ids, answer index)``."""
    *inputs, answer = batch
    logits = model(*inputs)
    return F.cross_entropy(logits, answer), {
        "acc": (logits.argmax(1) == answer).float().mean().detach()
    }


@torch.no_grad()
def vqa_accuracy(
    model: AnswerClassifier,
    visual: tuple[Tensor, ...],
    ids: Tensor,
    answer: Tensor,
    batch_size: int = 512,
) -> float:
    """Share of questions answered right."""
    was = model.training
    model.eval()
    right = 0
    for i in range(0, len(ids), batch_size):
        sl = slice(i, i + batch_size)
        right += (
            (model(*(v[sl] for v in visual), ids[sl]).argmax(1) == answer[sl])
            .sum()
            .item()
        )
    model.train(was)
    return right / len(ids)
