"""Reference solutions of chapter 7's exercises on pages 7a (CLIP), 7b (ViLT), 7g (the Q-Former) and 7i (DALL·E 2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["clip_loss", "vilt_embed", "qformer_mask", "unclip_guided_noise"]


def clip_loss(image_features, text_features, logit_scale, max_scale=100.0):
    """CLIP's symmetric contrastive loss with a learned temperature (Radford et al., 2021); the book's
    :func:`vnotes.multimodal.objectives.itc_loss` with :meth:`vnotes.multimodal.clip.CLIP.scale`."""
    v = F.normalize(image_features, dim=-1)  # [B, E], unit rows
    w = F.normalize(text_features, dim=-1)
    scale = logit_scale.exp().clamp(
        max=max_scale
    )  # e^t = 1 / tau, kept differentiable
    logits = scale * v @ w.T  # [B, B], row i: image i against every caption
    labels = torch.arange(
        logits.shape[0], device=logits.device
    )  # pair i sits on the diagonal
    return 0.5 * (
        F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)
    )


def vilt_embed(
    word_vectors,
    patch_vectors,
    text_pos,
    image_cls,
    image_pos,
    type_embed,
    ids,
    pad_id=0,
):
    """ViLT's joint input sequence and its key-padding mask (Kim et al., 2021); the book's
    :meth:`vnotes.multimodal.vilt.ViLT.embed`."""
    B, L, _ = word_vectors.shape
    # words as in BERT: word + position + the text type (0)
    text = word_vectors + text_pos[:, :L] + type_embed[0]
    # patches as in ViT: an image [class] token first, positions for all 1 + N, then the image type (1)
    image = (
        torch.cat([image_cls.expand(B, -1, -1), patch_vectors], dim=1)
        + image_pos
        + type_embed[1]
    )
    pad = torch.cat(
        [
            ids == pad_id,
            torch.zeros(
                B, image.shape[1], dtype=torch.bool, device=ids.device
            ),
        ],
        dim=1,
    )
    return torch.cat([text, image], dim=1), pad


def qformer_mask(num_queries, text_len, mode):
    """The Q-Former's self-attention mask for ITC, ITM and ITG (Li et al., 2023); the book's
    :func:`vnotes.multimodal.objectives.qformer_mask`."""
    Q, L = num_queries, text_len
    mask = torch.zeros(
        Q + L, Q + L, dtype=torch.bool
    )  # rows: who attends; columns: to whom
    if mode == "itm":
        return mask.fill_(True)  # bi-directional: everyone sees everyone
    mask[:Q, :Q] = (
        True  # queries always see the queries, and never the text (except in ITM)
    )
    if mode == "itc":
        mask[Q:, Q:] = True  # uni-modal: text sees all of the text, no query
    else:  # "itg": text sees every query and the words up to its own
        mask[Q:, :Q] = True
        mask[Q:, Q:] = torch.ones(L, L, dtype=torch.bool).tril()
    return mask


def unclip_guided_noise(prior, x_t, t, text_emb, guidance, alpha_bar):
    """The guided noise prediction of unCLIP's prior, a clean-embedding predictor read as a noise
    predictor (Ramesh et al., 2022; Ho & Salimans, 2022); the book's
    :class:`vnotes.multimodal.dalle2.NoiseFromClean` inside ``GaussianDiffusion.predict_noise``."""
    a = alpha_bar[t].sqrt()[:, None]  # sqrt(abar_t)       [B, 1]
    s = (1 - alpha_bar[t]).sqrt()[:, None]  # sqrt(1 - abar_t)   [B, 1]
    x0_cond = prior(x_t, t, text_emb)  # with the caption
    x0_uncond = prior(x_t, t, None)  # with the learned "no caption"
    # x_t = a x_0 + s eps  =>  eps = (x_t - a x_0) / s
    eps_cond = (x_t - a * x0_cond) / s
    eps_uncond = (x_t - a * x0_uncond) / s
    return (1 + guidance) * eps_cond - guidance * eps_uncond
