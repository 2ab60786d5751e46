"""Chapter 5 (self-supervised learning): losses against independent formulations, augmentations against
torchvision, the MoCo queue and the momentum/EMA updates against their closed forms, MAE's masking,
and the evaluation protocol against scikit-learn."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vnotes.ssl import (
    BYOL,
    DINO,
    MoCo,
    MultiCrop,
    SimCLR,
    SwAV,
    ViewAugment,
    byol_loss,
    dino_loss,
    effective_rank,
    hard_negative_nt_xent,
    info_nce,
    knn_classify,
    linear_probe,
    negative_weights,
    normalized_std,
    nt_xent,
    nt_xent_reference,
    sinkhorn_knopp,
    ssl_step,
    swav_loss,
)
from vnotes.ssl.augment import apply_with_torchvision, resized_crop
from vnotes.ssl.mae import (
    MAE,
    patchify,
    random_masking,
    sincos_position_embedding,
    unpatchify,
)
from vnotes.ssl.methods import DINOHead, cosine_schedule


class TinyEncoder(nn.Module):
    """A small conv encoder with BatchNorm and the ResNet feature contract, for fast tests."""

    num_features = 8

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)

    def forward_features(self, x, pool=True):
        y = torch.relu(self.bn(self.conv(x)))
        return y.mean((2, 3)) if pool else y


def _pairs(n=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)


# --------------------------------------------------------------------------- contrastive losses
@pytest.mark.parametrize("temperature", [0.05, 0.2, 0.5, 1.0])
def test_nt_xent_matches_anchor_by_anchor_reference(temperature):
    z1, z2 = _pairs()
    got = nt_xent(z1, z2, temperature)
    ref = nt_xent_reference(z1, z2, temperature)
    assert abs(got.item() - ref.item()) < 1e-5


def test_nt_xent_gradient_matches_reference():
    z1, z2 = _pairs(5, 4, seed=1)
    a1, a2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    nt_xent(a1, a2, 0.3).backward()
    b1, b2 = z1.double().requires_grad_(), z2.double().requires_grad_()
    nt_xent_reference(b1, b2, 0.3).backward()
    assert torch.allclose(a1.grad.double(), b1.grad, atol=1e-5)
    assert torch.allclose(a2.grad.double(), b2.grad, atol=1e-5)


def test_nt_xent_is_the_mean_of_info_nce_over_anchors():
    """SimCLR's loss is InfoNCE per anchor with the other 2N - 2 views as that anchor's negatives."""
    z1, z2 = _pairs(4, 3, seed=2)
    views = torch.cat([z1, z2])
    n = z1.shape[0]
    losses = []
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        negatives = torch.stack(
            [views[k] for k in range(2 * n) if k not in (i, j)]
        )
        losses.append(
            info_nce(views[i : i + 1], views[j : j + 1], negatives, 0.4)
        )
    assert (
        abs(torch.stack(losses).mean().item() - nt_xent(z1, z2, 0.4).item())
        < 1e-5
    )


def test_info_nce_closed_form_with_shared_and_per_query_negatives():
    g = torch.Generator().manual_seed(3)
    q, k, neg = (
        torch.randn(3, 4, generator=g),
        torch.randn(3, 4, generator=g),
        torch.randn(5, 4, generator=g),
    )
    qn, kn, nn_ = (F.normalize(t.double(), dim=-1) for t in (q, k, neg))
    t = 0.07
    expected = -torch.log(
        torch.exp((qn * kn).sum(1) / t)
        / (torch.exp((qn * kn).sum(1) / t) + torch.exp(qn @ nn_.T / t).sum(1))
    ).mean()
    assert abs(info_nce(q, k, neg, t).item() - expected.item()) < 1e-4
    per_query = neg.expand(3, 5, 4)
    assert (
        abs(
            info_nce(q, k, per_query, t).item() - info_nce(q, k, neg, t).item()
        )
        < 1e-6
    )


def test_losses_reject_bad_arguments():
    z1, z2 = _pairs()
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(z1, z2, 0.0)
    with pytest.raises(ValueError, match="same shape"):
        nt_xent(z1, z2[:3])
    with pytest.raises(ValueError, match="beta"):
        hard_negative_nt_xent(z1, z2, beta=-1)
    with pytest.raises(ValueError, match="tau_plus"):
        hard_negative_nt_xent(z1, z2, tau_plus=1.0)


def test_hard_negative_loss_reduces_to_nt_xent_and_matches_its_formula():
    z1, z2 = _pairs(6, 5, seed=4)
    assert (
        abs(
            hard_negative_nt_xent(z1, z2, 0.5, beta=0.0, tau_plus=0.0).item()
            - nt_xent(z1, z2, 0.5).item()
        )
        < 1e-5
    )
    # Robinson et al. (2021), written directly with exponentials in float64
    t, beta, tau_plus = 0.5, 1.0, 0.1
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    m, n = z.shape[0], z1.shape[0]
    total = 0.0
    for i in range(m):
        j = (i + n) % m
        pos = torch.exp(z[i] @ z[j] / t)
        neg = torch.stack(
            [torch.exp(z[i] @ z[k] / t) for k in range(m) if k not in (i, j)]
        )
        imp = neg**beta
        reweighted = (imp * neg).sum() / imp.mean()
        N = m - 2
        Ng = torch.clamp(
            (-tau_plus * N * pos + reweighted) / (1 - tau_plus),
            min=N * math.exp(-1 / t),
        )
        total = total - torch.log(pos / (pos + Ng))
    assert (
        abs(
            hard_negative_nt_xent(z1, z2, t, beta, tau_plus).item()
            - (total / m).item()
        )
        < 1e-5
    )


def test_negative_weights_are_a_softmax_that_sharpens_as_temperature_drops():
    z1, z2 = _pairs(8, 6, seed=5)
    hot, cold = negative_weights(z1, z2, 1.0), negative_weights(z1, z2, 0.05)
    assert hot.shape == (16, 14)
    assert torch.allclose(hot.sum(1), torch.ones(16), atol=1e-6)
    assert (cold.max(1).values > hot.max(1).values).all()


# --------------------------------------------------------------------------- BYOL, SwAV, DINO losses
def test_byol_loss_is_two_minus_two_cosine_and_the_normalised_mse():
    p, z = _pairs(4, 7, seed=6)
    cos = F.cosine_similarity(p, z, dim=1)
    assert abs(byol_loss(p, z).item() - (2 - 2 * cos).mean().item()) < 1e-6
    mse = (F.normalize(p, dim=1) - F.normalize(z, dim=1)).pow(2).sum(1).mean()
    assert abs(byol_loss(p, z).item() - mse.item()) < 1e-6


def test_sinkhorn_converges_to_the_scaled_equipartition():
    """Q = Diag(u) exp(S / eps) Diag(v) with uniform marginals (Cuturi, 2013): checked by its defining properties."""
    g = torch.Generator().manual_seed(7)
    scores = F.normalize(torch.randn(24, 4, generator=g), dim=1)
    eps = 0.5
    Q = sinkhorn_knopp(scores, epsilon=eps, iterations=200).double()
    assert torch.allclose(
        Q.sum(1), torch.ones(24, dtype=torch.double), atol=1e-6
    )  # each sample: 1
    assert torch.allclose(
        Q.sum(0), torch.full((4,), 24 / 4, dtype=torch.double), atol=1e-4
    )  # each prototype: B/K
    # log Q - S/eps must be a_i + b_j: its double-centred residual vanishes
    R = Q.log() - scores.double() / eps
    residual = R - R.mean(1, keepdim=True) - R.mean(0, keepdim=True) + R.mean()
    assert residual.abs().max() < 1e-6
    # three iterations (SwAV's setting) give rows that are exact distributions
    Q3 = sinkhorn_knopp(scores, epsilon=0.05, iterations=3)
    assert torch.allclose(Q3.sum(1), torch.ones(24), atol=1e-5)


def test_swav_loss_is_the_swapped_cross_entropy():
    g = torch.Generator().manual_seed(8)
    s = [torch.randn(5, 3, generator=g) for _ in range(3)]
    q = [torch.softmax(torch.randn(5, 3, generator=g), 1) for _ in range(2)]
    t = 0.1
    ce = lambda code, score: (
        -(code * F.log_softmax(score / t, 1)).sum(1).mean()
    )
    expected = (
        ce(q[0], s[1]) + ce(q[0], s[2]) + ce(q[1], s[0]) + ce(q[1], s[2])
    ) / 4
    assert (
        abs(swav_loss(s, q, t, code_views=(0, 1)).item() - expected.item())
        < 1e-6
    )


def test_dino_loss_matches_explicit_sum_and_ignores_a_shared_shift():
    g = torch.Generator().manual_seed(9)
    student = [torch.randn(4, 6, generator=g) for _ in range(4)]
    teacher = [torch.randn(4, 6, generator=g) for _ in range(2)]
    center = torch.randn(1, 6, generator=g)
    ts, tt = 0.1, 0.04
    total, pairs = 0.0, 0
    for i, t in enumerate(teacher):
        p_t = torch.softmax((t - center) / tt, 1)
        for j, s in enumerate(student):
            if i != j:
                total += -(p_t * F.log_softmax(s / ts, 1)).sum(1).mean()
                pairs += 1
    got = dino_loss(student, teacher, center, ts, tt)
    assert abs(got.item() - (total / pairs).item()) < 1e-5
    shift = torch.randn(1, 6, generator=g)
    shifted = dino_loss(
        student, [t + shift for t in teacher], center + shift, ts, tt
    )
    assert abs(shifted.item() - got.item()) < 1e-4


# --------------------------------------------------------------------------- augmentations
@pytest.mark.parametrize("solarize_p", [0.0, 0.5])
def test_batched_views_match_torchvision_image_by_image(solarize_p):
    g = torch.Generator().manual_seed(10)
    x = torch.rand(48, 3, 32, 32, generator=g)
    aug = ViewAugment(size=32, solarize_p=solarize_p, hue=0.5)
    params = aug.sample(48, 32, 32, generator=g)
    assert (
        aug.apply(x, params) - apply_with_torchvision(x, params, 32)
    ).abs().max() < 1e-5


def test_downscaling_crop_matches_torchvision_bilinear_without_antialias():
    from torchvision.transforms.v2 import functional as TF

    g = torch.Generator().manual_seed(11)
    x = torch.rand(6, 3, 32, 32, generator=g)
    boxes = [(0, 0, 32, 32), (3, 5, 20, 17), (10, 2, 22, 30)]
    for top, left, h, w in boxes:
        n = x.shape[0]
        got = resized_crop(
            x,
            torch.full((n,), top),
            torch.full((n,), left),
            torch.full((n,), h),
            torch.full((n,), w),
            16,
        )
        ref = torch.stack(
            [
                TF.resized_crop(
                    img, top, left, h, w, [16, 16], antialias=False
                )
                for img in x
            ]
        )
        assert (got - ref).abs().max() < 1e-5


def test_crop_boxes_stay_inside_the_image_and_cover_the_asked_area():
    aug = ViewAugment(scale=(0.3, 1.0))
    p = aug.sample(2000, 32, 32, generator=torch.Generator().manual_seed(12))
    assert (p.top >= 0).all() and (p.left >= 0).all()
    assert (p.top + p.height <= 32).all() and (p.left + p.width <= 32).all()
    area = (p.height * p.width).float() / 1024
    assert area.min() > 0.2 and area.max() <= 1.0


def test_view_augment_rejects_bad_arguments():
    with pytest.raises(ValueError, match="scale"):
        ViewAugment(scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="hue"):
        ViewAugment(hue=0.7)
    with pytest.raises(ValueError, match="jitter_p"):
        ViewAugment(jitter_p=1.5)
    with pytest.raises(ValueError, match="RGB"):
        ViewAugment()(torch.rand(2, 1, 32, 32))


def test_multi_crop_gives_global_then_local_views():
    mc = MultiCrop(
        ViewAugment(size=32),
        ViewAugment(size=16, scale=(0.1, 0.4)),
        n_global=2,
        n_local=3,
    )
    views = mc(torch.rand(4, 3, 32, 32))
    assert [v.shape[-1] for v in views] == [32, 32, 16, 16, 16]


# --------------------------------------------------------------------------- MoCo: queue and momentum encoder
def test_moco_queue_is_fifo_with_wrap_around():
    moco = MoCo(TinyEncoder(), projection_dim=2, queue_size=5)
    keys = [
        torch.full((2, 2), float(i)) for i in range(4)
    ]  # four batches of 2 keys
    for k in keys:
        moco.enqueue(k)
    # 8 keys went into 5 slots: slots hold batches 3 (slots 0-1... wrapped), the pointer is at 8 mod 5 = 3
    assert int(moco.queue_ptr) == 3
    assert moco.queue[:, 0].tolist() == [2.0, 3.0, 3.0, 1.0, 2.0]
    moco.enqueue(
        torch.arange(14.0).view(7, 2)
    )  # a batch larger than the queue
    assert (
        moco.queue[:, 0].tolist() == [4.0, 6.0, 8.0, 10.0, 12.0]
        and int(moco.queue_ptr) == 0
    )


def _one_sgd_step(method, x):
    """One SGD step (lr 0.5) on the trainable parameters, so online and EMA weights differ afterwards."""
    opt = torch.optim.SGD(
        [p for p in method.parameters() if p.requires_grad], lr=0.5
    )
    loss, _ = method.training_step(x)
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_moco_step_updates_key_encoder_by_momentum_and_enqueues_keys():
    torch.manual_seed(0)
    moco = MoCo(
        TinyEncoder(),
        projection_dim=4,
        queue_size=16,
        momentum=0.9,
        shuffle_groups=2,
    )
    x = torch.rand(8, 3, 32, 32)
    _one_sgd_step(moco, x)  # so that query and key encoders differ
    before_k = [p.clone() for p in moco.key_encoder.parameters()]
    q_params = [p.clone() for p in moco.encoder.parameters()]
    moco.training_step(x)
    for k_old, q, k_new in zip(
        before_k, q_params, moco.key_encoder.parameters()
    ):
        assert torch.allclose(k_new, 0.9 * k_old + 0.1 * q, atol=1e-6)
    assert all(p.grad is None for p in moco.key_encoder.parameters())
    assert int(moco.queue_ptr) == 16 % 16  # two batches of 8 keys
    assert torch.allclose(moco.queue.norm(dim=1), torch.ones(16), atol=1e-5)


def test_moco_keys_do_not_depend_on_the_shuffle_without_groups():
    torch.manual_seed(1)
    moco = MoCo(
        TinyEncoder(), projection_dim=4, queue_size=8, shuffle_groups=1
    )
    x = torch.rand(6, 3, 16, 16)
    expected = F.normalize(moco._key_fn(x).float(), dim=1)
    assert torch.allclose(moco.keys(x), expected, atol=1e-5)


# --------------------------------------------------------------------------- BYOL and DINO: EMA targets
def test_cosine_momentum_schedule_endpoints():
    assert cosine_schedule(0, 100, 0.99, 1.0) == pytest.approx(0.99)
    assert cosine_schedule(50, 100, 0.99, 1.0) == pytest.approx(0.995)
    assert cosine_schedule(100, 100, 0.99, 1.0) == pytest.approx(1.0)


def test_byol_target_is_an_ema_of_the_online_network():
    torch.manual_seed(2)
    byol = BYOL(
        TinyEncoder(),
        projection_dim=4,
        hidden_dim=8,
        base_momentum=0.8,
        total_steps=10,
    )
    x = torch.rand(8, 3, 32, 32)
    _one_sgd_step(byol, x)
    tau = byol.current_momentum()
    assert tau == pytest.approx(cosine_schedule(1, 10, 0.8, 1.0))
    before = [p.clone() for p in byol.target_projector.parameters()]
    online = [p.clone() for p in byol.projector.parameters()]
    byol.training_step(x)
    for t_old, o, t_new in zip(
        before, online, byol.target_projector.parameters()
    ):
        assert torch.allclose(t_new, tau * t_old + (1 - tau) * o, atol=1e-6)
    assert all(not p.requires_grad for p in byol.target_encoder.parameters())


def test_dino_centre_update_and_teacher_ema():
    from vnotes.transformer import ViT

    torch.manual_seed(3)
    vit = ViT(image_size=16, patch_size=4, dim=16, depth=1, num_heads=2)
    mc = MultiCrop(
        ViewAugment(size=16), ViewAugment(size=8, scale=(0.1, 0.4)), 2, 2
    )
    dino = DINO(
        vit,
        out_dim=10,
        hidden_dim=12,
        bottleneck_dim=6,
        base_momentum=0.9,
        total_steps=4,
        center_momentum=0.9,
        multi_crop=mc,
    )
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        loss, logs = dino.training_step(x)
    assert (
        torch.isfinite(loss)
        and 0 <= logs["teacher_entropy"] <= math.log(10) + 1e-4
    )
    # the centre moved by (1 - m) times the mean teacher output, starting from 0
    assert dino.center.abs().sum() > 0
    c0 = dino.center.clone()
    t = torch.randn(8, 10)
    dino.update_center(t)
    assert torch.allclose(
        dino.center, 0.9 * c0 + 0.1 * t.mean(0, keepdim=True), atol=1e-6
    )
    # teacher <- lambda teacher + (1 - lambda) student
    with torch.no_grad():
        for p in dino.head.parameters():
            p.add_(0.1)
    lam = dino.current_momentum()
    before = [p.clone() for p in dino.teacher_head.parameters()]
    student = [p.clone() for p in dino.head.parameters()]
    dino.momentum_update()
    for t_old, s, t_new in zip(
        before, student, dino.teacher_head.parameters()
    ):
        assert torch.allclose(t_new, lam * t_old + (1 - lam) * s, atol=1e-6)


def test_dino_head_outputs_cosines_to_unit_prototypes():
    head = DINOHead(8, out_dim=5, hidden_dim=16, bottleneck_dim=4)
    y = head(torch.randn(3, 8))
    assert y.shape == (3, 5) and y.abs().max() <= 1 + 1e-5


@pytest.mark.parametrize(
    "make",
    [
        lambda enc: SimCLR(
            enc, projection_dim=4, augment=ViewAugment(size=16)
        ),
        lambda enc: SimCLR(
            enc,
            projection_dim=4,
            augment=ViewAugment(size=16),
            hard_negative_beta=1.0,
            tau_plus=0.1,
        ),
        lambda enc: BYOL(
            enc,
            projection_dim=4,
            augment=ViewAugment(size=16),
            augment2=ViewAugment(size=16),
        ),
        lambda enc: SwAV(
            enc,
            projection_dim=4,
            num_prototypes=3,
            multi_crop=MultiCrop(
                ViewAugment(size=16), ViewAugment(size=8), 2, 1
            ),
            freeze_prototypes_steps=1,
        ),
    ],
    ids=["simclr", "simclr-hard", "byol", "swav"],
)
def test_every_method_trains_through_fit(make):
    from vnotes import fit
    from vnotes.data import TensorLoader

    torch.manual_seed(4)
    model = make(TinyEncoder())
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-3
    )
    loader = TensorLoader(
        torch.rand(16, 3, 16, 16), batch_size=8, drop_last=True
    )
    history = fit(
        model,
        loader,
        optimizer=opt,
        epochs=1,
        step_fn=ssl_step,
        device="cpu",
        precision="fp32",
        progress=False,
        verbose=False,
    )
    assert math.isfinite(history.last("train_loss"))


def test_swav_prototypes_frozen_then_trained_and_kept_on_the_sphere():
    torch.manual_seed(5)
    swav = SwAV(
        TinyEncoder(),
        projection_dim=4,
        num_prototypes=3,
        multi_crop=MultiCrop(ViewAugment(size=16), ViewAugment(size=8), 2, 1),
        freeze_prototypes_steps=1,
    )
    x = torch.rand(6, 3, 16, 16)
    loss, _ = swav.training_step(x)
    loss.backward()
    assert swav.prototypes.weight.grad is None  # frozen in the first step
    loss, _ = swav.training_step(x)
    loss.backward()
    assert swav.prototypes.weight.grad is not None
    assert torch.allclose(
        swav.prototypes.weight.norm(dim=1), torch.ones(3), atol=1e-5
    )


# --------------------------------------------------------------------------- MAE
def _tiny_mae(**kw):
    from vnotes.transformer import ViT

    torch.manual_seed(6)
    return MAE(
        ViT(image_size=16, patch_size=4, dim=16, depth=1, num_heads=2),
        decoder_dim=8,
        decoder_depth=1,
        decoder_heads=2,
        **kw,
    )


def test_patchify_is_the_vit_patch_order_and_unpatchify_inverts_it():
    mae = _tiny_mae()
    x = torch.rand(2, 3, 16, 16)
    patches = patchify(x, 4)
    assert torch.equal(unpatchify(patches, 4), x)
    tokens, grid = mae.encoder.patch_embed(x)
    assert grid == (4, 4)
    assert torch.allclose(
        mae.encoder.patch_embed.proj(patches), tokens, atol=1e-6
    )


@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.75, 0.9])
def test_random_masking_keeps_the_asked_share_and_restores_order(ratio):
    tokens = torch.arange(2 * 16 * 3, dtype=torch.float32).view(2, 16, 3)
    visible, mask, ids_restore = random_masking(
        tokens, ratio, torch.Generator().manual_seed(7)
    )
    keep = max(1, round(16 * (1 - ratio)))
    assert visible.shape == (2, keep, 3)
    assert mask.sum(1).tolist() == [16 - keep] * 2
    for b in range(2):
        assert torch.equal(
            visible[b],
            tokens[b][mask[b] == 0][ids_restore[b][mask[b] == 0].argsort()],
        )
    with pytest.raises(ValueError, match="mask_ratio"):
        random_masking(tokens, 1.0)


def test_mae_encoder_sees_only_visible_patches_and_loss_counts_only_masked_ones():
    mae = _tiny_mae(mask_ratio=0.75)
    seen = []
    mae.encoder.blocks[0].register_forward_hook(
        lambda m, inp, out: seen.append(inp[0].shape[1])
    )
    x = torch.rand(3, 3, 16, 16)
    latent, mask, ids_restore = mae.forward_encoder(x, 0.75)
    assert seen == [1 + 4]  # [CLS] + 25% of 16 patches
    pred = mae.forward_decoder(latent, ids_restore)
    assert pred.shape == (3, 16, 48)
    loss = mae.reconstruction_loss(x, pred, mask)
    # changing the prediction on visible patches must not change the loss
    altered = pred + (1 - mask)[..., None] * 100.0
    assert (
        abs(mae.reconstruction_loss(x, altered, mask).item() - loss.item())
        < 1e-6
    )
    # the reconstruction keeps the visible pixels exactly
    masked, full, pasted = mae.reconstruct(x, 0.5)
    assert masked.shape == full.shape == pasted.shape == x.shape


def test_sincos_positions_match_the_closed_form():
    pe = sincos_position_embedding(8, (3, 3))[0]  # [1 + 9, 8]
    assert torch.equal(pe[0], torch.zeros(8))
    row, col = 2, 1
    omega = [1.0, 1.0 / 100.0]  # 1 / 10000^(i / 2), i = 0, 1
    expected = (
        [math.sin(row * w) for w in omega]
        + [math.cos(row * w) for w in omega]
        + [math.sin(col * w) for w in omega]
        + [math.cos(col * w) for w in omega]
    )
    assert torch.allclose(
        pe[1 + row * 3 + col], torch.tensor(expected), atol=1e-6
    )


# --------------------------------------------------------------------------- evaluation protocol
def test_knn_uniform_vote_matches_scikit_learn():
    from sklearn.neighbors import KNeighborsClassifier

    g = torch.Generator().manual_seed(8)
    centres = torch.randn(4, 6, generator=g) * 2
    y = torch.randint(0, 4, (200,), generator=g)
    x = centres[y] + torch.randn(200, 6, generator=g)
    xtr, ytr, xte = x[:150], y[:150], x[150:]
    raw = knn_classify(
        xtr, ytr, xte, k=7, weighting="uniform", standardize=False
    )
    ref = KNeighborsClassifier(
        n_neighbors=7, metric="cosine", algorithm="brute"
    ).fit(xtr.numpy(), ytr.numpy())
    agree = (raw.numpy() == ref.predict(xte.numpy())).mean()
    assert (
        agree >= 0.98
    )  # identical votes; only exact ties may be broken differently
    # the chapter's protocol: the same vote after scikit-learn's StandardScaler fitted on the bank
    # (it divides by the population std, we by the sample std: one common factor, which no cosine sees)
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(xtr.numpy())
    std_ref = KNeighborsClassifier(
        n_neighbors=7, metric="cosine", algorithm="brute"
    ).fit(scaler.transform(xtr.numpy()), ytr.numpy())
    ours = knn_classify(xtr, ytr, xte, k=7, weighting="uniform")
    agree = (
        ours.numpy() == std_ref.predict(scaler.transform(xte.numpy()))
    ).mean()
    assert agree >= 0.98
    # and standardising matters when one shared direction dominates the raw features
    shift = torch.zeros(6)
    shift[0] = 50.0
    shared = knn_classify(
        xtr + shift,
        ytr,
        xte + shift,
        k=7,
        weighting="uniform",
        standardize=False,
    )
    shifted = knn_classify(
        xtr + shift, ytr, xte + shift, k=7, weighting="uniform"
    )
    assert (shifted == ours).float().mean() >= 0.98
    assert (shared != ours).float().mean() > 0.2


def test_linear_probe_matches_logistic_regression_on_separable_data():
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(9)
    w = torch.randn(10, 3, generator=g)
    x = torch.randn(600, 10, generator=g)
    y = (x @ w).argmax(1)
    acc = linear_probe(x[:400], y[:400], x[400:], y[400:], epochs=60)
    ref = (
        LogisticRegression(max_iter=2000)
        .fit(x[:400].numpy(), y[:400].numpy())
        .score(x[400:].numpy(), y[400:].numpy())
    )
    assert acc >= ref - 0.04 and acc > 0.9


def test_effective_rank_closed_form_and_collapse():
    g = torch.Generator().manual_seed(10)
    a = torch.randn(64, 5, generator=g)
    q, _ = torch.linalg.qr(a - a.mean(0))  # 5 orthonormal, centred columns
    s = torch.tensor([4.0, 2.0, 1.0, 1.0, 0.5])
    x = q * s
    p = s / s.sum()
    assert effective_rank(x) == pytest.approx(
        math.exp(-(p * p.log()).sum().item()), rel=1e-6
    )
    assert effective_rank(q) == pytest.approx(
        5.0, rel=1e-6
    )  # equal singular values: full rank
    line = torch.randn(50, 1, generator=g) * torch.randn(1, 8, generator=g)
    assert effective_rank(line) == pytest.approx(
        1.0, abs=1e-3
    )  # collapse onto a line
    assert normalized_std(torch.ones(10, 4)) == pytest.approx(0.0, abs=1e-7)


def test_cls_attention_is_a_distribution_over_patches_and_object_share_is_exact():
    from vnotes.ssl import attention_on_object, cls_attention
    from vnotes.transformer import ViT

    torch.manual_seed(11)
    vit = ViT(image_size=16, patch_size=4, dim=16, depth=2, num_heads=2)
    maps = cls_attention(vit, torch.rand(3, 3, 16, 16))
    assert maps.shape == (3, 2, 4, 4)
    assert torch.allclose(maps.sum((-2, -1)), torch.ones(3, 2), atol=1e-5)
    masks = torch.zeros(1, 16, 16, dtype=torch.bool)
    masks[0, :4, :4] = True  # the object fills patch (0, 0) exactly
    on_patch = torch.zeros(1, 1, 4, 4)
    on_patch[0, 0, 0, 0] = 1.0
    uniform = torch.full((1, 1, 4, 4), 1 / 16)
    assert attention_on_object(on_patch, masks) == pytest.approx((1.0, 1 / 16))
    assert attention_on_object(uniform, masks) == pytest.approx(
        (1 / 16, 1 / 16)
    )


def test_settings_tables_cover_every_paper_setting():
    from vnotes.ssl import PAPER_SETTINGS
    from vnotes.ssl.experiments import settings_rows

    for name in ("simclr", "moco", "byol", "swav", "dino", "mae"):
        rows = settings_rows(name)
        assert [r["setting"] for r in rows] == [
            k.replace("_", " ") for k in PAPER_SETTINGS[name]
        ]
    with pytest.raises(ValueError, match="method"):
        settings_rows("supervised")


def test_chapter_ranking_reads_recorded_metrics_and_computes_gains(
    tmp_path, monkeypatch
):
    import json

    from vnotes.ssl.experiments import chapter_ranking

    monkeypatch.setenv("VNOTES_METRICS_DIR", str(tmp_path))
    (tmp_path / "default").mkdir()
    (tmp_path / "default" / "05a_contrastive.json").write_text(
        json.dumps(
            {
                "metrics": {
                    "random_init_linear_probe_accuracy": 0.4,
                    "random_init_knn_accuracy": 0.3,
                    "simclr_linear_probe_accuracy": 0.9,
                    "simclr_knn_accuracy": 0.7,
                }
            }
        )
    )
    rows = chapter_ranking(
        "default",
        current={
            "05f_mae": {
                "vit_random_init_linear_probe_accuracy": 0.25,
                "vit_random_init_knn_accuracy": 0.2,
                "mae_linear_probe_accuracy": 0.5,
                "mae_knn_accuracy": 0.4,
            },
            # 5g reads its random ViT another way: a second floor, used for its own row only
            "05g_ranking": {
                "vit_random_init_linear_probe_accuracy": 0.3,
                "vit_random_init_knn_accuracy": 0.35,
                "supervised_vit_linear_probe_accuracy": 0.6,
                "supervised_vit_knn_accuracy": 0.5,
            },
        },
    )
    floors = sorted(
        (r["encoder"], r["linear probe"], r["random floor from"])
        for r in rows
        if r["method"] == "random init"
    )
    assert floors == [
        ("ResNet", 0.4, "5a"),
        ("ViT", 0.25, "5f"),
        ("ViT", 0.3, "5g"),
    ]
    sup_vit = {r["method"]: r for r in rows}["supervised ViT (labels)"]
    assert sup_vit["probe gain over random"] == pytest.approx(0.3)
    assert sup_vit["random floor from"] == "5g"
    by_name = {(r["method"], r["encoder"]): r for r in rows}
    assert by_name[("SimCLR", "ResNet")][
        "probe gain over random"
    ] == pytest.approx(0.5)
    assert by_name[("MAE", "ViT")]["k-NN gain over random"] == pytest.approx(
        0.2
    )
    assert rows[0]["method"] == "SimCLR" and ("MoCo", "ResNet") not in by_name
    # every method's row states its budget; random floors have none
    simclr = by_name[("SimCLR", "ResNet")]
    assert simclr["training steps"] == 3 * (
        8192 // 128
    )  # 3 epochs of 64 batches at default
    assert simclr["images seen"] == 3 * 8192
    assert by_name[("MAE", "ViT")]["equal budget"].startswith("no: ")
    assert "training steps" not in by_name[("random init", "ResNet")]
    # a dry run reads the dry run's own numbers (<scale>-dry), never a real run's
    monkeypatch.setenv("VNOTES_DRY_RUN", "2")
    (tmp_path / "default-dry").mkdir()
    (tmp_path / "default" / "05a_contrastive.json").rename(
        tmp_path / "default-dry" / "05a_contrastive.json"
    )
    # beside it, what a dry run's training would cost (vnotes.costs): not a metrics file
    (tmp_path / "default-dry" / "05a_contrastive.costs.json").write_text(
        json.dumps({"runs": []})
    )
    assert {r["method"] for r in chapter_ranking("default")} == {
        "SimCLR",
        "random init",
    }


def test_mean_fill_baseline_is_zero_for_flat_images_and_matches_a_direct_count():
    from vnotes.ssl.mae import mean_fill_mse

    flat = torch.full((2, 3, 16, 16), 0.3)
    assert mean_fill_mse(flat, 0.75, 4) == pytest.approx(0.0, abs=1e-12)
    x = torch.zeros(1, 3, 8, 8)
    x[..., :4, :4] = 1.0  # one bright patch of four
    g = torch.Generator().manual_seed(0)
    from vnotes.ssl.mae import random_masking, patchify

    _, mask, _ = random_masking(
        patchify(x, 4), 0.5, torch.Generator().manual_seed(0)
    )
    value = mean_fill_mse(x, 0.5, 4, g)
    bright_hidden = bool(mask[0, 0])
    # two patches visible; if the bright one is hidden, the fill is 0 and its 16*3 pixels are off by 1
    expected = (48 / 192) if bright_hidden else (2 * 48 * 0.5**2 / 192)
    assert value == pytest.approx(expected)


def test_norm_pix_target_matches_a_hand_written_per_patch_formula():
    mae = _tiny_mae(norm_pix_loss=True)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 16, 16, generator=g)
    pred = torch.randn(2, 16, 48, generator=g)
    mask = torch.zeros(2, 16)
    mask[0, [1, 5]] = 1
    mask[1, [0, 15, 7]] = 1
    total, count = 0.0, 0
    for b in range(2):
        for i in range(4):
            for j in range(4):
                n = i * 4 + j
                if not mask[b, n]:
                    continue
                # the patch's pixels in (row, column, channel) order, normalised by their own mean and unbiased std
                patch = (
                    x[b, :, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4]
                    .permute(1, 2, 0)
                    .reshape(-1)
                    .double()
                )
                m = patch.sum() / 48
                v = ((patch - m) ** 2).sum() / 47
                target = (patch - m) / math.sqrt(v + 1e-6)
                total += ((pred[b, n].double() - target) ** 2).mean().item()
                count += 1
    assert mae.reconstruction_loss(x, pred, mask).item() == pytest.approx(
        total / count, rel=1e-5
    )


def test_patch_average_readout_is_the_mean_of_the_patch_tokens():
    from vnotes.ssl import READOUTS, encode, patch_average
    from vnotes.transformer import ViT

    torch.manual_seed(0)
    vit = ViT(image_size=16, patch_size=4, dim=16, depth=1, num_heads=2).eval()
    x = torch.rand(3, 3, 16, 16)
    tokens = vit.forward_features(x)  # [3, 1 + 16, 16]
    assert torch.allclose(
        patch_average(vit, x), tokens[:, 1:].sum(1) / 16, atol=1e-6
    )
    assert torch.equal(encode(vit, x), tokens[:, 0])
    assert READOUTS["cls"] is encode and READOUTS["mean"] is patch_average
    conv = TinyEncoder().eval()  # a pooled CNN reads out the same either way
    assert torch.equal(patch_average(conv, x), encode(conv, x))


def test_validation_split_is_disjoint_from_training_and_test_and_chooses_settings():
    from vnotes.ssl.experiments import evaluate_encoder, load_ssl_data

    data = load_ssl_data(
        n_pretrain=64, n_probe=32, n_test=48, n_val=40, config="vit"
    )
    assert data.val_images.shape == (
        40,
        3,
        32,
        32,
    ) and data.val_labels.shape == (40,)
    flat = lambda t: {tuple(row.tolist()) for row in t.flatten(1)[:, ::7]}
    train, val, test = (
        flat(data.images),
        flat(data.val_images),
        flat(data.test_images),
    )
    assert not (val & test) and not (val & train) and not (train & test)
    torch.manual_seed(0)
    encoder = TinyEncoder()
    on_val = evaluate_encoder(encoder, data, "smoke", split="val")
    on_test = evaluate_encoder(encoder, data, "smoke", split="test")
    assert (
        set(on_val)
        == set(on_test)
        == {
            "linear_probe_accuracy",
            "knn_accuracy",
            "effective_rank",
            "normalized_std",
        }
    )
    with pytest.raises(ValueError, match="split"):
        evaluate_encoder(encoder, data, "smoke", split="train")
    with pytest.raises(ValueError, match="readout"):
        evaluate_encoder(encoder, data, "smoke", readout="max")


def test_mae_init_is_xavier_uniform_or_keeps_the_encoder_weights():
    from vnotes.transformer import ViT

    torch.manual_seed(0)
    vit = ViT(image_size=16, patch_size=4, dim=16, depth=1, num_heads=2)
    before = vit.patch_embed.proj.weight.detach().clone()
    kept = MAE(
        vit, decoder_dim=8, decoder_depth=1, decoder_heads=2, init="keep"
    )
    assert torch.equal(kept.encoder.patch_embed.proj.weight, before)
    torch.manual_seed(0)
    mae = MAE(
        ViT(image_size=16, patch_size=4, dim=16, depth=1, num_heads=2),
        decoder_dim=8,
        decoder_depth=1,
        decoder_heads=2,
        init="xavier",
    )
    w = mae.encoder.patch_embed.proj.weight  # [16, 48]
    bound = math.sqrt(6 / (48 + 16))  # Glorot & Bengio (2010)
    assert w.abs().max() <= bound and w.abs().max() > 0.8 * bound
    assert torch.all(mae.encoder.patch_embed.proj.bias == 0)
    with pytest.raises(ValueError, match="init"):
        MAE(
            ViT(image_size=16, patch_size=4, dim=16, depth=1, num_heads=2),
            init="normal",
        )


def test_fine_tune_trains_a_copy_end_to_end_and_reports_its_test_accuracy():
    from vnotes.ssl.experiments import (
        ReadoutClassifier,
        chapter_settings,
        fine_tune,
        load_ssl_data,
        make_encoder,
    )

    data = load_ssl_data(
        n_pretrain=96, n_probe=64, n_test=40, n_val=32, config="vit"
    )
    torch.manual_seed(0)
    encoder = make_encoder("vit", "smoke")
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    model, history, test_accuracy = fine_tune(
        encoder, data, "smoke", readout="mean"
    )
    assert all(
        torch.equal(v, before[k]) for k, v in encoder.state_dict().items()
    )  # the source is untouched
    tuned = model.encoder.state_dict()
    assert not torch.equal(
        tuned["patch_embed.proj.weight"], before["patch_embed.proj.weight"]
    )  # every weight trains
    assert (
        len(history["val_acc"]) == chapter_settings("smoke")["finetune_epochs"]
    )
    with torch.no_grad():
        direct = (
            (model.eval()(data.test_images).argmax(1) == data.test_labels)
            .float()
            .mean()
            .item()
        )
    assert test_accuracy == pytest.approx(direct)
    with pytest.raises(ValueError, match="n_labels"):
        fine_tune(encoder, data, "smoke", n_labels=0)
    with pytest.raises(ValueError, match="readout"):
        ReadoutClassifier(encoder, "max", 6)
    with pytest.raises(TypeError, match="head"):
        ReadoutClassifier(TinyEncoder(), "cls", 6)


def test_load_or_pretrain_trains_once_then_reads_the_cache(
    tmp_path, monkeypatch
):
    from vnotes.ssl.experiments import (
        load_or_pretrain,
        load_ssl_data,
        pretrained_cache_key,
        store_pretrained,
    )

    monkeypatch.setenv("VNOTES_CACHE_DIR", str(tmp_path))
    data = load_ssl_data(
        n_pretrain=128, n_probe=32, n_test=32, n_val=32, config="vit"
    )
    first = load_or_pretrain("mae", data, "smoke")
    assert not first.loaded_from_cache
    path = tmp_path / f"{pretrained_cache_key('mae', 'smoke')}.pt"
    assert path.is_file()
    second = load_or_pretrain("mae", data, "smoke")
    assert second.loaded_from_cache
    assert all(
        torch.equal(v, second.state_dict()[k])
        for k, v in first.state_dict().items()
    )
    # a page that trained the model itself stores it under the same key, and later pages read that
    with torch.no_grad():
        first.encoder.head.weight.add_(1.0)
    store_pretrained("mae", first, "smoke")
    third = load_or_pretrain("mae", data, "smoke")
    assert torch.equal(third.encoder.head.weight, first.encoder.head.weight)
    # the key follows the scale and the seed
    assert (
        len(
            {
                pretrained_cache_key("mae", "smoke"),
                pretrained_cache_key("mae", "default"),
                pretrained_cache_key("mae", "smoke", seed=1),
            }
        )
        == 3
    )
    with pytest.raises(ValueError, match="allowed"):
        pretrained_cache_key("supervised", "smoke")


def test_pretrain_options_are_checked_and_monitors_run_every_epoch():
    from vnotes.ssl import experiments as ex

    with pytest.raises(ValueError, match="encoder_norm='group_ws'"):
        ex.build_method("mae", "smoke", total_steps=1, encoder_norm="group_ws")
    with pytest.raises(ValueError, match="encoder_norm='layer'"):
        ex.build_method("byol", "smoke", total_steps=1, encoder_norm="layer")
    data = ex.load_ssl_data(64, 16, 16, n_val=16)
    with pytest.raises(ValueError, match="n_images=1"):
        ex.pretrain("byol", data, "smoke", n_images=1)
    seen = []
    _, history = ex.pretrain(
        "simclr",
        data,
        "smoke",
        epochs=2,
        n_images=48,
        batch_size=16,
        monitors={
            "calls": lambda model: float(len(seen.append(model) or seen))
        },
    )
    assert history.epoch["calls"] == [
        1.0,
        2.0,
        3.0,
    ]  # before training, then after each epoch
    assert all(m is seen[0] for m in seen)


def test_pretrain_budget_counts_the_steps_pretraining_runs():
    """The budget the ranking states for a method equals the steps its training really runs."""
    from vnotes.ssl import experiments as ex

    data = ex.load_ssl_data(200, 16, 16, n_val=16)
    for name in ("simclr", "byol"):
        _, history = ex.pretrain(name, data, "smoke")
        budget = ex.pretrain_budget(name, "smoke", n_images=200)
        assert len(history.step["loss"]) == budget["steps"] > 0, name
        assert budget["images_seen"] == budget["steps"] * budget["batch_size"]
    _, history = ex.train_supervised(data, "smoke")
    assert (
        len(history.step["loss"])
        == ex.pretrain_budget("supervised", "smoke", n_images=200)["steps"]
    )
    with pytest.raises(ValueError, match="unknown"):
        ex.pretrain_budget("simsiam", "default")


def test_extract_features_reads_only_a_dry_runs_batches_and_keeps_the_shape(
    monkeypatch,
):
    from vnotes.ssl.evaluation import extract_features

    calls = []

    class Counting(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(3 * 4 * 4, 5)

        def forward(self, x):
            calls.append(len(x))
            return self.proj(x.flatten(1))

    torch.manual_seed(0)
    encoder, images = Counting(), torch.rand(23, 3, 4, 4)
    real = extract_features(
        encoder, images, batch_size=4, features=lambda e, x: e(x)
    )
    assert real.shape == (23, 5) and calls == [4, 4, 4, 4, 4, 3]
    calls.clear()
    monkeypatch.setenv("VNOTES_DRY_RUN", "2")
    dry = extract_features(
        encoder, images, batch_size=4, features=lambda e, x: e(x)
    )
    assert calls == [4, 4] and dry.shape == real.shape
    assert torch.allclose(dry[:8], real[:8]) and torch.equal(
        dry[8:16], dry[:8]
    )
