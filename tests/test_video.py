"""Video models: the I3D inflation identity, inflated convolutions against Conv2d, optical flow on a known shift."""

import pytest
import torch
import torch.nn.functional as F

from vnotes.video import (
    I3D,
    FrameNet,
    OneStream,
    SingleFrame,
    TwoStream,
    boring_video,
    frame_differences,
    inflate_batchnorm,
    inflate_conv,
    lucas_kanade_flow,
    motion_input,
    two_stream_step,
)


def _trained_like(net: torch.nn.Module) -> torch.nn.Module:
    """Give BatchNorm non-trivial statistics and affine parameters, as after training."""
    torch.manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net


@pytest.mark.parametrize("frames", [1, 4, 8, 7])
def test_inflated_network_on_boring_video_equals_2d_network(frames):
    torch.manual_seed(0)
    net = _trained_like(FrameNet(num_classes=5, widths=(8, 16, 32))).eval()
    i3d = I3D.from_2d(net).eval()
    images = torch.rand(6, 3, 32, 32)
    out3d = i3d(boring_video(images, frames))
    out2d = net(images)
    assert torch.allclose(out3d, out2d, atol=1e-5), (out3d - out2d).abs().max()


def test_inflation_identity_holds_in_training_mode_too():
    # batch statistics over (N, T, H, W) of identical frames equal those over (N, H, W)
    torch.manual_seed(0)
    net = FrameNet(num_classes=3, widths=(8, 16)).train()
    i3d = I3D.from_2d(net).train()
    images = torch.rand(5, 3, 16, 16)
    assert torch.allclose(i3d(boring_video(images, 4)), net(images), atol=1e-5)


def test_inflated_network_is_not_blind_to_motion():
    # the identity is not trivial: on a clip whose frames differ, the output changes
    torch.manual_seed(0)
    net = FrameNet(num_classes=3, widths=(8, 16)).eval()
    i3d = I3D.from_2d(net).eval()
    video = boring_video(torch.rand(2, 3, 16, 16), 4)
    moved = video.clone()
    moved[:, 2:] = torch.roll(moved[:, 2:], shifts=3, dims=-1)
    assert not torch.allclose(i3d(video), i3d(moved), atol=1e-4)


def test_inflate_conv_against_conv2d_per_frame():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=True)
    conv3d = inflate_conv(conv, 3)
    # the kernel summed over time is the 2-D kernel
    assert torch.allclose(conv3d.weight.sum(2), conv.weight, atol=1e-6)
    frame = torch.rand(2, 3, 9, 9)
    clip = frame[:, :, None].expand(
        -1, -1, 3, -1, -1
    )  # [B, C, T=3, H, W] constant in time
    out = conv3d(clip)  # valid in time -> one output frame
    assert out.shape == (2, 4, 1, 9, 9)
    assert torch.allclose(
        out[:, :, 0],
        F.conv2d(frame, conv.weight, conv.bias, padding=1),
        atol=1e-5,
    )


def test_inflate_batchnorm_keeps_statistics():
    bn = _trained_like(torch.nn.Sequential(torch.nn.BatchNorm2d(4)))[0].eval()
    bn3 = inflate_batchnorm(bn).eval()
    x = torch.randn(2, 4, 5, 5)
    assert torch.allclose(bn3(x[:, :, None]).squeeze(2), bn(x), atol=1e-6)


def test_random_i3d_differs_from_inflated():
    torch.manual_seed(0)
    net = FrameNet(num_classes=3, widths=(8, 16))
    scratch = I3D(num_classes=3, widths=(8, 16))
    images = torch.rand(2, 3, 16, 16)
    assert not torch.allclose(
        scratch.eval()(boring_video(images, 4)), net.eval()(images), atol=1e-3
    )


def test_lucas_kanade_recovers_a_known_shift():
    # a smooth blob moved by (0.6, -0.4) pixels per frame
    H = W = 32
    ys, xs = torch.meshgrid(
        torch.arange(H, dtype=torch.float32),
        torch.arange(W, dtype=torch.float32),
        indexing="ij",
    )

    def blob(cx, cy):
        return torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * 3.0**2))

    frames = torch.stack(
        [blob(15 + 0.6 * t, 16 - 0.4 * t) for t in range(3)]
    )  # [T, H, W]
    video = frames[None, :, None].expand(1, 3, 3, H, W)  # gray as RGB
    flow = lucas_kanade_flow(video, window=7)
    assert flow.shape == (1, 2, 2, H, W)
    centre = flow[0, :, :, 12:20, 12:20].mean((-1, -2))  # [T-1, 2]
    assert torch.allclose(centre[:, 0], torch.full((2,), 0.6), atol=0.1)
    assert torch.allclose(centre[:, 1], torch.full((2,), -0.4), atol=0.1)


def test_frame_differences_and_motion_input_shapes():
    video = torch.rand(2, 5, 3, 8, 8)
    d = frame_differences(video)
    assert torch.equal(d[:, 1], video[:, 2] - video[:, 1])
    assert motion_input(video, "flow").shape == (2, 8, 8, 8)
    assert motion_input(video, "difference").shape == (2, 12, 8, 8)
    with pytest.raises(ValueError, match="kind='optical'"):
        motion_input(video, "optical")


def test_two_stream_fusion_is_the_average_of_probabilities():
    torch.manual_seed(0)
    model = TwoStream(num_classes=4, frames=4, widths=(8, 16)).eval()
    video = torch.rand(3, 4, 3, 16, 16)
    a, m = model.stream_logits(video)
    fused = model(video).exp()
    assert torch.allclose(
        fused, (a.softmax(-1) + m.softmax(-1)) / 2, atol=1e-6
    )
    loss, extra = two_stream_step(
        model.train(), (video, torch.tensor([0, 1, 2]))
    )
    assert torch.isfinite(loss) and set(extra) == {
        "appearance_loss",
        "motion_loss",
    }


def test_one_stream_scores_each_stream_on_the_batches_the_fused_model_sees(
    monkeypatch,
):
    from vnotes import correct_flags
    from vnotes.data import TensorLoader

    torch.manual_seed(0)
    model = TwoStream(num_classes=4, frames=4, widths=(8, 16)).eval()
    video, labels = torch.rand(10, 4, 3, 16, 16), torch.randint(0, 4, (10,))
    a, m = model.stream_logits(video)
    assert torch.equal(OneStream(model, "spatial")(video), a)
    assert torch.equal(OneStream(model, "temporal")(video), m)
    loader = TensorLoader(video, labels, batch_size=4)
    flags = correct_flags(OneStream(model, "temporal"), loader)
    assert torch.equal(flags, m.argmax(-1) == labels)
    assert (
        not model.training
    )  # scoring a stream leaves the two-stream model as it was
    # a dry run cuts every scoring to the same batches (8c at `full` compared 500 clips with 2,000)
    monkeypatch.setenv("VNOTES_DRY_RUN", "2")
    assert (
        len(correct_flags(OneStream(model, "spatial"), loader))
        == len(correct_flags(model, loader))
        == 8
    )
    with pytest.raises(ValueError, match="stream='both'"):
        OneStream(model, "both")


def test_single_frame_uses_the_middle_frame():
    torch.manual_seed(0)
    net = FrameNet(num_classes=2, widths=(4,)).eval()
    video = torch.rand(1, 5, 3, 8, 8)
    assert torch.allclose(SingleFrame(net)(video), net(video[:, 2]))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="time_kernel=0"):
        inflate_conv(torch.nn.Conv2d(1, 1, 3), 0)
    with pytest.raises(ValueError, match="time_kernels"):
        I3D.from_2d(FrameNet(2, widths=(4, 8)), time_kernels=(3,))
    with pytest.raises(ValueError, match="motion='sparkles'"):
        TwoStream(2, 4, motion="sparkles")
    with pytest.raises(ValueError, match="at least 2 frames"):
        frame_differences(torch.rand(1, 1, 3, 8, 8))
