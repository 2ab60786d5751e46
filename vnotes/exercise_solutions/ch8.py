"""Part IV (chapter 8): reference solutions."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "kd_loss",
    "discriminative_lrs",
    "detr_match",
    "inflate_kernel",
    "late_fusion",
]


def kd_loss(student_logits, teacher_logits, labels, temperature, alpha):
    """alpha * T² * KL(q_teacher(T) || p_student(T)) + (1 - alpha) * CE(p_student(1), y)
    (Hinton et al., 2015).

    Chapter 8a; the book's version is ``vnotes.transfer.distillation_loss``.
    """
    T = temperature
    log_q = F.log_softmax(teacher_logits / T, -1)  # the teacher, softened
    log_p = F.log_softmax(student_logits / T, -1)  # the student, same T
    # KL(q || p) = sum_i q_i (log q_i - log p_i): summed over classes,
    # averaged over the batch
    kl = (log_q.exp() * (log_q - log_p)).sum(-1).mean()
    hard = F.cross_entropy(student_logits, labels)  # at T = 1
    # the soft term's gradients scale like 1/T², so T² restores them
    return alpha * T**2 * kl + (1 - alpha) * hard


def discriminative_lrs(num_groups, lr, decay):
    """Discriminative fine-tuning (Howard & Ruder, 2018): group l of L
    (input to output, from 0) learns at lr * decay^(L - l), the new
    head at lr, so earlier, more generic layers move less.

    Chapter 8a; the book's version is ``vnotes.transfer.layerwise_param_groups``.
    """
    L = num_groups
    return [lr * decay ** (L - l) for l in range(L)] + [lr]


def detr_match(logits, boxes, tgt_labels, tgt_boxes):
    """DETR's matching for one image: the cost
    C[q, k] = -p_q(c_k) + 5 |b_q - b_k|_1 - 2 GIoU(b_q, b_k),
    then the cheapest one-to-one assignment (Hungarian algorithm).

    Chapter 8b; the book's versions are ``vnotes.detection.matching_cost``
    and ``vnotes.detection.hungarian_match``.
    """
    from scipy.optimize import linear_sum_assignment

    from vnotes.detection import box_cxcywh_to_xyxy, generalized_box_iou

    prob = logits.softmax(-1)  # [Q, C+1], "no object" included
    cost_class = -prob[:, tgt_labels]  # [Q, K]: the probability, no log
    cost_l1 = torch.cdist(boxes, tgt_boxes, p=1)  # on (cx, cy, w, h)
    giou = generalized_box_iou(  # GIoU needs corners
        box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(tgt_boxes)
    )
    cost = cost_class + 5 * cost_l1 - 2 * giou
    query_idx, target_idx = linear_sum_assignment(cost.detach().numpy())
    return cost, query_idx, target_idx


def inflate_kernel(weight, time_kernel):
    """I3D's inflation (Carreira & Zisserman, 2017): [O, I, kh, kw] ->
    [O, I, kt, kh, kw], the 2-D kernel repeated along time and divided
    by kt, so a clip of one repeated image gives the 2-D response.

    Chapter 8c; the book's version is ``vnotes.video.inflate_conv``.
    """
    w = weight.unsqueeze(2)  # [O, I, 1, kh, kw]: time after the channels
    return w.repeat(1, 1, time_kernel, 1, 1) / time_kernel


def late_fusion(appearance_logits, motion_logits):
    """Two-stream late fusion (Simonyan & Zisserman, 2014): the log of the
    average of the two streams' class probabilities.

    Chapter 8c; the book's version is ``vnotes.video.TwoStream.forward``.
    """
    log_pa = appearance_logits.log_softmax(-1)
    log_pm = motion_logits.log_softmax(-1)
    # log((p_a + p_m) / 2), computed stably in the log domain
    both = torch.stack([log_pa, log_pm])
    return torch.logsumexp(both, 0) - math.log(2)
