"""Set-based object detection with DETR (chapter 8b, ``chapters/08b_detr``).

DEtection TRansformer (Carion et al., 2020): a CNN backbone, a Transformer encoder over the feature
map, a decoder in which N learned *object queries* attend to the image, and for each query a class
(or "no object") and a box. Training matches predictions to ground-truth objects one-to-one with the
Hungarian algorithm (Kuhn, 1955) -- ``scipy.optimize.linear_sum_assignment`` -- so each object is
claimed by exactly one query and duplicates are punished by the loss: there is no non-maximum
suppression anywhere.

* box helpers: :func:`box_cxcywh_to_xyxy`, :func:`box_xyxy_to_cxcywh`, :func:`box_iou`, :func:`generalized_box_iou`
* :func:`hungarian_match` and :func:`set_loss` -- the matching cost and the set loss (Sec. 3.1 of the paper)
* :class:`DETR` -- the model; :func:`detr_step` -- the :func:`vnotes.fit` step
* :func:`detect`, :func:`average_precision`, :func:`mean_average_precision` -- inference and mAP@IoU

Box conventions: the model predicts (cx, cy, w, h) normalised to [0, 1] by the image size; the
toy world gives (x0, y0, x1, y1) in pixels with -1 rows where a scene has fewer objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from .cnn import resnet_mini
from .transformer import MLP, MultiHeadAttention, sinusoidal_position_encoding
from .scales import dry_iter

__all__ = [
    "box_cxcywh_to_xyxy",
    "box_xyxy_to_cxcywh",
    "box_iou",
    "generalized_box_iou",
    "hungarian_match",
    "set_loss",
    "LossWeights",
    "DETR",
    "DETRConfig",
    "DETR_CONFIGS",
    "detr_toy",
    "detr_step",
    "scene_targets",
    "detect",
    "average_precision",
    "mean_average_precision",
    "position_encoding_2d",
    "matching_cost",
    "draw_boxes",
    "detr_eval",
]


# --------------------------------------------------------------------------- boxes
def box_cxcywh_to_xyxy(b: Tensor) -> Tensor:
    """(cx, cy, w, h) -> (x0, y0, x1, y1), on the last axis."""
    cx, cy, w, h = b.unbind(-1)
    return torch.stack(
        [cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], -1
    )


def box_xyxy_to_cxcywh(b: Tensor) -> Tensor:
    """(x0, y0, x1, y1) -> (cx, cy, w, h), on the last axis."""
    x0, y0, x1, y1 = b.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], -1)


def _area(b: Tensor) -> Tensor:
    return (b[..., 2] - b[..., 0]).clamp(min=0) * (
        b[..., 3] - b[..., 1]
    ).clamp(min=0)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU = |A ∩ B| / |A ∪ B| of xyxy boxes: ``[..., N, 4]`` x ``[..., M, 4]`` -> ``[..., N, M]``."""
    iou, _ = _iou_and_union(a, b)
    return iou


def _iou_and_union(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    lt = torch.maximum(
        a[..., :, None, :2], b[..., None, :, :2]
    )  # [..., N, M, 2] top-left of the intersection
    rb = torch.minimum(
        a[..., :, None, 2:], b[..., None, :, 2:]
    )  # bottom-right
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]  # [..., N, M]
    union = _area(a)[..., :, None] + _area(b)[..., None, :] - inter
    return inter / union.clamp(min=1e-12), union


def generalized_box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise GIoU = IoU - |C \\ (A ∪ B)| / |C|, C the smallest box enclosing A and B (Rezatofighi et al., 2019).

    ``[..., N, 4]`` x ``[..., M, 4]`` xyxy -> ``[..., N, M]`` in [-1, 1].
    """
    if (a[..., 2:] < a[..., :2]).any() or (b[..., 2:] < b[..., :2]).any():
        raise ValueError(
            "generalized_box_iou needs boxes with x1 >= x0 and y1 >= y0"
        )
    iou, union = _iou_and_union(a, b)
    lt = torch.minimum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.maximum(a[..., :, None, 2:], b[..., None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    hull = wh[..., 0] * wh[..., 1]  # |C|
    return iou - (hull - union) / hull.clamp(min=1e-12)


# --------------------------------------------------------------------------- matching and the set loss
@dataclass(frozen=True)
class LossWeights:
    """The weights of DETR's matching cost and loss (Carion et al., 2020, Sec. 4 and A.2).

    ``eos``: the weight of the "no object" class in the cross-entropy (down-weighted by 10 for class imbalance).
    """

    cls: float = 1.0
    l1: float = 5.0
    giou: float = 2.0
    eos: float = 0.1


def matching_cost(
    logits: Tensor,
    boxes: Tensor,
    tgt_labels: Tensor,
    tgt_boxes: Tensor,
    weights: LossWeights = LossWeights(),
) -> Tensor:
    """C[q, k] = -w_cls p_q(c_k) + w_L1 ||b_q - b_k||_1 - w_giou GIoU(b_q, b_k): ``[B, Q, K]``.

    ``logits`` ``[B, Q, C+1]``, ``boxes`` ``[B, Q, 4]`` (cxcywh), targets ``[B, K]`` / ``[B, K, 4]`` (cxcywh,
    label -1 for padding rows; their columns are meaningless and ignored by :func:`hungarian_match`).
    """
    prob = logits.float().softmax(-1)  # [B, Q, C+1]
    index = tgt_labels.clamp(min=0)[:, None, :].expand(-1, prob.shape[1], -1)
    cost_class = -prob.gather(
        2, index
    )  # [B, Q, K]: -p_q(c_k), no log (as in the paper)
    cost_l1 = torch.cdist(boxes.float(), tgt_boxes.float(), p=1)  # [B, Q, K]
    placeholder = tgt_boxes.new_tensor(
        [0.5, 0.5, 0.1, 0.1]
    ).float()  # any valid box for the padded slots
    safe_tgt = torch.where(
        tgt_labels[..., None] >= 0, tgt_boxes.float(), placeholder
    )
    cost_giou = -generalized_box_iou(
        box_cxcywh_to_xyxy(boxes.float()), box_cxcywh_to_xyxy(safe_tgt)
    )
    return (
        weights.cls * cost_class
        + weights.l1 * cost_l1
        + weights.giou * cost_giou
    )


@torch.no_grad()
def hungarian_match(
    logits: Tensor,
    boxes: Tensor,
    tgt_labels: Tensor,
    tgt_boxes: Tensor,
    weights: LossWeights = LossWeights(),
) -> list[tuple[np.ndarray, np.ndarray]]:
    """sigma* = argmin over one-to-one assignments of sum_k C[sigma(k), k], per image (Hungarian algorithm).

    Returns, per image, ``(query indices, target indices)`` of the matched pairs (as many as the image has objects).
    """
    if tgt_labels.shape[1] > logits.shape[1]:
        raise ValueError(
            f"{tgt_labels.shape[1]} target slots but only {logits.shape[1]} queries: "
            "DETR needs at least as many queries as objects"
        )
    cost = (
        matching_cost(logits, boxes, tgt_labels, tgt_boxes, weights)
        .cpu()
        .numpy()
    )  # [B, Q, K]
    counts = (tgt_labels >= 0).sum(1).tolist()
    out = []
    for b, n in enumerate(counts):
        valid = np.nonzero(tgt_labels[b].cpu().numpy() >= 0)[0]
        rows, cols = linear_sum_assignment(cost[b][:, valid])
        out.append((rows, valid[cols]))
    return out


def set_loss(
    logits: Tensor,
    boxes: Tensor,
    tgt_labels: Tensor,
    tgt_boxes: Tensor,
    weights: LossWeights = LossWeights(),
    matches: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[str, Tensor]:
    """DETR's Hungarian loss (Carion et al., 2020, Eq. 2) for one set of predictions.

    L = sum_q [ -w_c log p_q(c_sigma(q)) ] / sum_q w_c  (unmatched queries target "no object", weight ``eos``)
      + w_L1 sum_matched ||b - b_hat||_1 / n_obj + w_giou sum_matched (1 - GIoU(b, b_hat)) / n_obj.
    Returns the three terms and their weighted sum under ``"loss"``.
    """
    B, Q, C1 = logits.shape
    if matches is None:
        matches = hungarian_match(
            logits, boxes, tgt_labels, tgt_boxes, weights
        )
    no_object = C1 - 1
    target_class = torch.full(
        (B, Q), no_object, dtype=torch.long, device=logits.device
    )
    bi = torch.cat(
        [
            torch.full((len(q),), b, dtype=torch.long)
            for b, (q, _) in enumerate(matches)
        ]
    ).to(logits.device)
    qi = torch.as_tensor(
        np.concatenate([q for q, _ in matches]),
        dtype=torch.long,
        device=logits.device,
    )
    ki = torch.as_tensor(
        np.concatenate([k for _, k in matches]),
        dtype=torch.long,
        device=logits.device,
    )
    target_class[bi, qi] = tgt_labels[bi, ki]
    class_weight = torch.ones(C1, device=logits.device)
    class_weight[no_object] = weights.eos
    loss_cls = F.cross_entropy(
        logits.float().transpose(1, 2), target_class, weight=class_weight
    )

    n_obj = max(int(qi.numel()), 1)
    pred, tgt = (
        boxes[bi, qi].float(),
        tgt_boxes[bi, ki].float(),
    )  # [n_obj, 4] matched pairs
    loss_l1 = (pred - tgt).abs().sum() / n_obj
    giou = generalized_box_iou(
        box_cxcywh_to_xyxy(pred)[:, None], box_cxcywh_to_xyxy(tgt)[:, None]
    )[:, 0, 0]
    loss_giou = (1 - giou).sum() / n_obj
    total = (
        weights.cls * loss_cls
        + weights.l1 * loss_l1
        + weights.giou * loss_giou
    )
    return {"loss": total, "cls": loss_cls, "l1": loss_l1, "giou": loss_giou}


# --------------------------------------------------------------------------- the model
def position_encoding_2d(h: int, w: int, dim: int) -> Tensor:
    """DETR's fixed 2-D sine encoding ``[h * w, dim]``: half the channels encode the row, half the column."""
    if dim % 4:
        raise ValueError(
            f"dim={dim} must be a multiple of 4 for a 2-D sine encoding"
        )
    pe_y = sinusoidal_position_encoding(h, dim // 2)  # [h, dim/2]
    pe_x = sinusoidal_position_encoding(w, dim // 2)  # [w, dim/2]
    pos = torch.cat(
        [pe_y[:, None, :].expand(h, w, -1), pe_x[None, :, :].expand(h, w, -1)],
        -1,
    )
    return pos.reshape(h * w, dim)


class EncoderLayer(nn.Module):
    """DETR encoder layer (post-norm): positions are added to the queries and keys of self-attention, not to values."""

    def __init__(
        self, dim: int, heads: int, ffn_dim: int, dropout: float = 0.0
    ):
        super().__init__()
        self.attn = MultiHeadAttention(dim, heads, dropout)
        self.ffn = MLP(dim, ffn_dim, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        q = x + pos  # [B, hw, dim]
        x = self.norm1(x + self.attn(q, q, x))
        return self.norm2(x + self.ffn(x))


class DecoderLayer(nn.Module):
    """DETR decoder layer (post-norm): self-attention among the queries, cross-attention to the image, FFN.

    The object queries are *positional* embeddings: added to the queries (and keys) at every layer,
    while the content ``tgt`` starts from zeros and is refined layer by layer.
    """

    def __init__(
        self, dim: int, heads: int, ffn_dim: int, dropout: float = 0.0
    ):
        super().__init__()
        self.self_attn = MultiHeadAttention(dim, heads, dropout)
        self.cross_attn = MultiHeadAttention(dim, heads, dropout)
        self.ffn = MLP(dim, ffn_dim, dropout)
        self.norm1, self.norm2, self.norm3 = (
            nn.LayerNorm(dim),
            nn.LayerNorm(dim),
            nn.LayerNorm(dim),
        )

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        query_pos: Tensor,
        pos: Tensor,
        need_weights: bool = False,
    ) -> Tensor:
        q = tgt + query_pos  # [B, N, dim]
        tgt = self.norm1(tgt + self.self_attn(q, q, tgt))
        tgt = self.norm2(
            tgt
            + self.cross_attn(
                tgt + query_pos,
                memory + pos,
                memory,
                need_weights=need_weights,
            )
        )
        return self.norm3(tgt + self.ffn(tgt))


@dataclass(frozen=True)
class DETRConfig:
    """Sizes of a DETR: backbone width, Transformer width/heads/FFN, encoder and decoder depth, number of queries."""

    backbone_width: int
    dim: int
    heads: int
    ffn_dim: int
    enc_layers: int
    dec_layers: int
    num_queries: int


# the paper's baseline (ResNet-50 backbone, Sec. 4) and the toy sizes used on the CPU book
DETR_CONFIGS: dict[str, DETRConfig] = {
    "detr_r50": DETRConfig(
        backbone_width=64,
        dim=256,
        heads=8,
        ffn_dim=2048,
        enc_layers=6,
        dec_layers=6,
        num_queries=100,
    ),
    "toy": DETRConfig(
        backbone_width=16,
        dim=64,
        heads=4,
        ffn_dim=128,
        enc_layers=1,
        dec_layers=2,
        num_queries=8,
    ),
    "toy_large": DETRConfig(
        backbone_width=32,
        dim=128,
        heads=8,
        ffn_dim=256,
        enc_layers=3,
        dec_layers=3,
        num_queries=12,
    ),
}


class DETR(nn.Module):
    """DEtection TRansformer (Carion et al., 2020) on a CIFAR-style ResNet backbone from :mod:`vnotes.cnn`.

    ``forward(images)`` returns ``{"logits": [B, N, C+1], "boxes": [B, N, 4], "aux": [(logits, boxes) per earlier
    decoder layer]}``; the last class is "no object" and boxes are (cx, cy, w, h) in [0, 1]. Prediction heads are
    shared by all decoder layers, whose outputs all get a loss (auxiliary decoding losses, Sec. 3.2).
    """

    def __init__(
        self,
        num_classes: int,
        config: DETRConfig = DETR_CONFIGS["toy"],
        backbone: nn.Module | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes={num_classes} must be positive")
        c = config
        self.config, self.num_classes = c, num_classes
        self.backbone = (
            backbone
            if backbone is not None
            else resnet_mini(num_classes, width=c.backbone_width)
        )
        self.input_proj = nn.Conv2d(
            self.backbone.num_features, c.dim, 1
        )  # 1x1 conv to the Transformer width
        self.encoder = nn.ModuleList(
            EncoderLayer(c.dim, c.heads, c.ffn_dim, dropout)
            for _ in range(c.enc_layers)
        )
        self.decoder = nn.ModuleList(
            DecoderLayer(c.dim, c.heads, c.ffn_dim, dropout)
            for _ in range(c.dec_layers)
        )
        self.decoder_norm = nn.LayerNorm(c.dim)
        self.query_embed = nn.Embedding(
            c.num_queries, c.dim
        )  # the N learned object queries
        self.class_head = nn.Linear(c.dim, num_classes + 1)
        self.box_head = nn.Sequential(
            nn.Linear(c.dim, c.dim),
            nn.ReLU(),
            nn.Linear(c.dim, c.dim),
            nn.ReLU(),
            nn.Linear(c.dim, 4),
        )  # 3-layer FFN, then a sigmoid
        self._pos_cache: dict[tuple[int, int], Tensor] = {}

    def _pos(self, h: int, w: int, device: torch.device) -> Tensor:
        key = (h, w)
        if key not in self._pos_cache:
            self._pos_cache[key] = position_encoding_2d(h, w, self.config.dim)
        return self._pos_cache[key].to(device)

    def forward(self, images: Tensor, need_weights: bool = False) -> dict:
        fmap = self.input_proj(
            self.backbone.forward_features(images, pool=False)
        )  # [B, dim, h, w]
        B, D, h, w = fmap.shape
        memory = fmap.flatten(2).transpose(
            1, 2
        )  # [B, hw, dim]: one token per feature cell
        pos = self._pos(h, w, fmap.device).to(memory.dtype)[
            None
        ]  # [1, hw, dim]
        for layer in self.encoder:
            memory = layer(memory, pos)
        query_pos = (
            self.query_embed.weight[None].expand(B, -1, -1).to(memory.dtype)
        )  # [B, N, dim]
        tgt = torch.zeros_like(query_pos)
        outputs = []
        for layer in self.decoder:
            tgt = layer(tgt, memory, query_pos, pos, need_weights=need_weights)
            hs = self.decoder_norm(tgt)
            outputs.append(
                (self.class_head(hs), self.box_head(hs).sigmoid())
            )  # [B, N, C+1], [B, N, 4]
        logits, boxes = outputs[-1]
        return {"logits": logits, "boxes": boxes, "aux": outputs[:-1]}

    def cross_attention_maps(self) -> Tensor | None:
        """The last decoder layer's cross-attention ``[B, heads, N, hw]`` from a ``need_weights=True`` call."""
        return self.decoder[-1].cross_attn.last_attention


def detr_toy(num_classes: int, **kwargs) -> DETR:
    """The toy DETR of the CPU book: ResNet-mini backbone, 1 encoder and 2 decoder layers, width 64, 8 queries."""
    return DETR(num_classes, DETR_CONFIGS["toy"], **kwargs)


def scene_targets(
    boxes_xyxy: Tensor, labels: Tensor, image_size: int
) -> Tensor:
    """Toy-world targets as one tensor ``[N, K, 5]``: (label, cx, cy, w, h) normalised; label -1 where empty."""
    if image_size < 1:
        raise ValueError(f"image_size={image_size} must be positive")
    present = labels >= 0
    cxcywh = box_xyxy_to_cxcywh(boxes_xyxy.float() / image_size)
    cxcywh = torch.where(present[..., None], cxcywh, torch.zeros_like(cxcywh))
    return torch.cat([labels.float()[..., None], cxcywh], -1)


def detr_step(weights: LossWeights = LossWeights(), aux_loss: bool = True):
    """A :func:`vnotes.fit` step: batch = (images, targets ``[B, K, 5]`` from :func:`scene_targets`)."""

    def step(
        model: nn.Module, batch: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        images, targets = batch[0], batch[1]
        tgt_labels, tgt_boxes = targets[..., 0].long(), targets[..., 1:]
        out = model(images)
        terms = set_loss(
            out["logits"], out["boxes"], tgt_labels, tgt_boxes, weights
        )
        loss = terms["loss"]
        if (
            aux_loss
        ):  # every decoder layer is matched and supervised on its own
            for logits, boxes in out["aux"]:
                loss = (
                    loss
                    + set_loss(logits, boxes, tgt_labels, tgt_boxes, weights)[
                        "loss"
                    ]
                )
        return loss, {k: v.detach() for k, v in terms.items() if k != "loss"}

    return step


# --------------------------------------------------------------------------- inference and mAP
@torch.no_grad()
def detect(
    model: DETR, images: Tensor, batch_size: int = 256
) -> tuple[Tensor, Tensor, Tensor]:
    """Every query's prediction: ``(scores [B, N], labels [B, N], boxes_xyxy [B, N, 4] in pixels)``.

    The score of a query is its most likely real class's probability (the "no object" class excluded);
    nothing is suppressed -- the set loss taught the queries not to duplicate each other.
    """
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    scores, labels, boxes = [], [], []
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].to(device)
        out = model(x)
        prob = (
            out["logits"].float().softmax(-1)[..., :-1]
        )  # [b, N, C] drop "no object"
        s, c = prob.max(-1)
        scores.append(s.cpu())
        labels.append(c.cpu())
        boxes.append(
            (box_cxcywh_to_xyxy(out["boxes"].float()) * x.shape[-1]).cpu()
        )
    model.train(was)
    return torch.cat(scores), torch.cat(labels), torch.cat(boxes)


def average_precision(
    scores: np.ndarray, is_true: np.ndarray, n_positives: int
) -> float:
    """Area under the precision-recall curve with precision made monotone (all-point interpolation, PASCAL VOC 2010+).

    ``scores`` and ``is_true`` describe every detection of one class over the data set; ``n_positives`` counts its
    ground-truth objects.
    """
    if n_positives <= 0:
        raise ValueError(
            f"n_positives={n_positives}: AP is undefined for a class without ground truth"
        )
    order = np.argsort(-np.asarray(scores), kind="stable")
    tp = np.asarray(is_true, dtype=float)[order]
    cum_tp, cum_fp = np.cumsum(tp), np.cumsum(1 - tp)
    recall = cum_tp / n_positives
    precision = cum_tp / np.maximum(cum_tp + cum_fp, 1e-12)
    # p_interp(r) = max_{r' >= r} p(r'), then sum over the recall steps
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[1.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def mean_average_precision(
    pred_scores: Tensor,
    pred_labels: Tensor,
    pred_boxes: Tensor,
    gt_labels: Tensor,
    gt_boxes: Tensor,
    iou_threshold: float = 0.5,
    num_classes: int | None = None,
) -> dict:
    """mAP at one IoU threshold: per class, detections in order of score claim the best-overlapping unclaimed
    ground-truth object of their image if IoU >= threshold (a true positive), else count as false positives.

    Predictions ``[B, N]`` / ``[B, N, 4]``; ground truth ``[B, K]`` (-1 = empty) / ``[B, K, 4]``, xyxy in the
    same units. Returns ``{"map": float, "ap": {class: AP}}`` over the classes that have ground truth.
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold={iou_threshold} must lie in (0, 1]")
    num_classes = (
        num_classes or int(max(gt_labels.max(), pred_labels.max())) + 1
    )
    iou = box_iou(pred_boxes.float(), gt_boxes.float())  # [B, N, K]
    ap = {}
    for c in range(num_classes):
        n_pos = int((gt_labels == c).sum())
        if n_pos == 0:
            continue
        b_idx, q_idx = torch.nonzero(pred_labels == c, as_tuple=True)
        s = pred_scores[b_idx, q_idx]
        order = torch.argsort(s, descending=True, stable=True)
        claimed = torch.zeros_like(gt_labels, dtype=torch.bool)
        hits = np.zeros(len(order))
        for rank, j in enumerate(order.tolist()):
            b, q = int(b_idx[j]), int(q_idx[j])
            cand = iou[b, q].clone()
            cand[(gt_labels[b] != c) | claimed[b]] = -1.0
            k = int(cand.argmax())
            if cand[k] >= iou_threshold:
                claimed[b, k] = True
                hits[rank] = 1.0
        ap[c] = average_precision(s[order].numpy(), hits, n_pos)
    return {"map": float(np.mean(list(ap.values()))) if ap else 0.0, "ap": ap}


def detr_eval(iou_threshold: float = 0.5) -> Callable:
    """A :func:`vnotes.fit` ``eval_fn``: mAP at ``iou_threshold`` over batches (images, gt labels, gt xyxy boxes)."""

    def eval_fn(model: nn.Module, loader: Iterable) -> dict[str, float]:
        preds, gts = [], []
        for images, gt_labels, gt_boxes in dry_iter(loader):
            preds.append(detect(model, images))
            gts.append((gt_labels.cpu(), gt_boxes.cpu()))
        scores, labels, boxes = (
            torch.cat([p[i] for p in preds]) for i in range(3)
        )
        result = mean_average_precision(
            scores,
            labels,
            boxes,
            torch.cat([g[0] for g in gts]),
            torch.cat([g[1] for g in gts]),
            iou_threshold,
            num_classes=model.num_classes,
        )
        return {f"map{round(iou_threshold * 100)}": result["map"]}

    return eval_fn


# --------------------------------------------------------------------------- drawing
def draw_boxes(
    ax,
    image: Tensor,
    boxes: Tensor,
    labels: Sequence[str],
    *,
    colors: Sequence | None = None,
    linestyle: str = "-",
    title: str | None = None,
) -> None:
    """Draw ``image`` ``[3, H, W]`` on ``ax`` with xyxy pixel ``boxes`` ``[n, 4]`` and a text label above each."""
    import matplotlib.patches as patches

    if len(labels) != len(boxes):
        raise ValueError(f"{len(boxes)} boxes but {len(labels)} labels")
    ax.imshow(
        image.permute(1, 2, 0).clamp(0, 1).cpu().numpy(),
        interpolation="nearest",
        extent=(0, image.shape[-1], image.shape[-2], 0),
    )
    for i, (box, text) in enumerate(zip(boxes.tolist(), labels)):
        color = colors[i % len(colors)] if colors is not None else "white"
        x0, y0, x1, y1 = box
        ax.add_patch(
            patches.Rectangle(
                (x0, y0),
                x1 - x0,
                y1 - y0,
                fill=False,
                edgecolor=color,
                lw=1.2,
                linestyle=linestyle,
            )
        )
        ax.text(x0, y0 - 0.5, text, color=color, fontsize=6, va="bottom")
    ax.set_xlim(0, image.shape[-1])
    ax.set_ylim(image.shape[-2], 0)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=7)
