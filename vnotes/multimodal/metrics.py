"""How the chapter scores vision--language models: retrieval recall, matching accuracy, masked words, captions."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from ..data import SHAPES, SIZES, Vocabulary
from .data import COLOUR_NAMES

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "colour": COLOUR_NAMES,
    "shape": SHAPES,
    "size": SIZES,
}


def recall_at_k(similarity: Tensor, relevant: Tensor, k: int) -> float:
    """Share of queries (rows) with at least one relevant item among their ``k`` most similar (R@k)."""
    if similarity.shape != relevant.shape:
        raise ValueError(
            f"similarity {tuple(similarity.shape)} and relevant {tuple(relevant.shape)} must match"
        )
    if not 1 <= k <= similarity.shape[1]:
        raise ValueError(f"k={k} must lie in 1..{similarity.shape[1]}")
    top = similarity.topk(k, dim=1).indices  # [Q, k]
    return relevant.gather(1, top).any(1).float().mean().item()


def retrieval_report(
    similarity: Tensor, caption_id: Tensor, ks: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """R@k both ways for pairs (image i, caption i) given ``similarity[i, j]`` of image i and caption j.

    A retrieved caption (or image) counts as a hit when it says the same thing as the query's
    partner (equal ``caption_id``): in this world many images share one caption.
    """
    relevant = caption_id[:, None] == caption_id[None, :]
    out = {}
    for k in ks:
        out[f"i2t_r{k}"] = recall_at_k(similarity, relevant, k)
        out[f"t2i_r{k}"] = recall_at_k(similarity.T, relevant.T, k)
    return out


@torch.no_grad()
def itm_accuracy(
    itm_logits: Callable[[Tensor, Tensor], Tensor],
    images: Tensor,
    index: Tensor,
    ids: Tensor,
    labels: Tensor,
    batch_size: int = 256,
) -> float:
    """Share of (image, caption) pairs whose match / mismatch the ITM head gets right."""
    right = 0
    for i in range(0, len(index), batch_size):
        sl = slice(i, i + batch_size)
        pred = itm_logits(images[index[sl]], ids[sl]).argmax(1).cpu()
        right += (pred == labels[sl]).sum().item()
    return right / len(index)


def attribute_positions(
    ids: Tensor, vocab: Vocabulary, attribute: str
) -> Tensor:
    """Position of the (first) word of ``attribute`` (colour / shape / size) in each caption ``[B]``."""
    if attribute not in ATTRIBUTES:
        raise ValueError(
            f"attribute={attribute!r} is unknown; allowed: {tuple(ATTRIBUTES)}"
        )
    words = torch.tensor([vocab.stoi[w] for w in ATTRIBUTES[attribute]])
    hit = torch.isin(ids, words)
    if not hit.any(1).all():
        raise ValueError(f"some captions have no {attribute} word")
    return hit.int().argmax(1)


@torch.no_grad()
def masked_word_accuracy(
    mlm_logits: Callable[[Tensor, Tensor], Tensor],
    images: Tensor,
    ids: Tensor,
    vocab: Vocabulary,
    attribute: str,
    batch_size: int = 256,
) -> float:
    """Mask the ``attribute`` word of every caption ("a small [MASK] circle") and score the model's guess.

    Only the image can tell a colour (or shape) word: the rest of the caption does not constrain it.
    """
    pos = attribute_positions(ids, vocab, attribute)
    rows = torch.arange(len(ids))
    masked = ids.clone()
    masked[rows, pos] = vocab.mask
    right = 0
    for i in range(0, len(ids), batch_size):
        sl = slice(i, i + batch_size)
        logits = mlm_logits(images[sl], masked[sl]).cpu()  # [b, L, vocab]
        guess = logits[torch.arange(logits.shape[0]), pos[sl]].argmax(-1)
        right += (
            (guess == ids[sl][torch.arange(logits.shape[0]), pos[sl]])
            .sum()
            .item()
        )
    return right / len(ids)


def caption_attributes(text: str) -> dict[str, str | None]:
    """The (first) colour, shape and size word a caption mentions, or None for each it lacks."""
    words = text.replace(",", " ").split()
    return {
        a: next((w for w in words if w in names), None)
        for a, names in ATTRIBUTES.items()
    }


def caption_attribute_accuracy(
    generated: Sequence[str], colour: Tensor, shape: Tensor
) -> float:
    """Share of generated captions whose colour word and shape word are both right (the first object's)."""
    if len(generated) != len(colour):
        raise ValueError(f"{len(generated)} captions for {len(colour)} images")
    right = 0
    for text, c, s in zip(generated, colour.tolist(), shape.tolist()):
        got = caption_attributes(text)
        right += got["colour"] == COLOUR_NAMES[c] and got["shape"] == SHAPES[s]
    return right / len(generated)


def attention_on_object(
    maps: Tensor, object_masks: Tensor
) -> tuple[float, float]:
    """Share of word-to-patch attention that lands on patches touching the object, and that share under
    uniform attention (the patches' share of the image): ``maps`` ``[B, g, g]``, masks ``[B, H, W]``."""
    B, g, _ = maps.shape
    H = object_masks.shape[-1]
    if H % g:
        raise ValueError(
            f"a {g} x {g} patch grid does not tile {H} x {H} masks"
        )
    p = H // g
    touched = (
        object_masks.float().reshape(B, g, p, g, p).amax((2, 4)) > 0
    )  # [B, g, g]
    weights = maps / maps.sum((1, 2), keepdim=True)
    on = (weights * touched).sum((1, 2)).mean().item()
    return on, touched.float().mean().item()
