"""Chapter 7 (vision--language models, pages 7c, 7d, 7e, 7f, 7h, 7j): reference solutions."""

from __future__ import annotations

import math

import torch

__all__ = [
    "albef_hard_negatives",
    "albef_distill_targets",
    "blip_lm_loss",
    "capfilt_filter",
    "multiway_forward",
    "co_attention",
]


def albef_hard_negatives(similarity, positive):
    """For each row (an image), draw one column (a caption) that is not a
    positive, with probability proportional to exp(similarity).

    Chapter 7c; the book's version is
    ``vnotes.multimodal.objectives.sample_hard_negatives``.
    """
    # p_ij ∝ exp(s_ij) over the non-positives: -inf logits get probability 0
    logits = similarity.double().masked_fill(positive, float("-inf"))
    probs = torch.softmax(
        logits, dim=1
    )  # stable: the row's maximum is subtracted
    return torch.multinomial(probs, 1).squeeze(
        1
    )  # a draw, not the hardest one


def albef_distill_targets(momentum_logits, positive, alpha):
    """ALBEF's momentum-distillation targets (Li et al., 2021):
    y = alpha * softmax(s_m / tau) + (1 - alpha) * y_true, with the
    ground truth spread evenly over each row's positives.

    Chapter 7d; the book's version is
    ``vnotes.multimodal.objectives.distill_targets``.
    """
    p = positive.to(momentum_logits.dtype)
    hard = p / p.sum(1, keepdim=True)  # each row sums to one
    teacher = torch.softmax(momentum_logits, dim=1)  # a distribution per row
    return alpha * teacher + (1 - alpha) * hard


def blip_lm_loss(logits, ids, pad_id, label_smoothing=0.0):
    """The captioning (language-modelling) loss of BLIP's decoder: the
    logits at position t predict token t + 1; [PAD] targets do not count.

    Chapter 7e; the book computes it in ``vnotes.multimodal.blip.BLIP.forward``.
    """
    pred = logits[:, :-1]  # the last position has nothing left to predict
    target = ids[:, 1:]  # the first token ([DEC]) is given, never predicted
    logp = torch.log_softmax(pred, dim=-1)
    nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    # label smoothing: a share eps of the target spread evenly over all V words
    smooth = -logp.mean(-1)
    loss = (1 - label_smoothing) * nll + label_smoothing * smooth
    keep = target != pad_id
    return loss[keep].sum() / keep.sum()  # a mean over the real words


def capfilt_filter(itm_web, itm_synthetic, threshold=0.5):
    """CapFilt's filter (Li et al., 2022): keep a caption when its ITM match
    probability (column 1 of the two-way head) exceeds ``threshold``; web and
    synthetic captions are judged independently.

    Chapter 7f; the book's version is ``vnotes.multimodal.blip.capfilt``.
    """

    def match(logits):
        return torch.softmax(logits, dim=1)[:, 1]  # P(match), not the logit

    return match(itm_web) > threshold, match(itm_synthetic) > threshold


def multiway_forward(block, x, num_image_tokens, mode, padding=None):
    """One Multiway Transformer block (VLMo, Bao et al., 2022): shared
    self-attention for every token, then each token's own modality expert.

    Chapter 7h; the book's version is
    ``vnotes.multimodal.multiway.MultiwayBlock.forward``.
    """
    x = x + block.attn(block.norm1(x), key_padding_mask=padding)  # shared
    if mode in ("vision", "language"):
        route = [(mode, slice(None))]
    elif "vl" in block.experts:  # fusion, top blocks: the VL expert
        route = [("vl", slice(None))]
    else:  # fusion, bottom blocks: image tokens first, then text tokens
        route = [
            ("vision", slice(0, num_image_tokens)),
            ("language", slice(num_image_tokens, None)),
        ]
    parts = [
        x[:, sl] + block.experts[e](block.norm2[e](x[:, sl]))
        for e, sl in route
    ]
    return torch.cat(parts, 1)


def co_attention(text, regions, text_pad, region_pad):
    """ViLBERT's co-attention (Lu et al., 2019), one head, no projections:
    the words' queries attend to the regions, the regions' queries to the
    words; each direction ignores the padding of the stream it reads.

    Chapter 7j; the book's version is
    ``vnotes.multimodal.two_stream.CoAttention`` (with learned projections).
    """

    def attend(q, kv, kv_pad):
        scores = q @ kv.transpose(1, 2) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(kv_pad[:, None, :], float("-inf"))
        return torch.softmax(scores, dim=-1) @ kv

    return attend(text, regions, region_pad), attend(regions, text, text_pad)
