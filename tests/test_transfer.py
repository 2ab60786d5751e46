"""Transfer and distillation: the loss against torch's KL and cross-entropy, Hinton's gradient formula,
teacher mixtures, and what each transfer mode freezes."""

import copy

import pytest
import torch
import torch.nn.functional as F

from vnotes import fit
from vnotes.cnn import resnet_mini
from vnotes.data import TensorLoader
from vnotes.transfer import (
    TinyConvNet,
    TransferNet,
    curriculum_teacher_weights,
    distillation_loss,
    distillation_step,
    layerwise_param_groups,
    multi_teacher_step,
    multi_teacher_targets,
    snapshot,
    soft_targets,
    teacher_logits,
    transfer_optimizer,
    uniform_teacher_weights,
)


def test_distillation_loss_against_torch_kl_div_and_cross_entropy():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    y = torch.tensor([0, 3, 1, 2, 2])
    T, alpha = 3.0, 0.7
    q = soft_targets(t, T)
    ref_soft = F.kl_div(
        F.log_softmax(s / T, -1),
        F.log_softmax(t / T, -1),
        reduction="batchmean",
        log_target=True,
    )
    ref = alpha * T**2 * ref_soft + (1 - alpha) * F.cross_entropy(s, y)
    assert distillation_loss(s, q, y, T, alpha).item() == pytest.approx(
        ref.item(), rel=1e-5
    )
    assert distillation_loss(s, q, None, T).item() == pytest.approx(
        (T**2 * ref_soft).item(), rel=1e-5
    )


def test_soft_term_gradient_is_hintons_formula():
    # dC/dz_i = (1/T)(q_i - p_i) for C = CE(p_teacher(T), q_student(T)) (Hinton et al., 2015, Eq. 2);
    # the T^2 factor and the batch mean make it T (q_i - p_i) / B
    g = torch.Generator().manual_seed(1)
    z = torch.randn(3, 5, generator=g, requires_grad=True)
    v = torch.randn(3, 5, generator=g)
    T = 2.5
    distillation_loss(z, soft_targets(v, T), None, T).backward()
    expected = (
        T * (torch.softmax(z.detach() / T, -1) - torch.softmax(v / T, -1)) / 3
    )
    assert torch.allclose(z.grad, expected, atol=1e-6)


def test_high_temperature_limit_matches_logits():
    # at high T, with zero-mean logits, T^2 dKL/dz_i -> (z_i - v_i) / N: distillation becomes logit matching
    g = torch.Generator().manual_seed(2)
    z = torch.randn(1, 6, generator=g)
    v = torch.randn(1, 6, generator=g)
    z, v = (z - z.mean()).requires_grad_(), v - v.mean()
    T = 200.0
    distillation_loss(z, soft_targets(v, T), None, T).backward()
    assert torch.allclose(z.grad, (z.detach() - v) / 6, atol=1e-3)


def test_unlabelled_examples_get_the_soft_term_only():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    y = torch.tensor([0, -1, 2, -1])
    q = soft_targets(t, 2.0)
    soft = distillation_loss(s, q, None, 2.0)
    hard = F.cross_entropy(s[[0, 2]], y[[0, 2]])
    assert distillation_loss(s, q, y, 2.0, 0.6).item() == pytest.approx(
        (0.6 * soft + 0.4 * hard).item(), rel=1e-5
    )


def test_teacher_mixtures():
    g = torch.Generator().manual_seed(4)
    z_t = torch.randn(3, 5, 4, generator=g)  # K=3 teachers, B=5, C=4
    one_hot = torch.zeros(5, 3)
    one_hot[:, 1] = 1
    assert torch.allclose(
        multi_teacher_targets(z_t, one_hot, 2.0), soft_targets(z_t[1], 2.0)
    )
    w = uniform_teacher_weights(
        torch.zeros(5, 4), z_t, torch.zeros(5, dtype=torch.long)
    )
    assert torch.allclose(
        multi_teacher_targets(z_t, w, 2.0),
        soft_targets(z_t, 2.0).mean(0),
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="sum to one"):
        multi_teacher_targets(z_t, torch.ones(5, 3), 2.0)


def test_curriculum_weights_follow_the_students_competence():
    y = torch.tensor([0])
    close = torch.tensor(
        [[0.2, 0.1, 0.0]]
    )  # close to the student, nearly flat
    correct = torch.tensor([[6.0, -3.0, -3.0]])  # confident and right
    wrong = torch.tensor([[-3.0, 6.0, -3.0]])
    z_t = torch.stack([close, correct, wrong])  # [K=3, B=1, C=3]
    weak_student = torch.tensor([[0.0, 0.3, 0.0]])  # p(y) about 0.3
    strong_student = torch.tensor([[12.0, 0.0, 0.0]])  # p(y) about 1
    w_weak = curriculum_teacher_weights(weak_student, z_t, y)[0]
    w_strong = curriculum_teacher_weights(strong_student, z_t, y)[0]
    assert w_weak.argmax() == 0 and w_strong.argmax() == 1
    assert torch.allclose(w_weak.sum(), torch.tensor(1.0)) and (
        w_strong[2] < 1e-3
    )
    # by hand: d_k = (1 - s) KL(p_k || p_s) + s CE(p_k, y), w = softmax(-5 d)
    log_ps = F.log_softmax(weak_student, -1)
    s = log_ps[0, 0].exp()
    d = torch.stack(
        [
            (1 - s)
            * F.kl_div(
                log_ps, F.log_softmax(z, -1), reduction="sum", log_target=True
            )
            + s * F.cross_entropy(z, y)
            for z in z_t
        ]
    )
    unselected = curriculum_teacher_weights(
        weak_student, z_t, y, select_correct=False
    )[0]
    assert torch.allclose(unselected, torch.softmax(-5 * d, 0), atol=1e-5)
    # with selection the wrong teacher (index 2) is dropped and the others renormalised
    assert w_weak[2] == 0 and torch.allclose(
        w_weak[:2], torch.softmax(-5 * d[:2], 0), atol=1e-5
    )
    # nobody right: everyone keeps a weight
    all_wrong = curriculum_teacher_weights(
        weak_student, z_t, torch.tensor([2])
    )[0]
    assert (all_wrong > 0).all()
    with pytest.raises(ValueError, match="label for every example"):
        curriculum_teacher_weights(weak_student, z_t, torch.tensor([-1]))


def test_cached_teacher_logits_give_the_same_step():
    torch.manual_seed(0)
    teacher, student = (
        snapshot(TinyConvNet(3, width=4)),
        TinyConvNet(3, width=4),
    )
    x, y = torch.rand(6, 3, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2])
    live, _ = distillation_step(teacher, 3.0, 0.5)(student, (x, y))
    cached, _ = distillation_step(None, 3.0, 0.5)(
        student, (x, y, teacher_logits([teacher], x)[0])
    )
    assert live.item() == pytest.approx(cached.item(), rel=1e-6)
    z = teacher_logits(
        [teacher, snapshot(TinyConvNet(3, width=4))], x
    ).transpose(0, 1)  # [B, K, C]
    loss, w = multi_teacher_step(None, "curriculum", 3.0)(student, (x, y, z))
    assert torch.isfinite(loss) and set(w) == {"w0", "w1"}


def _bn_stats(module):
    return [b.clone() for n, b in module.named_buffers() if "running" in n]


@pytest.mark.parametrize(
    "mode, learning",
    [
        ("linear_probe", set()),
        ("finetune_top", {"layer3"}),
        ("finetune_full", {"stem", "layer1", "layer2", "layer3"}),
    ],
)
def test_transfer_modes_freeze_what_they_say(mode, learning):
    torch.manual_seed(0)
    backbone = resnet_mini(4, width=4)
    model = TransferNet(copy.deepcopy(backbone), 3, mode)
    before = copy.deepcopy(model)
    x, y = torch.rand(16, 3, 32, 32), torch.randint(0, 3, (16,))
    fit(
        model,
        TensorLoader(x, y, batch_size=8),
        optimizer=transfer_optimizer(model, 1e-2),
        epochs=1,
        precision="fp32",
        progress=False,
        verbose=False,
    )
    parts = {
        "stem": ("conv1", "bn1"),
        "layer1": ("layer1",),
        "layer2": ("layer2",),
        "layer3": ("layer3",),
    }
    for name, prefixes in parts.items():
        mods_now = [getattr(model.backbone, p) for p in prefixes]
        mods_then = [getattr(before.backbone, p) for p in prefixes]
        same_w = all(
            torch.equal(a, b)
            for m, n in zip(mods_now, mods_then)
            for a, b in zip(m.parameters(), n.parameters())
        )
        same_bn = all(
            torch.equal(a, b)
            for m, n in zip(mods_now, mods_then)
            for a, b in zip(_bn_stats(m), _bn_stats(n))
        )
        assert (not same_w) == (name in learning), f"{mode}: {name} weights"
        assert (not same_bn) == (name in learning), (
            f"{mode}: {name} BatchNorm statistics"
        )
    assert not torch.equal(model.head.weight, before.head.weight)


def test_layerwise_learning_rates_decrease_towards_the_input():
    model = TransferNet(resnet_mini(4, width=4), 3, "finetune_full")
    groups = layerwise_param_groups(model, lr=1e-2, decay=0.5)
    assert [g["name"] for g in groups] == [
        "stem",
        "layer1",
        "layer2",
        "layer3",
        "head",
    ]
    assert [g["lr"] for g in groups] == pytest.approx(
        [1e-2 * 0.5**4, 1e-2 * 0.5**3, 1e-2 * 0.25, 5e-3, 1e-2]
    )
    n_params = sum(p.numel() for g in groups for p in g["params"])
    assert n_params == sum(
        p.numel() for p in model.parameters() if p.requires_grad
    )


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="mode='frozen'"):
        TransferNet(resnet_mini(2, width=4), 2, "frozen")
    with pytest.raises(ValueError, match="temperature=0"):
        soft_targets(torch.zeros(1, 2), 0)
    with pytest.raises(ValueError, match="alpha=1.5"):
        distillation_loss(
            torch.zeros(1, 2), torch.full((1, 2), 0.5), None, 1.0, alpha=1.5
        )
    with pytest.raises(ValueError, match="weighting='vote'"):
        multi_teacher_step(None, "vote")


def test_correctness_weights_are_the_strong_end_of_the_curriculum():
    g = torch.Generator().manual_seed(5)
    z_t = torch.randn(3, 4, 5, generator=g)
    y = torch.tensor([0, 1, 2, 3])
    from vnotes.transfer import correctness_teacher_weights

    confident_student = 50.0 * F.one_hot(y, 5).float()  # p(y) = 1
    expected = curriculum_teacher_weights(
        confident_student, z_t, y, select_correct=False
    )
    assert torch.allclose(
        correctness_teacher_weights(confident_student, z_t, y),
        expected,
        atol=1e-5,
    )
    ce = torch.stack(
        [F.cross_entropy(z, y, reduction="none") for z in z_t]
    )  # [K, B]
    assert torch.allclose(
        correctness_teacher_weights(torch.zeros(4, 5), z_t, y),
        torch.softmax(-5 * ce, 0).T,
        atol=1e-6,
    )
