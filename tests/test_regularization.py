"""vnotes.regularization: the from-scratch parts against PyTorch's own, and the experiment helpers."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vnotes.regularization import (
    BASELINE,
    CROP_OFFSETS,
    REMEDIES,
    BatchNorm1d,
    BatchNorm2d,
    Dropout,
    Recipe,
    accuracy_of,
    augment_batch,
    balanced_subset,
    bootstrap_indices,
    cross_validate,
    digit_augmentation,
    dropout,
    dropout_mismatch,
    ensemble_accuracy_by_size,
    ensemble_probs,
    epochs_for_steps,
    fraction_near_zero,
    kfold_indices,
    l1_penalty,
    l2_penalty,
    mc_dropout_probs,
    mean_std,
    mlp,
    multi_crop_probs,
    penalized_step,
    penalized_weights,
    predict_probs,
    rdrop_loss,
    rdrop_step,
    remedy,
    shifted_crops,
    small_cnn,
    small_digits,
    subset_ensembles,
    summarize,
    symmetric_kl,
    train_recipe,
)


# --------------------------------------------------------------------------- dropout
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_equals_torch_given_the_same_random_state(p):
    x = torch.randn(64, 33)
    torch.manual_seed(7)
    ours = dropout(x, p, training=True)
    torch.manual_seed(7)
    ref = F.dropout(x, p, training=True)
    assert torch.equal(ours == 0, ref == 0), (
        "the same Bernoulli draws must drop the same units"
    )
    assert torch.equal(ours, ref), (
        "and scale the survivors by exactly the same 1/(1-p)"
    )


def test_dropout_matches_nn_dropout_in_distribution():
    x = torch.ones(400_000)
    ours = Dropout(0.3).train()(x)
    ref = nn.Dropout(0.3).train()(x)
    for out in (ours, ref):
        assert (
            abs((out == 0).float().mean().item() - 0.3) < 0.005
        )  # a unit is dropped with probability p
        assert (
            abs(out.mean().item() - 1.0) < 0.01
        )  # inverted scaling keeps E[y] = x
    assert (
        ours.unique().tolist()
        == ref.unique().tolist()
        == [0.0, pytest.approx(1 / 0.7)]
    )  # survivors scaled by 1/(1-p)


def test_dropout_is_the_identity_in_eval_mode_and_masks_the_gradient():
    x = torch.randn(8, 16, requires_grad=True)
    layer = Dropout(0.5)
    assert torch.equal(layer.eval()(x), x)
    assert torch.equal(layer.eval()(x), nn.Dropout(0.5).eval()(x))
    y = layer.train()(x)
    y.sum().backward()
    kept = (y != 0).float()
    torch.testing.assert_close(x.grad, kept / 0.5)


def test_dropout_edge_probabilities_and_bad_values():
    x = torch.randn(5, 5)
    assert torch.equal(dropout(x, 0.0), x)
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    assert torch.equal(F.dropout(x, 1.0), torch.zeros_like(x))
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="p="):
            Dropout(bad)


# --------------------------------------------------------------------------- batch norm
def _pair(cls_ours, cls_ref, c, **kw):
    torch.manual_seed(0)
    ours, ref = cls_ours(c, **kw), cls_ref(c, **kw)
    if ours.affine:
        with torch.no_grad():
            w, b = torch.randn(c), torch.randn(c)
            ours.weight.copy_(w)
            ref.weight.copy_(w)
            ours.bias.copy_(b)
            ref.bias.copy_(b)
    return ours, ref


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(momentum=0.3),
        dict(momentum=None),
        dict(affine=False),
        dict(eps=1e-3),
    ],
)
def test_batchnorm2d_equals_torch_in_train_and_eval(kw):
    ours, ref = _pair(BatchNorm2d, nn.BatchNorm2d, 6, **kw)
    for step in range(4):  # several batches: the running statistics accumulate
        x = (torch.randn(5, 6, 7, 3) * (step + 1) + step).requires_grad_()
        x_ref = x.detach().clone().requires_grad_()
        y, y_ref = ours.train()(x), ref.train()(x_ref)
        torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
        g = torch.randn_like(y)
        y.backward(g)
        y_ref.backward(g)
        torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == 4
    if ours.affine:
        torch.testing.assert_close(
            ours.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-5
        )
        torch.testing.assert_close(
            ours.bias.grad, ref.bias.grad, rtol=1e-4, atol=1e-5
        )
    x = torch.randn(3, 6, 7, 3) * 2 + 1
    torch.testing.assert_close(
        ours.eval()(x), ref.eval()(x), rtol=1e-5, atol=1e-5
    )


def test_batchnorm_eval_output_does_not_depend_on_the_batch():
    bn = BatchNorm2d(3)
    for _ in range(20):
        bn(torch.randn(8, 3, 4, 4) * 3 + 2)
    one = torch.randn(1, 3, 4, 4)
    others = torch.randn(7, 3, 4, 4) * 5
    bn.eval()
    torch.testing.assert_close(bn(torch.cat([one, others]))[:1], bn(one))
    bn.train()
    assert not torch.allclose(
        bn(torch.cat([one, others]))[:1], bn(torch.cat([one, -others]))[:1]
    )


def test_batchnorm_without_running_stats_and_state_dict_compatibility():
    ours, ref = _pair(
        BatchNorm2d, nn.BatchNorm2d, 4, track_running_stats=False
    )
    x = torch.randn(6, 4, 3, 3)
    torch.testing.assert_close(
        ours.eval()(x), ref.eval()(x), rtol=1e-5, atol=1e-5
    )  # batch statistics in eval too
    trained = nn.BatchNorm2d(4)
    for _ in range(3):
        trained(torch.randn(8, 4, 2, 2) + 1)
    mine = BatchNorm2d(4)
    mine.load_state_dict(
        trained.state_dict()
    )  # same parameter and buffer names
    x = torch.randn(2, 4, 2, 2)
    torch.testing.assert_close(mine.eval()(x), trained.eval()(x))


@pytest.mark.parametrize("shape", [(16, 5), (16, 5, 9)])
def test_batchnorm1d_equals_torch(shape):
    ours, ref = _pair(BatchNorm1d, nn.BatchNorm1d, 5)
    for _ in range(3):
        x = torch.randn(*shape) * 2 - 1
        torch.testing.assert_close(
            ours.train()(x), ref.train()(x), rtol=1e-5, atol=1e-5
        )
    torch.testing.assert_close(ours.running_var, ref.running_var)
    x = torch.randn(*shape)
    torch.testing.assert_close(
        ours.eval()(x), ref.eval()(x), rtol=1e-5, atol=1e-5
    )


def test_batchnorm_training_matches_torch_inside_a_network():
    def net(bn):
        torch.manual_seed(3)
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1, bias=False),
            bn(4),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64, 3),
        )

    ours, ref = net(BatchNorm2d), net(nn.BatchNorm2d)
    opt_o = torch.optim.SGD(ours.parameters(), lr=0.1)
    opt_r = torch.optim.SGD(ref.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        x, y = (
            torch.randn(10, 1, 4, 4, generator=g),
            torch.randint(0, 3, (10,), generator=g),
        )
        for model, opt in ((ours, opt_o), (ref, opt_r)):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    for (name, a), b in zip(
        ours.state_dict().items(), ref.state_dict().values()
    ):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_batchnorm_rejects_bad_shapes_and_settings():
    with pytest.raises(ValueError, match="4-D"):
        BatchNorm2d(3)(torch.randn(2, 3))
    with pytest.raises(ValueError, match="num_features=3"):
        BatchNorm2d(3)(torch.randn(2, 4, 5, 5))
    with pytest.raises(ValueError, match="more than one value"):
        BatchNorm1d(3)(torch.randn(1, 3))
    with pytest.raises(ValueError, match="momentum"):
        BatchNorm2d(3, momentum=1.5)


# --------------------------------------------------------------------------- penalties and weight decay
def test_penalties_closed_form_and_gradients():
    w = [
        torch.tensor([[1.0, -2.0], [0.5, 0.0]], requires_grad=True),
        torch.tensor([[-3.0]], requires_grad=True),
    ]
    assert l1_penalty(w).item() == pytest.approx(6.5)
    assert l2_penalty(w).item() == pytest.approx(0.5 * (1 + 4 + 0.25 + 9))
    l1_penalty(w).backward()
    assert torch.equal(
        w[0].grad, torch.sign(w[0].detach())
    )  # the L1 pull has constant size
    w[0].grad = None
    l2_penalty(w).backward()
    assert torch.equal(
        w[0].grad, w[0].detach()
    )  # the L2 pull is proportional to w
    with pytest.raises(ValueError, match="no parameters"):
        l1_penalty([])


def _twin_models():
    torch.manual_seed(1)
    a = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    b = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    b.load_state_dict(a.state_dict())
    return a, b


def _train_both(a, b, opt_a, opt_b, step_a, step_b, steps=6):
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        batch = (
            torch.randn(8, 6, generator=g),
            torch.randint(0, 3, (8,), generator=g),
        )
        for model, opt, step in ((a, opt_a, step_a), (b, opt_b, step_b)):
            opt.zero_grad()
            out = step(model, batch)
            (out[0] if isinstance(out, tuple) else out).backward()
            opt.step()


def _ce(model, batch):
    return F.cross_entropy(model(batch[0]), batch[1])


@pytest.mark.parametrize(
    "opt_cls,kw",
    [
        (torch.optim.SGD, dict(lr=0.1)),
        (torch.optim.SGD, dict(lr=0.1, momentum=0.9)),
        (torch.optim.Adam, dict(lr=1e-2)),
    ],
)
def test_l2_in_the_loss_equals_torch_coupled_weight_decay(opt_cls, kw):
    lam = 0.05
    ours, ref = _twin_models()
    # torch's coupled weight_decay adds lambda*w to the gradient -- the gradient of lambda/2 ||w||^2 --
    # on the weights only here (biases in a group without decay), exactly what penalized_step(l2=lam) does
    groups = [
        {"params": penalized_weights(ref), "weight_decay": lam},
        {
            "params": [p for p in ref.parameters() if p.dim() == 1],
            "weight_decay": 0.0,
        },
    ]
    _train_both(
        ours,
        ref,
        opt_cls(ours.parameters(), **kw),
        opt_cls(groups, **kw),
        penalized_step(l2=lam),
        _ce,
    )
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_decoupled_weight_decay_differs_from_l2_under_adam():
    lam, lr = 0.5, 1e-2
    coupled, decoupled = _twin_models()
    _train_both(
        coupled,
        decoupled,
        torch.optim.Adam(coupled.parameters(), lr=lr),
        torch.optim.AdamW(
            [
                {"params": penalized_weights(decoupled), "weight_decay": lam},
                {
                    "params": [
                        p for p in decoupled.parameters() if p.dim() == 1
                    ],
                    "weight_decay": 0.0,
                },
            ],
            lr=lr,
        ),
        penalized_step(l2=lam),
        _ce,
    )
    diff = max(
        (a - b).abs().max().item()
        for a, b in zip(coupled.parameters(), decoupled.parameters())
    )
    assert diff > 1e-3, (
        "L2 through Adam's normalisation is not weight decay (Loshchilov & Hutter, 2019)"
    )
    # with no data gradient, one AdamW step is exactly w <- (1 - lr * lambda) w
    w = nn.Parameter(torch.randn(4, 4))
    before = w.detach().clone()
    opt = torch.optim.AdamW([w], lr=lr, weight_decay=lam)
    w.grad = torch.zeros_like(w)
    opt.step()
    torch.testing.assert_close(w.detach(), before * (1 - lr * lam))


def test_penalized_step_and_fraction_near_zero():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    batch = (torch.randn(5, 4), torch.randint(0, 2, (5,)))
    loss, extra = penalized_step(l1=0.1, l2=0.2)(model, batch)
    w = penalized_weights(model)
    assert [p.shape for p in w] == [(3, 4), (2, 3)]  # biases are left free
    expected = (
        F.cross_entropy(model(batch[0]), batch[1])
        + 0.1 * l1_penalty(w)
        + 0.2 * l2_penalty(w)
    )
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(
        extra["ce"], F.cross_entropy(model(batch[0]), batch[1])
    )
    assert (
        fraction_near_zero([torch.tensor([0.0, 1e-4, -2e-3, 1.0])], tol=1e-3)
        == 0.5
    )
    with pytest.raises(ValueError, match="non-negative"):
        penalized_step(l1=-1.0)


# --------------------------------------------------------------------------- R-Drop
def test_symmetric_kl_equals_torch_distributions():
    from torch.distributions import Categorical, kl_divergence

    a, b = torch.randn(7, 5) * 2, torch.randn(7, 5)
    p, q = Categorical(logits=a), Categorical(logits=b)
    ref = 0.5 * (kl_divergence(p, q) + kl_divergence(q, p)).mean()
    torch.testing.assert_close(symmetric_kl(a, b), ref)
    torch.testing.assert_close(symmetric_kl(a, b), symmetric_kl(b, a))
    assert symmetric_kl(a, a).item() == pytest.approx(0.0, abs=1e-7)


def test_rdrop_loss_is_mean_ce_plus_alpha_kl():
    a, b, y = torch.randn(6, 4), torch.randn(6, 4), torch.randint(0, 4, (6,))
    loss, parts = rdrop_loss(a, b, y, alpha=2.0)
    ce = 0.5 * (F.cross_entropy(a, y) + F.cross_entropy(b, y))
    kl = 0.5 * (
        F.kl_div(
            F.log_softmax(b, -1),
            F.log_softmax(a, -1),
            reduction="batchmean",
            log_target=True,
        )
        + F.kl_div(
            F.log_softmax(a, -1),
            F.log_softmax(b, -1),
            reduction="batchmean",
            log_target=True,
        )
    )
    torch.testing.assert_close(loss, ce + 2.0 * kl)
    torch.testing.assert_close(parts["kl"], kl)
    with pytest.raises(ValueError, match="alpha"):
        rdrop_loss(a, b, y, alpha=-1)


def test_rdrop_step_draws_two_different_masks():
    torch.manual_seed(0)
    model = mlp(8, 16, 1, num_classes=3, dropout=0.5)
    batch = (torch.randn(4, 8), torch.randint(0, 3, (4,)))
    loss, parts = rdrop_step(1.0)(model.train(), batch)
    assert parts["kl"].item() > 0  # the two passes disagree
    loss, parts = rdrop_step(1.0)(model.eval(), batch)
    assert parts["kl"].item() == pytest.approx(
        0.0, abs=1e-7
    )  # without dropout they are the same network


def test_mc_dropout_and_mismatch():
    torch.manual_seed(0)
    model = mlp(8, 32, 1, num_classes=3, dropout=0.5, batchnorm=True)
    x = torch.randn(50, 8)
    model.train()(x)  # give batch norm some running statistics
    one = mc_dropout_probs(model, x, samples=1)
    many = mc_dropout_probs(model, x, samples=200)
    full = predict_probs(model, x)
    assert model.training  # the mode is restored
    assert (many - full).abs().mean() < (
        one - full
    ).abs().mean()  # averaging thinned nets approaches the full net
    torch.testing.assert_close(many.sum(-1), torch.ones(50))
    assert dropout_mismatch(model, x) > 0
    with pytest.raises(ValueError, match="no dropout"):
        mc_dropout_probs(nn.Linear(8, 3), x, samples=2)


# --------------------------------------------------------------------------- augmentation, crops, ensembles
def test_augment_batch_draws_parameters_per_image():
    torch.manual_seed(0)
    img = torch.zeros(1, 16, 16)
    img[:, 4:12, 6:10] = 1.0
    batch = img.expand(6, 1, 16, 16).clone()
    out = augment_batch(batch, digit_augmentation("affine"))
    assert out.shape == batch.shape
    assert len({tuple(o.flatten().tolist()) for o in out}) > 1, (
        "each image gets its own random transform"
    )
    for kind in ("crop", "elastic"):
        assert (
            augment_batch(batch, digit_augmentation(kind)).shape == batch.shape
        )
    small = torch.rand(3, 1, 8, 8)
    shifted = augment_batch(
        small, digit_augmentation("crop")
    )  # a random shift by at most one pixel, any size
    assert shifted.shape == small.shape
    assert all(
        any(torch.equal(s, c[i]) for c in shifted_crops(small, "nine"))
        for i, s in enumerate(shifted)
    )
    with pytest.raises(ValueError, match="allowed"):
        digit_augmentation("flip")
    with pytest.raises(ValueError, match="B, C, H, W"):
        augment_batch(img, digit_augmentation("crop"))


def test_shifted_crops_are_shifts_of_the_image():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float).reshape(2, 1, 4, 4)
    crops = shifted_crops(x, "nine")
    assert crops.shape == (9, 2, 1, 4, 4)
    assert torch.equal(crops[CROP_OFFSETS["nine"].index((0, 0))], x)
    down = crops[
        CROP_OFFSETS["nine"].index((1, 0))
    ]  # the window moves one row down
    assert torch.equal(down[..., :-1, :], x[..., 1:, :]) and torch.equal(
        down[..., -1, :], torch.zeros(2, 1, 4)
    )
    assert shifted_crops(x, "five").shape[0] == 5
    with pytest.raises(ValueError, match="allowed"):
        shifted_crops(x, "ten")


def test_multi_crop_and_ensemble_probabilities():
    torch.manual_seed(0)
    model = small_cnn(4)
    x = torch.rand(5, 1, 8, 8)
    torch.testing.assert_close(
        multi_crop_probs(model, x, "center"), predict_probs(model, x)
    )
    by_hand = torch.stack(
        [predict_probs(model, v) for v in shifted_crops(x, "five")]
    ).mean(0)
    torch.testing.assert_close(multi_crop_probs(model, x, "five"), by_hand)
    other = small_cnn(4)
    torch.testing.assert_close(
        ensemble_probs([model, other], x),
        0.5 * (predict_probs(model, x) + predict_probs(other, x)),
    )
    y = torch.randint(0, 10, (5,))
    curve = ensemble_accuracy_by_size([model, other], x, y)
    assert len(curve) == 2 and curve[0] == pytest.approx(
        float((predict_probs(model, x).argmax(-1) == y).float().mean())
    )
    ens, member = subset_ensembles([model, other, small_cnn(4)], x, y, size=2)
    assert len(ens) == len(member) == 3


# --------------------------------------------------------------------------- data splits
def test_balanced_subset_kfold_and_bootstrap():
    labels = torch.arange(10).repeat_interleave(13)
    idx = balanced_subset(labels, 50, seed=1)
    assert (
        len(idx.unique()) == 50
        and torch.bincount(labels[idx]).tolist() == [5] * 10
    )
    folds = kfold_indices(labels, k=5, seed=0)
    seen = torch.cat([va for _, va in folds]).sort().values
    assert torch.equal(
        seen, torch.arange(130)
    )  # each example is validated on exactly once
    for tr, va in folds:
        assert len(set(tr.tolist()) & set(va.tolist())) == 0
        counts = torch.bincount(labels[va], minlength=10)
        assert counts.max() - counts.min() <= 1  # stratified
    boot = bootstrap_indices(1000, seed=0)
    assert boot.min() >= 0 and boot.max() < 1000
    assert (
        0.58 < len(boot.unique()) / 1000 < 0.68
    )  # about 1 - 1/e of the examples appear
    with pytest.raises(ValueError, match="k=1"):
        kfold_indices(labels, k=1)
    with pytest.raises(ValueError, match="n=0"):
        bootstrap_indices(0, seed=0)


def test_small_digits_is_balanced_and_fixed():
    d = small_digits(60, size=16)
    assert (
        d.x_train.shape == (60, 1, 16, 16)
        and torch.bincount(d.y_train).tolist() == [6] * 10
    )
    assert torch.equal(small_digits(60, size=16).y_train, d.y_train)
    assert len(d.y_val) > 300 and len(d.y_test) > 300


# --------------------------------------------------------------------------- models and recipes
def test_builders_shapes_and_errors():
    assert mlp(64, 32, 3, dropout=0.2, batchnorm=True)(
        torch.rand(4, 1, 8, 8)
    ).shape == (4, 10)
    assert small_cnn(8, batchnorm=True, dropout=0.1)(
        torch.rand(4, 1, 16, 16)
    ).shape == (4, 10)
    assert any(
        isinstance(m, BatchNorm2d)
        for m in small_cnn(8, batchnorm=True).modules()
    )
    with pytest.raises(ValueError, match="depth=0"):
        mlp(depth=0)
    with pytest.raises(ValueError, match="R-Drop"):
        Recipe(rdrop_alpha=1.0)
    with pytest.raises(ValueError, match="not both"):
        Recipe(l2=1e-3, weight_decay=1.0)
    with pytest.raises(ValueError, match="allowed"):
        Recipe(augment="mixup")
    with pytest.raises(ValueError, match="unknown"):
        remedy("magic")
    assert all(remedy(name).name == name for name in REMEDIES)
    assert (
        epochs_for_steps(100, 20, 500) == 100
        and epochs_for_steps(1000, 20, 500) == 10
    )
    for bad in (0, -4):
        with pytest.raises(ValueError, match=f"batch_size={bad} must be"):
            epochs_for_steps(100, bad, 500)


def test_train_recipe_is_seeded_and_early_stopping_restores_the_best():
    data = small_digits(40, size=8)
    quick = BASELINE.vary("quick", epochs=3, hidden=32)
    a, b = train_recipe(quick, data, 0), train_recipe(quick, data, 0)
    assert a.test_acc == b.test_acc and a.test_loss == b.test_loss
    assert 0.0 <= a.test_acc <= 1.0 and a.gap == pytest.approx(
        a.train_acc - a.test_acc
    )
    assert len(a.history["val_train_acc"]) == 3
    stop = train_recipe(
        quick.vary("stop", epochs=40, early_stopping=2, lr=3e-2), data, 0
    )
    val_losses = stop.history["val_loss"]
    assert stop.best_epoch == min(
        range(len(val_losses)), key=val_losses.__getitem__
    )
    assert stop.history.epochs_run < 40
    runs = cross_validate(quick, data, k=2)
    assert len(runs) == 2 and all(r.n_train == 20 for r in runs)
    row = summarize([a, b], baseline=[a])
    assert row["Δ accuracy"] == "+0.000" and row["seeds"] == 2
    assert mean_std([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))


def test_accuracy_of_counts_arg_max_and_checks_label_shape():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    assert accuracy_of(probs, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"labels of shape \(3, 2\).*\(3,\)"):
        accuracy_of(probs, F.one_hot(torch.tensor([0, 1, 1])))
    with pytest.raises(ValueError, match=r"labels of shape \(2,\)"):
        accuracy_of(probs, torch.tensor([0, 1]))
