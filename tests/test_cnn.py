"""Chapter 3 (vnotes.cnn): the convolution, every family's builders, CAM, the zoo helpers.

References: F.conv2d, torchvision.ops.deform_conv2d, torchvision's builders (parameter counts and, with the
same weights copied in, outputs), closed-form parameter counts, and the papers' published counts.
"""

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from vnotes.cnn import cam, conv, count_parameters, zoo
from vnotes.cnn import darknet, deformable, hrnet, lcnet, nin
from vnotes.cnn import mobilenet as M, shufflenet as S, squeezenet as SQ
import importlib

E = importlib.import_module(
    "vnotes.cnn.efficientnet"
)  # (the package exports no builder of these names)
G = importlib.import_module("vnotes.cnn.ghostnet")
GN = importlib.import_module("vnotes.cnn.googlenet")
from vnotes.cnn.profile import count_macs  # noqa: E402 (after the modules imported by name above)

torch.manual_seed(0)


# ------------------------------------------------------------------------------------------ the convolution
@pytest.mark.parametrize(
    "stride,padding,dilation,groups",
    [
        (1, 0, 1, 1),
        (2, 1, 1, 1),
        ((2, 1), (1, 2), (1, 2), 3),
        (1, 1, 2, 6),
        (3, 2, 1, 2),
    ],
)
def test_conv2d_unfold_equals_torch(stride, padding, dilation, groups):
    x = torch.randn(2, 6, 13, 11, dtype=torch.float64)
    w = torch.randn(12, 6 // groups, 3, 5, dtype=torch.float64)
    b = torch.randn(12, dtype=torch.float64)
    ours = conv.conv2d_unfold(x, w, b, stride, padding, dilation, groups)
    ref = F.conv2d(x, w, b, stride, padding, dilation, groups)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


def test_conv2d_loops_equals_torch():
    x, w, b = torch.randn(2, 3, 9, 9), torch.randn(4, 3, 3, 3), torch.randn(4)
    torch.testing.assert_close(
        conv.conv2d_loops(x, w, b, padding=1),
        F.conv2d(x, w, b, padding=1),
        rtol=1e-5,
        atol=1e-5,
    )


def test_conv2d_unfold_rejects_bad_groups():
    with pytest.raises(ValueError, match="groups=4"):
        conv.conv2d_unfold(
            torch.randn(1, 6, 5, 5), torch.randn(6, 2, 3, 3), groups=4
        )


def test_conv_vs_dense_parameter_counts_match_real_layers():
    counts = conv.conv_vs_dense_parameters(8, 8, 3, 4, 3)
    assert counts["dense"] == count_parameters(nn.Linear(3 * 8 * 8, 4 * 8 * 8))
    assert counts["convolution"] == count_parameters(
        nn.Conv2d(3, 4, 3, padding=1)
    )
    assert counts["locally_connected"] == 64 * counts["convolution"]


def test_circular_convolution_is_exactly_shift_equivariant():
    layer = nn.Conv2d(3, 5, 3, padding=1, padding_mode="circular", bias=False)
    x = torch.randn(2, 3, 16, 16)
    assert conv.shift_equivariance_error(layer, x, (3, -5)) < 1e-5
    pooled = nn.Sequential(
        layer, nn.MaxPool2d(2)
    )  # striding breaks equivariance for odd shifts
    assert conv.shift_equivariance_error(pooled, x, (1, 0)) > 1e-2


def test_receptive_field_formula_matches_gradient():
    spec = [(3, 1, 1), (3, 2, 1), (3, 1, 2), (5, 2, 1)]
    layers = [
        nn.Conv2d(1, 1, k, s, dilation=d, padding=d * (k - 1) // 2, bias=False)
        for k, s, d in spec
    ]
    for layer in layers:
        nn.init.constant_(layer.weight, 1.0)
    grad = conv.empirical_receptive_field(
        nn.Sequential(*layers), image_size=96
    )
    rows = (grad.sum(1) > 0).nonzero()
    measured = int(rows.max() - rows.min() + 1)
    # r = 1 + 2*1 + 2*1 (j=1) ... : 3, then 5 (jump 2), 5 + 2*2*2 = 13, 13 + 4*2 = 21
    assert measured == conv.receptive_field(spec)[-1]["receptive_field"] == 21


def test_receptive_field_rejects_bad_layers():
    with pytest.raises(ValueError, match="stride=0"):
        conv.receptive_field([(3, 0, 1)])


def test_sample_photo_shape_and_range():
    img = conv.sample_photo("flower.jpg", size=64)
    assert (
        img.shape[0] == 3
        and min(img.shape[1:]) == 64
        and 0 <= img.min()
        and img.max() <= 1
    )
    with pytest.raises(ValueError, match="cat.jpg"):
        conv.sample_photo("cat.jpg")


# ------------------------------------------------------------------------------------------ helpers
def copy_by_order(ours: nn.Module, ref: nn.Module) -> None:
    """Copy ref's state into ours tensor by tensor (same registration order and shapes), after randomising ref."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in ref.state_dict().items():
            if not t.is_floating_point():
                continue
            # random weights *and* BN statistics, so every layer matters; weights scaled by 1/sqrt(fan_in)
            if t.ndim >= 2:
                t.copy_(
                    torch.randn(t.shape, generator=g) / math.sqrt(t[0].numel())
                )
            elif "running_var" in name or name.endswith("weight"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
    a, b = ours.state_dict(), ref.state_dict()
    assert [v.shape for v in a.values()] == [v.shape for v in b.values()]
    ours.load_state_dict(dict(zip(a.keys(), b.values())))


def assert_same_outputs(
    ours: nn.Module, ref: nn.Module, size: int = 96
) -> None:
    copy_by_order(ours, ref)
    ours.eval(), ref.eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        y_ref, y = ref(x), ours(x)
    assert y_ref.std() > 1e-3  # a real signal, not zeros
    torch.testing.assert_close(
        y, y_ref, rtol=1e-4, atol=1e-4 * float(y_ref.abs().max())
    )


# -------------------------------------------------------------------- builders vs torchvision (counts + outputs)
TORCHVISION_PAIRS = [
    (SQ.squeezenet1_0, "squeezenet1_0", {}),
    (SQ.squeezenet1_1, "squeezenet1_1", {}),
    (
        GN.googlenet_torchvision,
        "googlenet",
        {"aux_logits": False, "init_weights": False},
    ),
    (M.mobilenet_v2, "mobilenet_v2", {}),
    (M.mobilenet_v3_large, "mobilenet_v3_large", {}),
    (M.mobilenet_v3_small, "mobilenet_v3_small", {}),
    (S.shufflenet_v2, "shufflenet_v2_x1_0", {}),
    (E.efficientnet_b0, "efficientnet_b0", {}),
]


@pytest.mark.parametrize(
    "ours,ref,kw", TORCHVISION_PAIRS, ids=[p[1] for p in TORCHVISION_PAIRS]
)
def test_counts_and_outputs_equal_torchvision(ours, ref, kw):
    ref_model = getattr(torchvision.models, ref)(weights=None, **kw)
    extra = (
        {"bn_eps": 1e-5} if ref == "efficientnet_b0" else {}
    )  # torchvision's B0 keeps PyTorch's eps
    our_model = ours(**extra)
    assert count_parameters(our_model) == count_parameters(ref_model)
    assert_same_outputs(our_model, ref_model)


@pytest.mark.parametrize(
    "width,ref",
    [
        ("0.5x", "shufflenet_v2_x0_5"),
        ("1.5x", "shufflenet_v2_x1_5"),
        ("2.0x", "shufflenet_v2_x2_0"),
    ],
)
def test_shufflenet_v2_widths_match_torchvision(width, ref):
    assert count_parameters(S.shufflenet_v2(width=width)) == count_parameters(
        getattr(torchvision.models, ref)()
    )


@pytest.mark.parametrize("variant", ["b1", "b2", "b3", "b4", "b5", "b6", "b7"])
def test_efficientnet_scaled_counts_match_torchvision(variant):
    ours = E.efficientnet(variant)
    assert count_parameters(ours) == count_parameters(
        getattr(torchvision.models, f"efficientnet_{variant}")()
    )
    # and the printed (2-significant-digit) figure of Table 2 within its rounding
    assert abs(count_parameters(ours) / E.PUBLISHED_PARAMS[variant] - 1) < 0.05


# ------------------------------------------------------------------------------- builders vs the papers
def sig_round(x: float, digits: int = 2) -> float:
    return round(x, digits - 1 - int(math.floor(math.log10(abs(x)))))


@pytest.mark.parametrize(
    "builder,published",
    [
        (M.mobilenet_v1, 4.2e6),
        (G.ghostnet, 5.2e6),
        (darknet.cspdarknet53, 27.6e6),
        (hrnet.hrnet_w18, 21.3e6),
        (hrnet.hrnet_w32, 41.2e6),
    ],
    ids=["mobilenet_v1", "ghostnet", "cspdarknet53", "hrnet_w18", "hrnet_w32"],
)
def test_published_parameter_counts_within_one_percent(builder, published):
    assert abs(count_parameters(builder()) / published - 1) < 0.01


@pytest.mark.parametrize("scale", sorted(lcnet.PUBLISHED))
def test_pplcnet_counts_round_to_the_published_figures(scale):
    assert (
        sig_round(count_parameters(lcnet.pplcnet(scale=scale)), 2)
        == lcnet.PUBLISHED[scale][0]
    )


@pytest.mark.parametrize(
    "builder,size,published,tol",
    [
        (M.mobilenet_v1, 224, 569e6, 0.01),
        (M.mobilenet_v2, 224, 300e6, 0.01),
        (M.mobilenet_v3_large, 224, 219e6, 0.02),
        (M.mobilenet_v3_small, 224, 56e6, 0.01),
        (S.shufflenet_v2, 224, 146e6, 0.01),
        (G.ghostnet, 224, 141e6, 0.01),
        (E.efficientnet_b0, 224, 0.39e9, 0.02),
        (lambda: S.shufflenet_v1(groups=1), 224, 143e6, 0.01),
        (darknet.darknet53, 256, 18.7e9 / 2, 0.01),
    ],
    ids=[
        "mbv1",
        "mbv2",
        "mbv3L",
        "mbv3S",
        "shufflev2",
        "ghost",
        "effb0",
        "shufflev1_g1",
        "darknet53",
    ],
)
def test_counted_multiply_adds_match_the_papers(builder, size, published, tol):
    assert abs(count_macs(builder(), (3, size, size)) / published - 1) < tol


def test_squeezenet_matches_its_table():
    assert (
        count_parameters(SQ.squeezenet1_0())
        == SQ.PUBLISHED_PARAMS["squeezenet1_0"]
    )


def inception_params(c_in, c1, r3, c3, r5, c5, pp, k5=5):
    """Closed form: weights + biases of the four branches of Szegedy et al.'s Fig. 2b."""
    conv = lambda i, o, k: i * o * k * k + o  # noqa: E731
    return (
        conv(c_in, c1, 1)
        + conv(c_in, r3, 1)
        + conv(r3, c3, 3)
        + conv(c_in, r5, 1)
        + conv(r5, c5, k5)
        + conv(c_in, pp, 1)
    )


def test_googlenet_paper_layout_counts_follow_table1_widths():
    model = GN.googlenet()
    c_in, expected = 192, 0
    for item in GN.INCEPTION_CONFIG:
        if item != "M":
            expected += inception_params(c_in, *item[1])
            c_in = sum(item[1][i] for i in (0, 2, 4, 5))
    assert count_parameters(model.inception) == expected
    # Table 1's own "params" column adds up to 6.8 M; its widths give 7.0 M (the column is inconsistent)
    assert (
        0.02
        < count_parameters(model) / GN.PUBLISHED_PARAMS["googlenet"] - 1
        < 0.04
    )


def test_darknet53_has_53_layers():
    convs = [
        m for m in darknet.darknet53().modules() if isinstance(m, nn.Conv2d)
    ]
    assert len(convs) + 1 == 53  # 52 convolutions + the connected layer


# --------------------------------------------------------------------------------------- the blocks
def test_depthwise_separable_cost_ratio():
    c_in, c_out, k = 32, 64, 3
    dense = nn.Conv2d(c_in, c_out, k, padding=1, bias=False)
    sep = M.DepthwiseSeparable(c_in, c_out)
    convs = sum(
        m.weight.numel() for m in sep.modules() if isinstance(m, nn.Conv2d)
    )
    # (C_in k^2 + C_in C_out) / (C_in C_out k^2) = 1/C_out + 1/k^2  (Howard et al., 2017, Eq. 5)
    assert convs / dense.weight.numel() == pytest.approx(1 / c_out + 1 / k**2)


def test_inverted_residual_uses_shortcut_only_when_shapes_match():
    assert M.InvertedResidual(16, 96, 16, stride=1).use_residual
    assert not M.InvertedResidual(16, 96, 24, stride=1).use_residual
    assert not M.InvertedResidual(16, 96, 16, stride=2).use_residual
    block = M.InvertedResidual(16, 96, 16).eval()
    x = torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(block(x), x + block.block(x))


def test_channel_shuffle_interleaves_groups_and_is_invertible():
    x = torch.arange(12.0).view(1, 12, 1, 1)
    y = S.channel_shuffle(x, 3)
    assert y.flatten().tolist() == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
    torch.testing.assert_close(
        S.channel_shuffle(y, 4), x
    )  # shuffling back with C/g groups
    with pytest.raises(ValueError, match="groups=5"):
        S.channel_shuffle(x, 5)


def test_ghost_module_makes_half_its_maps_cheaply():
    module = G.GhostModule(32, 64)
    plain = nn.Conv2d(32, 64, 1, bias=False)
    weights = sum(
        m.weight.numel() for m in module.modules() if isinstance(m, nn.Conv2d)
    )
    # 32 primary 1x1 filters + 32 cheap 3x3 depthwise ones vs 64 plain 1x1 filters: about 1/s of the cost, s=2
    assert (
        weights == 32 * 32 + 32 * 9 and weights < 0.65 * plain.weight.numel()
    )
    assert module(torch.randn(2, 32, 8, 8)).shape == (2, 64, 8, 8)


def test_fire_module_shapes_and_validation():
    fire = SQ.Fire(96, 16, 64, 64)
    assert fire(torch.randn(1, 96, 10, 10)).shape == (1, 128, 10, 10)
    with pytest.raises(ValueError, match="squeeze=200"):
        SQ.Fire(96, 200, 64, 64)


def test_cspstage_halves_the_channels_through_its_blocks():
    stage = darknet.CSPStage(64, 128, n=2)
    assert (
        stage.blocks[0].conv1.out_channels == 64
    )  # the partial path works on C/2
    assert stage(torch.randn(1, 64, 16, 16)).shape == (1, 128, 8, 8)


def test_hrnet_fuse_exchanges_between_all_resolutions():
    fuse = hrnet.Fuse([8, 16, 32])
    xs = [
        torch.randn(1, 8, 16, 16),
        torch.randn(1, 16, 8, 8),
        torch.randn(1, 32, 4, 4),
    ]
    out = fuse(xs)
    assert [o.shape for o in out] == [x.shape for x in xs]
    # the finest output depends on the coarsest input: information was exchanged
    xs2 = [xs[0], xs[1], torch.randn(1, 32, 4, 4)]
    assert not torch.allclose(fuse(xs2)[0], out[0])


def test_compound_scaling_doubles_flops_per_phi():
    c = E.compound_scaling(1.0)
    assert c["flops_factor"] == pytest.approx(1.2 * 1.1**2 * 1.15**2)
    assert 1.9 < c["flops_factor"] < 2.0
    small, big = E.efficientnet_mini(phi=0), E.efficientnet_mini(phi=2)
    assert count_parameters(big) > count_parameters(small)


def test_nin_logits_are_means_of_class_maps():
    model = nin.nin_mini(num_classes=5).eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x), model.class_maps(x).mean((2, 3)))


# -------------------------------------------------------------------------------------- deformable
def test_deformable_reference_equals_torchvision():
    from torchvision.ops import deform_conv2d

    x, w, b = torch.randn(2, 3, 9, 8), torch.randn(4, 3, 3, 3), torch.randn(4)
    off, mask = torch.randn(2, 18, 5, 4) * 2, torch.rand(2, 9, 5, 4)
    for m in (None, mask):
        ref = deform_conv2d(x, off, w, b, stride=2, padding=1, mask=m)
        torch.testing.assert_close(
            deformable.deform_conv2d_reference(x, off, w, b, 2, 1, mask=m),
            ref,
            rtol=1e-4,
            atol=1e-4,
        )


def test_deformable_layer_starts_as_plain_convolution():
    layer = deformable.DeformConv2d(3, 4, 3, 1, 1)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(
        layer(x), F.conv2d(x, layer.weight, padding=1), rtol=1e-5, atol=1e-5
    )
    pts = deformable.sampling_points(layer, layer.last_offset, 2, 3)
    assert pts.shape == (9, 2) and pts[4].tolist() == [
        2.0,
        3.0,
    ]  # the centre tap at the output position


# ----------------------------------------------------------------------------------- contract, CAM, zoo
@pytest.mark.parametrize(
    "spec", zoo.MINIATURES, ids=[m.family for m in zoo.MINIATURES]
)
def test_every_miniature_follows_the_contract(spec):
    model = spec.builder(num_classes=6, in_channels=3, **spec.kwargs)
    x = torch.randn(2, 3, 32, 32)
    fmap = model.forward_features(x, pool=False)
    assert fmap.ndim == 4 and fmap.shape[:2] == (2, model.num_features)
    assert model.forward_features(x).shape == (2, model.num_features)
    assert model(x).shape == (2, 6)
    assert count_parameters(model) < 400_000


def test_grad_cam_equals_cam_for_gap_linear_heads():
    from vnotes.cnn import resnet_mini

    model = resnet_mini(num_classes=4).eval()
    x = torch.randn(3, 3, 32, 32)
    gc, logits = cam.grad_cam(model, x)
    with torch.no_grad():
        plain = torch.relu(
            cam.class_activation_map(
                model.features_map(x), model.fc, logits.argmax(1)
            )
        )
    plain = plain / plain.flatten(1).amax(1)[:, None, None]
    torch.testing.assert_close(gc, plain, rtol=1e-4, atol=1e-5)
    assert gc.shape == (3, 8, 8) and float(gc.max()) == pytest.approx(1.0)


def test_pareto_front():
    costs, scores = [1, 2, 3, 4, 2], [0.5, 0.7, 0.6, 0.9, 0.4]
    assert zoo.pareto_front(costs, scores) == [0, 1, 3]


def test_train_miniature_learns_a_trivial_task():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(640, 3, 32, 32, generator=g) * 0.1
    y = torch.randint(0, 2, (640,), generator=g)
    x[y == 1, 0] += 0.8  # class 1: a strong red channel
    out = zoo.train_miniature(
        zoo.miniature("mobilenet_v1"),
        (x[:512], y[:512]),
        (x[512:576], y[512:576]),
        (x[576:], y[576:]),
        epochs=4,
        batch_size=32,
        precision="fp32",
        latency_repeats=1,
    )
    assert out["test_accuracy"] >= 0.95 and out["params"] == count_parameters(
        out["model"]
    )
    assert out["macs"] > 0 and out["latency_ms"] > 0
    with pytest.raises(ValueError, match="family='vgg'"):
        zoo.miniature("vgg")


@pytest.mark.parametrize(
    "spec",
    [s for s in zoo.IMAGENET_MODELS if s.torchvision],
    ids=lambda s: s.name,
)
def test_every_zoo_entry_with_a_torchvision_twin_has_its_count(spec):
    assert count_parameters(spec.builder()) == count_parameters(
        spec.torchvision_twin()
    )


def test_count_macs_closed_form():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.Conv2d(8, 8, 3, padding=1, groups=4),
        nn.Flatten(),
        nn.Linear(8 * 8 * 8, 10),
    )
    # conv1: 8x8 outputs x 8 channels x (3*3*3); grouped conv2: 8x8 x 8 x (2*3*3); linear: 512 x 10
    assert (
        count_macs(model, (3, 16, 16)) == 64 * 8 * 27 + 64 * 8 * 18 + 512 * 10
    )


def test_measure_latency_validates_and_measures():
    from vnotes.cnn.profile import measure_latency

    model = nn.Conv2d(3, 4, 3)
    assert measure_latency(model, (3, 16, 16), repeats=2, clock="wall") > 0
    with pytest.raises(ValueError, match="clock='gpu'"):
        measure_latency(model, (3, 16, 16), clock="gpu")


def test_bottleneck_comparison_counts():
    from vnotes.cnn.resnet import bottleneck_comparison

    counts = [r["conv weights"] for r in bottleneck_comparison(64)]
    # 256*64 + 9*64*64 + 64*256; three 3x3 at 64; ResNet-34 basic at 64; basic at 256
    assert counts == [
        2 * 256 * 64 + 9 * 64 * 64,
        3 * 9 * 64 * 64,
        2 * 9 * 64 * 64,
        2 * 9 * 256 * 256,
    ]
    assert bottleneck_comparison(64)[1]["bottleneck saves"] == pytest.approx(
        1 - 17 / 27
    )


def test_latency_is_ranked_only_beyond_the_ratio():
    from vnotes.cnn.zoo import accuracy_split, compare_latency, latency_phrase

    a = {"label": "A", "latency_ms": 1.0, "test_accuracy": 0.99}
    b = {"label": "B", "latency_ms": 1.6, "test_accuracy": 0.90}
    c = {"label": "C", "latency_ms": 1.4, "test_accuracy": 0.96}
    assert compare_latency(a, b) == ("faster", 0.625)
    assert compare_latency(b, a)[0] == "slower"
    assert compare_latency(a, c)[0] == "within"
    assert compare_latency(a, {**b, "latency_ms": 1.5})[0] == "faster"
    assert (
        latency_phrase(a, b) == "A (1.00 ms) is 1.6× faster than B (1.60 ms)"
    )
    assert "too close to rank" in latency_phrase(c, a)
    good, rest = accuracy_split([b, a, c])
    assert [r["label"] for r in good] == ["A", "C"]
    assert [r["label"] for r in rest] == ["B"]
    with pytest.raises(ValueError, match="ratio"):
        compare_latency(a, b, ratio=0.5)


def test_shortfall_reasons_speak_only_of_the_families_that_fell_short():
    from vnotes.cnn import zoo

    lagging = [
        {
            "family": "shufflenet_v1",
            "label": "ShuffleNet v1",
            "test_accuracy": 0.68,
            "params": 6543,
        },
        {"family": "nin", "label": "NiN", "test_accuracy": 0.9, "params": 1},
    ]
    lines = zoo.shortfall_reasons(lagging)
    assert (
        lines[0].startswith("* ShuffleNet v1 (0.680): ")
        and "6,543 parameters" in lines[0]
    )
    assert (
        lines[1]
        == "* NiN (0.900): no single feature of its design stands out."
    )
    assert zoo.shortfall_reasons([]) == []
    known = {m.family for m in zoo.MINIATURES}
    assert set(zoo.SLOW_START_REASONS) <= known


def test_compare_miniatures_trains_records_and_writes_the_pages_views():
    train, val, test, names = zoo.toy_world_splits(64, 32, 32)
    recorded = {}
    comparison = zoo.compare_miniatures(
        ["nin", "mobilenet_v1"],
        train,
        val,
        test,
        names,
        epochs=1,
        latency_repeats=1,
        record=recorded.__setitem__,
    )
    assert comparison.labels == ["NiN", "MobileNet v1"]
    assert list(recorded) == [
        f"{f}_{k}"
        for f in ("nin", "mobilenet_v1")
        for k in ("test_accuracy", "params", "latency_ms")
    ]
    assert recorded["nin_params"] == count_parameters(
        comparison.by_label["NiN"]["model"]
    )
    assert comparison.best is max(
        comparison.results,
        key=lambda r: (r["history"].last("val_acc"), -r["latency_ms"]),
    )
    assert [r["latency_ms"] for r in comparison.by_latency] == sorted(
        r["latency_ms"] for r in comparison.results
    )
    lines = comparison.accuracy_and_speed_lines()
    assert len(lines) == 2 and lines[0].startswith(
        "* With the same short budget, "
    )
    assert lines[0].count(" of 2 families ") == 1
    with pytest.raises(ValueError, match="show_cam_on_object"):
        comparison.concentration_lines()
    comparison.show_cam_on_object(n=16)
    assert [row["family"] for row in comparison.cam_rows] == comparison.labels
    assert 0 < recorded["object_area_share"] < 1
    assert recorded["best_model_cam_concentration"] == pytest.approx(
        recorded["best_model_cam_on_object"] / recorded["object_area_share"]
    )
    assert comparison.concentration_lines()[0].startswith(
        "* The object covers "
    )
    for show in (
        comparison.show_results,
        comparison.show_validation_curves,
        comparison.show_pareto,
        comparison.show_shortfall,
        comparison.show_grad_cam,
        comparison.show_cam_grid,
    ):
        show()
    assert recorded["pareto_front_size_params"] >= 1
    with pytest.raises(ValueError, match="family='VGG'"):
        comparison.show_cam("VGG")


@pytest.mark.parametrize(
    "families, message",
    [
        (["nin", "vgg"], "family='vgg' is unknown"),
        ([], "families=\\[\\] must be a non-empty list"),
        ("nin", "families='nin' must be a non-empty list"),
        (["nin", "nin"], "names \\['nin'\\] more than once"),
    ],
)
def test_compare_miniatures_rejects_bad_families(families, message):
    data = (torch.zeros(4, 3, 32, 32), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match=message):
        zoo.compare_miniatures(
            families, data, data, data, ["a", "b"], epochs=1
        )
    with pytest.raises(ValueError, match=message):
        zoo.miniature_sizes(families, num_classes=2)


def test_compare_miniatures_rejects_bad_sizes():
    data = (torch.zeros(4, 3, 32, 32), torch.tensor([0, 1, 0, 2]))
    with pytest.raises(ValueError, match="epochs=0"):
        zoo.compare_miniatures(
            ["nin"], data, data, data, list("abc"), epochs=0
        )
    with pytest.raises(ValueError, match="2 class_names for labels up to 2"):
        zoo.compare_miniatures(["nin"], data, data, data, list("ab"), epochs=1)
    with pytest.raises(ValueError, match="do not match"):
        zoo.cam_on_object(
            nn.Identity(), torch.zeros(2, 3, 8, 8), torch.zeros(2, 4, 4)
        )
