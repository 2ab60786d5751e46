"""CLIP's contrastive loss with identical captions counted as positives (page 7a's ablation)."""

import math

import pytest
import torch
import torch.nn.functional as F

from vnotes.multimodal import objectives
from vnotes.multimodal.clip import clip_step, clip_step_duplicates_positive
from vnotes.multimodal.pretrained import new_clip


def test_positives_spread_each_rows_target_over_its_identical_captions():
    torch.manual_seed(0)
    img = F.normalize(torch.randn(4, 8, dtype=torch.float64), dim=1)
    txt = F.normalize(torch.randn(4, 8, dtype=torch.float64), dim=1)
    eye = torch.eye(4, dtype=torch.bool)
    # no duplicates: exactly CLIP's loss
    assert torch.allclose(
        objectives.itc_loss(img, txt, 10.0, positives=eye),
        objectives.itc_loss(img, txt, 10.0),
    )
    # pairs 0 and 2 share a caption: the closed form, written out
    same = eye.clone()
    same[0, 2] = same[2, 0] = True
    s = 10.0 * img @ txt.T
    want = 0.0
    for logits in (s, s.T):
        logp = torch.log_softmax(logits, dim=1)
        rows = [-(logp[i, same[i]].sum() / same[i].sum()) for i in range(4)]
        want += 0.5 * sum(rows) / 4
    got = objectives.itc_loss(img, txt, 10.0, positives=same)
    assert torch.allclose(got, want)
    assert got < objectives.itc_loss(img, txt, 10.0) + math.log(2)
    with pytest.raises(ValueError, match="True diagonal"):
        objectives.itc_loss(
            img, txt, 10.0, positives=torch.zeros(4, 4, dtype=torch.bool)
        )


def test_clip_step_with_duplicates_positive_finds_identical_token_rows():
    model = new_clip("smoke")
    images = torch.rand(4, 3, 32, 32)
    # [BOS] words [EOS] (ids 4 and 5 in the caption vocabulary), then padding
    ids = torch.tensor(
        [
            [4, 7, 15, 5, 0],
            [4, 7, 16, 5, 0],
            [4, 7, 15, 5, 0],
            [4, 8, 20, 5, 0],
        ]
    )
    loss, logs = clip_step_duplicates_positive(model, (images, ids))
    assert logs["duplicate_share"].item() == pytest.approx(0.5)  # rows 0 and 2
    unique = ids.clone()
    unique[2, 2] = 21
    a = clip_step_duplicates_positive(model, (images, unique))[0]
    b = clip_step(model, (images, unique))[0]
    assert torch.allclose(a, b), "without duplicates both steps are CLIP's"
