"""ALBEF: align the two modalities before fusing them, and learn from noisy captions by momentum distillation (7c).

Li, Selvaraju, Gotmare, Joty, Xiong & Hoi (2021), "Align before Fuse: Vision and Language Representation
Learning with Momentum Distillation".

Three towers: an image encoder (a ViT), a text encoder (the first layers of a BERT) and a multimodal
encoder (the last BERT layers, each with cross-attention to the image tokens). Three losses:

* **ITC** on the unimodal [CLS] embeddings, *before* fusion, against the batch and a queue of
  embeddings from a momentum (EMA) copy of the model, as in MoCo (He et al., 2020);
* **ITM** on the fused [CLS], with *hard* negatives: for each image a wrong caption drawn in
  proportion to its ITC similarity, and for each caption a wrong image;
* **MLM** through the multimodal encoder, so masked words must be read off the image.

**Momentum distillation** (MoD): the momentum model's ITC and MLM predictions become part of the
targets, ``y = alpha * q_momentum + (1 - alpha) * y_onehot``, so a caption that does not fit its
image (web noise) is not forced to be the only right answer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import Vocabulary
from ..transformer import TransformerBlock, ViT, init_transformer_weights
from .momentum import FeatureQueue, MomentumDistillation
from .objectives import (
    contrastive_loss,
    itm_batch,
    mlm_inputs,
    sample_hard_negatives,
    same_caption,
)
from .towers import TextTransformer, fit_width_to_tower, image_tokens
from .vilt import MLMHead

# ALBEF-14M (Li et al., 2021, Sec. 4): ViT-B/16 image encoder, BERT-base split 6 text + 6 fusion layers,
# 256-d ITC embeddings, a 65,536-entry queue, momentum 0.995, alpha 0.4; and the book's mini
ALBEF_CONFIGS: dict[str, dict] = {
    "ALBEF-14M": dict(
        dim=768,
        vision_depth=12,
        text_depth=6,
        fusion_depth=6,
        num_heads=12,
        embed_dim=256,
        queue_size=65536,
        momentum=0.995,
        alpha=0.4,
        alpha_ramp_steps=0,  # the pages set it to the first epoch's steps
        max_len=30,
    ),
    "mini": dict(
        dim=64,
        vision_depth=0,
        text_depth=1,
        fusion_depth=2,
        num_heads=4,
        embed_dim=64,
        queue_size=512,
        momentum=0.995,
        alpha=0.4,
        alpha_ramp_steps=0,  # the pages set it to the first epoch's steps
        max_len=10,
    ),
}


# how notebooks 7c (clean captions) and 7d (noisy captions) train the mini at each scale. 7d corrupts half
# of its captions, as 7f corrupts its web captions (until 2026-12: 30 %), and trains each of its two arms
# over three seeds (until 2026-12 one seed of 5,120 pairs x 2 epochs; at `default` now 3,200 pairs x 2 epochs,
# so that six runs fit the page's budget)
ALBEF_TRAINING: dict[str, dict] = {
    "smoke": dict(
        n_train=128,
        epochs=1,
        batch_size=32,
        lr=1e-3,
        noise=0.5,
        noisy_epochs=1,
        noisy_seeds=3,
    ),
    "default": dict(
        n_train=6400,
        epochs=3,
        batch_size=64,
        lr=1e-3,
        noise=0.5,
        noisy_n_train=3200,
        noisy_epochs=2,
        noisy_seeds=3,
    ),
    "full": dict(
        n_train=50000,
        epochs=10,
        batch_size=128,
        lr=5e-4,
        noise=0.5,
        noisy_n_train=50000,
        noisy_epochs=5,
        noisy_seeds=3,
    ),
}


class FusionEncoder(nn.Module):
    """The multimodal encoder: blocks of self-attention over words, cross-attention to image tokens, MLP."""

    def __init__(
        self, dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0
    ):
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, mlp_ratio, cross_attention=True)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.apply(init_transformer_weights)

    def forward(
        self,
        text: Tensor,
        image: Tensor,
        text_padding: Tensor | None = None,
        need_weights: bool = False,
    ) -> Tensor:
        """``text`` ``[B, L, dim]`` attends to ``image`` ``[B, 1 + N, dim]`` -> ``[B, L, dim]``."""
        x = text
        for block in self.blocks:
            x = block(
                x,
                context=image,
                key_padding_mask=text_padding,
                need_weights=need_weights,
            )
        return self.norm(x)


class ALBEF(MomentumDistillation, nn.Module):
    """ALign BEfore Fuse (Li et al., 2021) with its momentum model and feature queues.

    ``forward(images, ids, text_id)`` returns the total loss and a dict of its parts; ``text_id``
    marks captions that say the same thing, which are positives of each other (as in ALBEF's
    retrieval fine-tuning, where an image has several captions) and never hard negatives.
    """

    def __init__(
        self,
        vocab: Vocabulary,
        visual: nn.Module,
        dim: int = 64,
        text_depth: int = 1,
        fusion_depth: int = 2,
        num_heads: int = 4,
        embed_dim: int = 64,
        queue_size: int = 512,
        momentum: float = 0.995,
        alpha: float = 0.4,
        alpha_ramp_steps: int = 0,
        max_len: int = 10,
        mlm_prob: float = 0.15,
        seed: int = 0,
    ):
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha={alpha} must lie in [0, 1]")
        if queue_size < 0:
            raise ValueError(f"queue_size={queue_size} must be non-negative")
        self.vocab, self.pad_id = vocab, vocab.pad
        self.alpha, self.mlm_prob = alpha, mlm_prob
        self.visual = visual
        self.text_encoder = TextTransformer(
            len(vocab),
            dim,
            text_depth,
            num_heads,
            max_len,
            causal=False,
            pad_id=vocab.pad,
        )
        self.fusion = FusionEncoder(dim, fusion_depth, num_heads)
        self.vision_proj = nn.Linear(dim, embed_dim)
        self.text_proj = nn.Linear(dim, embed_dim)
        self.temp = nn.Parameter(torch.tensor(0.07))
        self.itm_head = nn.Linear(dim, 2)
        self.mlm_head = MLMHead(dim, len(vocab))
        self.init_momentum(
            (
                "visual",
                "text_encoder",
                "fusion",
                "vision_proj",
                "text_proj",
                "mlm_head",
            ),
            momentum,
            queue_size,
            embed_dim,
            alpha_ramp_steps,
        )
        self.generator = torch.Generator().manual_seed(seed)

    # ------------------------------------------------------------------ encoders
    def encode_image(
        self, images: Tensor, momentum: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Image tokens ``[B, 1 + N, dim]`` and the normalised ITC embedding of their [CLS] ``[B, E]``."""
        m = self.momentum_model if momentum else None
        tokens = image_tokens(m["visual"] if m else self.visual, images)
        proj = m["vision_proj"] if m else self.vision_proj
        return tokens, F.normalize(proj(tokens[:, 0]), dim=-1)

    def encode_text(
        self, ids: Tensor, momentum: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Text tokens ``[B, L, dim]`` and the normalised ITC embedding of their [CLS] ``[B, E]``."""
        m = self.momentum_model if momentum else None
        tokens = (
            m["text_encoder"] if m else self.text_encoder
        ).forward_tokens(ids)
        proj = m["text_proj"] if m else self.text_proj
        return tokens, F.normalize(proj(tokens[:, 0]), dim=-1)

    @torch.no_grad()
    def cross_attention(
        self, images: Tensor, ids: Tensor, layer: int = -1
    ) -> Tensor:
        """Cross-attention of each word to the image tokens in one fusion layer, heads averaged: ``[B, L, 1 + N]``."""
        img, _ = self.encode_image(images)
        txt, _ = self.encode_text(ids)
        self.fuse(txt, ids, img, need_weights=True)
        return self.fusion.blocks[layer].cross_attn.last_attention.mean(1)

    def fuse(
        self,
        text_tokens: Tensor,
        ids: Tensor,
        image_tokens_: Tensor,
        momentum: bool = False,
        need_weights: bool = False,
    ) -> Tensor:
        fusion = self.momentum_model["fusion"] if momentum else self.fusion
        return fusion(
            text_tokens,
            image_tokens_,
            ids == self.pad_id,
            need_weights=need_weights,
        )

    def itm_logits(self, images: Tensor, ids: Tensor) -> Tensor:
        """``[B, 2]`` (mismatch, match) logits of the fused [CLS]."""
        img, _ = self.encode_image(images)
        txt, _ = self.encode_text(ids)
        return self.itm_head(self.fuse(txt, ids, img)[:, 0])

    def mlm_logits(self, images: Tensor, ids: Tensor) -> Tensor:
        """``[B, L, vocab]`` logits for (masked) captions read together with the image."""
        img, _ = self.encode_image(images)
        txt, _ = self.encode_text(ids)
        return self.mlm_head(self.fuse(txt, ids, img))

    def similarity(self, images: Tensor, ids: Tensor) -> Tensor:
        """ITC cosine similarities ``[N_images, N_texts]``."""
        return self.encode_image(images)[1] @ self.encode_text(ids)[1].T

    # ------------------------------------------------------------------ the three losses
    def forward(
        self, images: Tensor, ids: Tensor, text_id: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        B = images.shape[0]
        with torch.no_grad():
            self.temp.clamp_(0.001, 0.5)
        img_tokens, img_feat = self.encode_image(images)  # [B, 1+N, D], [B, E]
        txt_tokens, txt_feat = self.encode_text(ids)  # [B, L, D], [B, E]

        # ---- ITC against batch + queue, with momentum-distilled targets
        alpha = self.distill_alpha()
        with torch.no_grad():
            self.momentum_update()
            img_tokens_m, img_feat_m = self.encode_image(images, momentum=True)
            _, txt_feat_m = self.encode_text(ids, momentum=True)
        loss_itc, sim_i2t, sim_t2i = momentum_itc(
            img_feat,
            txt_feat,
            img_feat_m,
            txt_feat_m,
            text_id,
            self.queue,
            self.temp,
            alpha,
        )

        # ---- ITM with hard negatives mined from the in-batch ITC similarities
        img_idx, txt_idx, itm_labels = hard_negative_itm(
            sim_i2t[:, :B], sim_t2i[:, :B], text_id, self.generator
        )
        fused = self.fuse(
            txt_tokens[txt_idx], ids[txt_idx], img_tokens[img_idx]
        )
        itm_logits = self.itm_head(fused[:, 0])
        loss_itm = F.cross_entropy(itm_logits, itm_labels)

        # ---- MLM through the fusion encoder, with momentum-distilled word targets
        masked, labels = mlm_inputs(
            ids, self.vocab, self.mlm_prob, self.generator
        )
        mlm_tokens, _ = self.encode_text(masked)
        logits = self.mlm_head(
            self.fuse(mlm_tokens, masked, img_tokens)
        )  # [B, L, V]
        chosen = labels != -100
        loss_mlm = (
            F.cross_entropy(logits[chosen], labels[chosen])
            if chosen.any()
            else logits.sum() * 0
        )
        if alpha > 0 and chosen.any():
            with torch.no_grad():
                mlm_tokens_m, _ = self.encode_text(masked, momentum=True)
                soft = F.softmax(
                    self.momentum_model["mlm_head"](
                        self.fuse(
                            mlm_tokens_m, masked, img_tokens_m, momentum=True
                        )
                    )[chosen],
                    dim=-1,
                )
            # L_mlm^mod = (1 - alpha) CE(y, p) + alpha KL-like term -sum q^m log p
            distill = (
                -(soft * F.log_softmax(logits[chosen], dim=-1)).sum(-1).mean()
            )
            loss_mlm = (1 - alpha) * loss_mlm + alpha * distill

        itm_acc = (itm_logits.argmax(1) == itm_labels).float().mean()
        loss = loss_itc + loss_itm + loss_mlm
        return loss, {
            "itc": loss_itc.detach(),
            "itm": loss_itm.detach(),
            "mlm": loss_mlm.detach(),
            "itm_acc": itm_acc.detach(),
        }


def momentum_itc(
    img_feat: Tensor,
    txt_feat: Tensor,
    img_feat_m: Tensor,
    txt_feat_m: Tensor,
    text_id: Tensor,
    queue: FeatureQueue,
    temp: Tensor,
    alpha: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """ALBEF's ITC (Li et al., 2021): student embeddings against momentum ones (batch + queue), soft targets.

    Returns the loss and the similarities ``[B, B + Q']`` both ways (their first B columns feed
    hard-negative mining). The queue is refreshed with this batch's momentum embeddings.
    """
    with torch.no_grad():
        q_img, q_txt, q_ids = queue.contents()
        img_all = torch.cat([img_feat_m, q_img])  # [B + Q', E]
        txt_all = torch.cat([txt_feat_m, q_txt])
        id_all = torch.cat([text_id, q_ids])
        # ground truth: every entry that says what pair i says is a positive, sharing the mass
        positives = same_caption(text_id, id_all).float()
        hard = positives / positives.sum(1, keepdim=True)
        # y = alpha * softmax(s_m / tau) + (1 - alpha) * y_true
        targets_i2t = (
            alpha * F.softmax(img_feat_m @ txt_all.T / temp, dim=1)
            + (1 - alpha) * hard
        )
        targets_t2i = (
            alpha * F.softmax(txt_feat_m @ img_all.T / temp, dim=1)
            + (1 - alpha) * hard
        )
    # s(I, T) = g_v(v_cls)^T g'_w(w'_cls) / tau
    sim_i2t = img_feat @ txt_all.T / temp  # [B, B + Q']
    sim_t2i = txt_feat @ img_all.T / temp
    loss = contrastive_loss(sim_i2t, sim_t2i, targets_i2t, targets_t2i)
    queue.push(img_feat_m, txt_feat_m, text_id)
    return loss, sim_i2t, sim_t2i


def hard_negative_itm(
    sim_i2t: Tensor,
    sim_t2i: Tensor,
    text_id: Tensor,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """ALBEF's ITM batch from in-batch similarities ``[B, B]``: positives, each image with a hard negative
    caption, each caption with a hard negative image -> (image index, text index, label)."""
    B = sim_i2t.shape[0]
    same = same_caption(text_id)
    neg_text, ok_text = sample_hard_negatives(sim_i2t, same, generator)
    neg_image, ok_image = sample_hard_negatives(sim_t2i, same, generator)
    dev = sim_i2t.device
    return itm_batch(
        torch.arange(B, device=dev),
        neg_text.to(dev),
        neg_image.to(dev),
        ok_text.to(dev),
        ok_image.to(dev),
    )


def build_albef(
    vocab: Vocabulary,
    visual: nn.Module | None = None,
    name: str = "mini",
    *,
    seed: int = 0,
    **overrides,
) -> ALBEF:
    """An ALBEF from :data:`ALBEF_CONFIGS` around a pretrained image tower ``visual`` (a ViT-B/16 when omitted).

    The book passes the image tower of its CLIP (notebook 7a), as the paper starts from an
    ImageNet-pretrained ViT; its token width must equal ``dim``.
    """
    if name not in ALBEF_CONFIGS:
        raise ValueError(
            f"name={name!r} is unknown; allowed: {sorted(ALBEF_CONFIGS)}"
        )
    unknown = set(overrides) - set(ALBEF_CONFIGS["mini"])
    if unknown:
        raise ValueError(
            f"unknown ALBEF settings {sorted(unknown)}; allowed: {sorted(ALBEF_CONFIGS['mini'])}"
        )
    cfg = fit_width_to_tower(
        {**ALBEF_CONFIGS[name], **overrides}, visual, overrides
    )
    if visual is None:
        visual = ViT(
            image_size=256,
            patch_size=16,
            num_classes=1,
            dim=cfg["dim"],
            depth=cfg["vision_depth"],
            num_heads=cfg["num_heads"],
            mlp_ratio=4.0,
        )
        visual.head = nn.Identity()
    return ALBEF(
        vocab,
        visual,
        dim=cfg["dim"],
        text_depth=cfg["text_depth"],
        fusion_depth=cfg["fusion_depth"],
        num_heads=cfg["num_heads"],
        embed_dim=cfg["embed_dim"],
        queue_size=cfg["queue_size"],
        momentum=cfg["momentum"],
        alpha=cfg["alpha"],
        alpha_ramp_steps=cfg["alpha_ramp_steps"],
        max_len=cfg["max_len"],
        seed=seed,
    )


@torch.no_grad()
def rerank_retrieval(
    model: ALBEF, images: Tensor, ids: Tensor, caption_id: Tensor, k: int = 8
) -> dict[str, float]:
    """Image-to-text R@1 by ITC alone, and after ALBEF's re-ranking of the ITC top-``k`` captions by the ITM head.

    Captions are the distinct ones among ``ids`` (one per ``caption_id``), so each image has one right answer.
    """
    first = {}
    for i, c in enumerate(caption_id.tolist()):
        first.setdefault(c, i)
    keep = torch.tensor(list(first.values()))
    cand_ids, cand_cid = ids[keep], caption_id[keep]
    img_tokens, img_feat = model.encode_image(images)
    sim = img_feat @ model.encode_text(cand_ids)[1].T  # [N, C]
    top = sim.topk(min(k, sim.shape[1]), dim=1).indices  # [N, k]
    txt_tokens, _ = model.encode_text(cand_ids)
    rerank = torch.empty(top.shape)
    for j in range(top.shape[1]):
        c = top[:, j]
        fused = model.fuse(txt_tokens[c], cand_ids[c], img_tokens)
        rerank[:, j] = model.itm_head(fused[:, 0]).softmax(1)[:, 1]
    best_itm = top.gather(1, rerank.argmax(1, keepdim=True)).squeeze(1)
    return {
        "itc_r1": (cand_cid[top[:, 0]] == caption_id).float().mean().item(),
        "itm_rerank_r1": (cand_cid[best_itm] == caption_id)
        .float()
        .mean()
        .item(),
    }


def albef_step(
    model: ALBEF, batch: tuple[Tensor, ...]
) -> tuple[Tensor, dict[str, Tensor]]:
    """A :func:`vnotes.fit` step: ``batch = (images, tokens, text_id)``."""
    return model(batch[0], batch[1], batch[2])
