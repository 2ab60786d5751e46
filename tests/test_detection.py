"""DETR: box geometry against torchvision, Hungarian matching against brute force, the set loss, mAP by hand."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.ops as tvops

from vnotes.detection import (
    DETR,
    DETR_CONFIGS,
    LossWeights,
    average_precision,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    detect,
    detr_step,
    detr_toy,
    generalized_box_iou,
    hungarian_match,
    matching_cost,
    mean_average_precision,
    position_encoding_2d,
    scene_targets,
    set_loss,
)


def _random_boxes(n, generator):
    xy = torch.rand(n, 2, generator=generator) * 0.6
    wh = torch.rand(n, 2, generator=generator) * 0.35 + 0.02
    return torch.cat([xy, xy + wh], -1)


def test_box_iou_and_giou_match_torchvision():
    g = torch.Generator().manual_seed(0)
    a, b = _random_boxes(7, g), _random_boxes(5, g)
    assert torch.allclose(box_iou(a, b), tvops.box_iou(a, b), atol=1e-6)
    assert torch.allclose(
        generalized_box_iou(a, b), tvops.generalized_box_iou(a, b), atol=1e-6
    )
    # batched form equals the per-image computation
    A, B = torch.stack([a, a.flip(0)]), torch.stack([b, b.flip(0)])
    assert torch.allclose(
        generalized_box_iou(A, B)[1],
        tvops.generalized_box_iou(a.flip(0), b.flip(0)),
        atol=1e-6,
    )


def test_box_conversions_round_trip_and_match_torchvision():
    g = torch.Generator().manual_seed(1)
    xyxy = _random_boxes(6, g)
    assert torch.allclose(
        box_xyxy_to_cxcywh(xyxy),
        tvops.box_convert(xyxy, "xyxy", "cxcywh"),
        atol=1e-6,
    )
    assert torch.allclose(
        box_cxcywh_to_xyxy(box_xyxy_to_cxcywh(xyxy)), xyxy, atol=1e-6
    )


def _random_predictions(B, Q, C, K, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, Q, C + 1, generator=g)
    boxes = (
        torch.rand(B, Q, 4, generator=g) * 0.5 + 0.2
    )  # cxcywh in (0.2, 0.7)
    tgt_labels = torch.randint(0, C, (B, K), generator=g)
    tgt_boxes = torch.rand(B, K, 4, generator=g) * 0.5 + 0.2
    tgt_labels[0, K - 1] = -1  # a padded slot in image 0
    return logits, boxes, tgt_labels, tgt_boxes


def test_hungarian_matching_equals_brute_force():
    logits, boxes, tgt_labels, tgt_boxes = _random_predictions(
        B=4, Q=5, C=3, K=3, seed=0
    )
    cost = matching_cost(logits, boxes, tgt_labels, tgt_boxes)
    matches = hungarian_match(logits, boxes, tgt_labels, tgt_boxes)
    for b, (q_idx, k_idx) in enumerate(matches):
        valid = [
            k for k in range(tgt_labels.shape[1]) if tgt_labels[b, k] >= 0
        ]
        assert sorted(k_idx.tolist()) == valid and len(
            set(q_idx.tolist())
        ) == len(valid)
        found = cost[b, q_idx, k_idx].sum().item()
        # every injective assignment of the valid targets to distinct queries
        best = min(
            sum(cost[b, q, k].item() for q, k in zip(perm, valid))
            for perm in itertools.permutations(
                range(logits.shape[1]), len(valid)
            )
        )
        assert found == pytest.approx(best, abs=1e-5)


def test_matching_cost_terms_by_hand():
    logits = torch.tensor(
        [[[2.0, 0.0, 0.0]]]
    )  # one query, 2 classes + no-object
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2]]])
    tgt_labels = torch.tensor([[0]])
    tgt_boxes = torch.tensor([[[0.6, 0.5, 0.2, 0.2]]])
    w = LossWeights()
    p0 = torch.softmax(logits[0, 0], -1)[0]
    giou = tvops.generalized_box_iou(
        box_cxcywh_to_xyxy(boxes[0]), box_cxcywh_to_xyxy(tgt_boxes[0])
    )[0, 0]
    expected = -w.cls * p0 + w.l1 * 0.1 - w.giou * giou
    found = matching_cost(logits, boxes, tgt_labels, tgt_boxes)[0, 0, 0].item()
    assert found == pytest.approx(expected.item(), abs=1e-5)


def test_set_loss_terms_against_references():
    logits, boxes, tgt_labels, tgt_boxes = _random_predictions(
        B=3, Q=6, C=4, K=3, seed=2
    )
    matches = hungarian_match(logits, boxes, tgt_labels, tgt_boxes)
    terms = set_loss(logits, boxes, tgt_labels, tgt_boxes, matches=matches)
    # class term: weighted cross-entropy with "no object" (index C) for unmatched queries, weight eos
    target = torch.full((3, 6), 4, dtype=torch.long)
    l1, giou, n = 0.0, 0.0, 0
    for b, (q, k) in enumerate(matches):
        target[b, q] = tgt_labels[b, k]
        for qi, ki in zip(q, k):
            l1 += (boxes[b, qi] - tgt_boxes[b, ki]).abs().sum()
            giou += (
                1
                - tvops.generalized_box_iou(
                    box_cxcywh_to_xyxy(boxes[b, qi][None]),
                    box_cxcywh_to_xyxy(tgt_boxes[b, ki][None]),
                )[0, 0]
            )
            n += 1
    weight = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.1])
    ce = F.cross_entropy(
        logits.reshape(-1, 5), target.reshape(-1), weight=weight
    )
    assert terms["cls"].item() == pytest.approx(ce.item(), abs=1e-5)
    assert terms["l1"].item() == pytest.approx((l1 / n).item(), abs=1e-5)
    assert terms["giou"].item() == pytest.approx((giou / n).item(), abs=1e-5)
    assert terms["loss"].item() == pytest.approx(
        (ce + 5 * l1 / n + 2 * giou / n).item(), abs=1e-4
    )


def test_set_loss_is_invariant_to_query_order():
    logits, boxes, tgt_labels, tgt_boxes = _random_predictions(
        B=2, Q=6, C=3, K=3, seed=3
    )
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    a = set_loss(logits, boxes, tgt_labels, tgt_boxes)["loss"]
    b = set_loss(logits[:, perm], boxes[:, perm], tgt_labels, tgt_boxes)[
        "loss"
    ]
    assert a.item() == pytest.approx(b.item(), abs=1e-5)


def test_perfect_prediction_has_zero_box_loss():
    tgt_labels = torch.tensor([[1, 0, -1]])
    tgt_boxes = torch.tensor(
        [[[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.1, 0.3], [0, 0, 0, 0]]]
    )
    logits = torch.full((1, 4, 3), -20.0)
    logits[0, 0, 1] = logits[0, 2, 0] = (
        20.0  # queries 0 and 2 find the objects
    )
    logits[0, 1, 2] = logits[0, 3, 2] = 20.0  # the others say "no object"
    boxes = torch.tensor(
        [
            [
                [0.3, 0.3, 0.2, 0.2],
                [0.5, 0.5, 0.5, 0.5],
                [0.7, 0.6, 0.1, 0.3],
                [0.1, 0.1, 0.1, 0.1],
            ]
        ]
    )
    terms = set_loss(logits, boxes, tgt_labels, tgt_boxes)
    assert terms["l1"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["giou"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["cls"].item() < 1e-6


def test_average_precision_by_hand():
    # 2 objects; detections by score: TP, FP, TP -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    ap = average_precision(
        np.array([0.9, 0.8, 0.7]), np.array([1, 0, 1]), n_positives=2
    )
    assert ap == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    assert average_precision(
        np.array([0.9, 0.1]), np.array([1, 1]), 2
    ) == pytest.approx(1.0)
    assert average_precision(
        np.array([0.9]), np.array([0]), 3
    ) == pytest.approx(0.0)


def test_mean_average_precision_counts_duplicates_as_false_positives():
    gt_labels = torch.tensor([[0, 1]])
    gt_boxes = torch.tensor(
        [[[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]]]
    )
    boxes = torch.tensor(
        [
            [
                [0.0, 0.0, 10.0, 10.0],
                [1.0, 0.0, 11.0, 10.0],
                [20.0, 20.0, 30.0, 30.0],
            ]
        ]
    )
    labels = torch.tensor([[0, 0, 1]])
    scores = torch.tensor([[0.6, 0.9, 0.8]])
    out = mean_average_precision(
        scores, labels, boxes, gt_labels, gt_boxes, 0.5
    )
    # class 0: the higher-scored duplicate claims the object (TP), the other is a FP -> AP 1; class 1: AP 1
    assert out["ap"] == {0: pytest.approx(1.0), 1: pytest.approx(1.0)}
    # a lower-scored miss first: FP at 0.95 (wrong place) then TP -> AP 0.5 for class 0
    boxes2 = boxes.clone()
    boxes2[0, 1] = torch.tensor([40.0, 40.0, 50.0, 50.0])
    scores2 = torch.tensor([[0.6, 0.95, 0.8]])
    out2 = mean_average_precision(
        scores2, labels, boxes2, gt_labels, gt_boxes, 0.5
    )
    assert out2["ap"][0] == pytest.approx(0.5)
    assert out2["map"] == pytest.approx(0.75)


def test_detr_shapes_and_a_training_step():
    torch.manual_seed(0)
    model = detr_toy(num_classes=6)
    images = torch.rand(2, 3, 32, 32)
    out = model(images)
    N = DETR_CONFIGS["toy"].num_queries
    assert out["logits"].shape == (2, N, 7) and out["boxes"].shape == (2, N, 4)
    assert len(out["aux"]) == DETR_CONFIGS["toy"].dec_layers - 1
    assert ((out["boxes"] >= 0) & (out["boxes"] <= 1)).all()
    targets = scene_targets(
        torch.tensor([[[2.0, 3.0, 12.0, 15.0], [-1, -1, -1, -1]]] * 2),
        torch.tensor([[4, -1]] * 2),
        image_size=32,
    )
    loss, terms = detr_step()(model, (images, targets))
    loss.backward()
    assert torch.isfinite(loss) and set(terms) == {"cls", "l1", "giou"}
    assert model.query_embed.weight.grad is not None
    scores, labels, boxes = detect(model, images)
    assert scores.shape == (2, N) and boxes.shape == (2, N, 4)


def test_position_encoding_2d_separates_rows_and_columns():
    pe = position_encoding_2d(3, 4, 16).view(3, 4, 16)
    assert torch.equal(
        pe[0, :, :8], pe[0, :1, :8].expand(4, -1)
    )  # first half: same within a row
    assert torch.equal(
        pe[:, 0, 8:], pe[:1, 0, 8:].expand(3, -1)
    )  # second half: same within a column
    assert (
        len({tuple(v.tolist()) for v in pe.view(12, 16)}) == 12
    )  # every cell differs


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="queries"):
        hungarian_match(
            torch.zeros(1, 2, 3),
            torch.rand(1, 2, 4),
            torch.zeros(1, 3, dtype=torch.long),
            torch.rand(1, 3, 4),
        )
    with pytest.raises(ValueError, match="n_positives=0"):
        average_precision(np.array([0.5]), np.array([1]), 0)
    with pytest.raises(ValueError, match="iou_threshold=0"):
        mean_average_precision(
            torch.zeros(1, 1),
            torch.zeros(1, 1, dtype=torch.long),
            torch.zeros(1, 1, 4),
            torch.zeros(1, 1, dtype=torch.long),
            torch.zeros(1, 1, 4),
            iou_threshold=0,
        )
    with pytest.raises(ValueError, match="dim=6"):
        position_encoding_2d(2, 2, 6)
    with pytest.raises(ValueError, match="num_classes=0"):
        DETR(0)
