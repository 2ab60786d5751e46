"""The training objectives of vision--language pre-training, shared by every model of chapter 7.

* ITC  -- image--text contrastive loss (Radford et al., 2021, CLIP; Li et al., 2021, ALBEF)
* ITM  -- image--text matching with hard negatives mined from ITC similarities (Li et al., 2021)
* MLM  -- BERT's masked language modelling (Devlin et al., 2019), as ViLT and ALBEF use it,
  built on :func:`vnotes.transformer.mask_tokens`
* MoD  -- momentum-distillation targets (Li et al., 2021)
* the attention masks that tell one transformer which tokens may see which (Li et al., 2022, 2023)

Attention masks in this file are boolean with ``True = may attend`` and key-padding masks
``True = padding``: the conventions of :mod:`vnotes.transformer`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data import Vocabulary
from ..data.toyworld import SPECIAL_TOKENS
from ..transformer import causal_mask, mask_tokens


# ----------------------------------------------------------------------------- ITC
def contrastive_loss(
    logits_i2t: torch.Tensor,
    logits_t2i: torch.Tensor | None = None,
    targets_i2t: torch.Tensor | None = None,
    targets_t2i: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric cross-entropy over similarity rows, with one-hot (``None``) or soft targets.

    ``logits_i2t`` is ``[B, M]``: image ``i`` against ``M`` texts (the batch, possibly followed by a
    queue); with hard targets text ``i`` is image ``i``'s partner. Soft targets are ``[B, M]`` rows
    that sum to one (ALBEF's momentum distillation passes them).
    """
    if logits_i2t.ndim != 2:
        raise ValueError(
            f"logits_i2t must be [B, M], got shape {tuple(logits_i2t.shape)}"
        )
    logits_t2i = logits_i2t.T if logits_t2i is None else logits_t2i
    B = logits_i2t.shape[0]
    if logits_t2i.shape[0] != B:
        raise ValueError(
            f"logits_t2i has {logits_t2i.shape[0]} rows; expected {B}, one per pair"
        )

    def one_side(
        logits: torch.Tensor, targets: torch.Tensor | None
    ) -> torch.Tensor:
        if targets is None:
            # L = -1/B sum_i log softmax(s_i)_i
            return F.cross_entropy(
                logits, torch.arange(B, device=logits.device)
            )
        if targets.shape != logits.shape:
            raise ValueError(
                f"targets {tuple(targets.shape)} must match logits {tuple(logits.shape)}"
            )
        # L = -1/B sum_i sum_j y_ij log softmax(s_i)_j
        return -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()

    return 0.5 * (
        one_side(logits_i2t, targets_i2t) + one_side(logits_t2i, targets_t2i)
    )


def itc_loss(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    logit_scale: torch.Tensor | float,
    positives: torch.Tensor | None = None,
) -> torch.Tensor:
    """CLIP's symmetric InfoNCE loss over a batch of L2-normalised pairs (Radford et al., 2021).

    ``logit_scale`` is exp(t), the inverse temperature; pair ``i`` is the only positive of row ``i``, unless
    ``positives`` (``[B, B]`` boolean, True on the diagonal) names more: then each row's target spreads evenly
    over its positives, so a batch's identical captions are not pushed apart as negatives (the soft targets
    ALBEF and BLIP use for the same reason).
    """
    if image_emb.shape != text_emb.shape:
        raise ValueError(
            f"image_emb {tuple(image_emb.shape)} and text_emb {tuple(text_emb.shape)} must match"
        )
    # s_ij = exp(t) * <v_i, w_j>                                      [B, B]
    logits = logit_scale * image_emb @ text_emb.T
    if positives is None:
        return contrastive_loss(logits)
    B = logits.shape[0]
    if positives.shape != (B, B) or not bool(positives.diagonal().all()):
        raise ValueError(
            f"positives must be a [B, B] = [{B}, {B}] boolean mask with a True diagonal, "
            f"got shape {tuple(positives.shape)}"
        )
    p = positives.float()
    # y_ij = 1[j positive for i] / #positives of i, for images (rows) and for texts (columns) alike
    return contrastive_loss(
        logits,
        logits.T,
        p / p.sum(1, keepdim=True),
        p.T / p.T.sum(1, keepdim=True),
    )


def distill_targets(
    momentum_logits: torch.Tensor,
    alpha: float,
    hard: torch.Tensor | None = None,
) -> torch.Tensor:
    """ALBEF's pseudo-targets: alpha * softmax(momentum logits) + (1 - alpha) * ground truth (Li et al., 2021).

    ``hard`` defaults to the identity (pair ``i`` matches column ``i``) padded with zeros for queue columns.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha} must lie in [0, 1]")
    if hard is None:
        hard = torch.zeros_like(momentum_logits)
        hard.fill_diagonal_(1.0)
    # y = alpha * q_momentum + (1 - alpha) * y_onehot
    return (
        alpha * F.softmax(momentum_logits.float(), dim=1)
        + (1.0 - alpha) * hard
    )


# ----------------------------------------------------------------------------- ITM
def sample_hard_negatives(
    similarity: torch.Tensor,
    positive: torch.Tensor,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row, draw one negative column with probability softmax(similarity) over non-positives.

    ALBEF's hard-negative mining (Li et al., 2021): the more a wrong caption resembles the image
    under ITC, the likelier it becomes the ITM negative. ``positive`` ``[B, M]`` marks columns that
    must never be drawn (the partner, and any pair that says the same thing). Returns the drawn
    column per row and a boolean ``valid`` (False for rows where every column is positive).
    """
    if similarity.shape != positive.shape:
        raise ValueError(
            f"similarity {tuple(similarity.shape)} and positive {tuple(positive.shape)} must match"
        )
    with torch.no_grad():
        # p_ij ∝ exp(s_ij) for j not a positive of i
        weights = F.softmax(similarity.float(), dim=1).masked_fill(
            positive, 0.0
        )
        valid = ~positive.all(dim=1)
        # rows with no negative get a uniform dummy distribution; the caller drops them via `valid`
        weights = torch.where(
            valid[:, None],
            weights + (~positive) * 1e-12,
            torch.ones_like(weights),
        )
        index = torch.multinomial(weights, 1, generator=generator).squeeze(1)
    return index, valid


def itm_batch(
    positive_index: torch.Tensor,
    neg_text: torch.Tensor,
    neg_image: torch.Tensor,
    valid_text: torch.Tensor,
    valid_image: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices (image, text) and labels of ALBEF's ITM batch: B positives, then each image with a hard
    negative text, then each text with a hard negative image (rows without a negative are dropped)."""
    i = positive_index
    image_idx = torch.cat([i, i[valid_text], neg_image[valid_image]])
    text_idx = torch.cat([i, neg_text[valid_text], i[valid_image]])
    labels = torch.cat(
        [
            torch.ones_like(i),
            torch.zeros_like(i[valid_text]),
            torch.zeros_like(i[valid_image]),
        ]
    )
    return image_idx, text_idx, labels


def same_caption(
    caption_id: torch.Tensor, other: torch.Tensor | None = None
) -> torch.Tensor:
    """``[B, M]`` boolean: pair ``i`` and pair ``j`` describe the same thing (equal caption ids)."""
    other = caption_id if other is None else other
    return caption_id[:, None] == other[None, :]


# ----------------------------------------------------------------------------- MLM
def mlm_inputs(
    ids: torch.Tensor,
    vocab: Vocabulary,
    prob: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking of caption words (Devlin et al., 2019), via :func:`vnotes.transformer.mask_tokens`.

    Only ordinary words are chosen (never [PAD], [BOS], [EOS], ...); a random replacement is an
    ordinary word too. Returns (corrupted ids, labels with -100 where nothing is predicted).
    """
    first_word = len(
        SPECIAL_TOKENS
    )  # the vocabulary lists its special tokens first
    maskable = ids >= first_word
    inputs, labels = mask_tokens(
        ids.cpu(),
        maskable.cpu(),
        mask_id=vocab.mask,
        random_ids=(first_word, len(vocab)),
        prob=prob,
        generator=generator,
    )
    return inputs.to(ids.device), labels.to(ids.device)


# ----------------------------------------------------------------------------- masks
def key_padding(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """``[B, L]`` boolean, True at [PAD] (keys to ignore): the ``key_padding_mask`` of :mod:`vnotes.transformer`."""
    return ids == pad_id


QFORMER_MODES: tuple[str, ...] = ("itc", "itm", "itg")


def qformer_mask(
    num_queries: int,
    text_len: int,
    mode: str,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The Q-Former's self-attention mask over ``[queries; text]`` for each BLIP-2 objective (Li et al., 2023).

    * ``itc`` -- uni-modal: queries see queries, text sees text (no leak between the two embeddings)
    * ``itm`` -- bi-directional: everyone sees everyone
    * ``itg`` -- multimodal causal: queries see queries only; text sees all queries and earlier text
    """
    if mode not in QFORMER_MODES:
        raise ValueError(f"mode={mode!r} is unknown; allowed: {QFORMER_MODES}")
    Q, L = num_queries, text_len
    mask = torch.zeros(Q + L, Q + L, dtype=torch.bool, device=device)
    if mode == "itm":
        return mask.fill_(True)
    mask[:Q, :Q] = True
    if mode == "itc":
        mask[Q:, Q:] = True
    else:
        mask[Q:, :Q] = True
        mask[Q:, Q:] = causal_mask(L, device=device)
    return mask
