"""Video understanding (chapter 8c, ``chapters/08c_video``): two streams and inflated 3-D convolutions.

* :class:`FrameNet` -- a small 2-D CNN that looks at one image (or a stack of motion channels)
* :func:`frame_differences`, :func:`lucas_kanade_flow` -- motion computed by hand from the frames,
  the input of the motion stream
* :class:`TwoStream` -- appearance stream on one RGB frame + motion stream on stacked optical flow,
  fused by averaging the class scores (Simonyan & Zisserman, 2014)
* :class:`I3D` -- the same network with every 2-D kernel inflated to 3-D and initialised from the
  2-D weights (Carreira & Zisserman, 2017); :func:`inflate_conv` and :func:`boring_video`
  state the inflation rule and its check

Clips are ``[B, T, C, H, W]`` (time second, as :func:`vnotes.data.make_clips` returns them);
3-D convolutions want ``[B, C, T, H, W]``, and the models permute on entry.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "FrameNet",
    "TwoStream",
    "I3D",
    "SingleFrame",
    "inflate_conv",
    "inflate_batchnorm",
    "boring_video",
    "frame_differences",
    "lucas_kanade_flow",
    "motion_input",
    "two_stream_step",
    "MOTION_KINDS",
]

MOTION_KINDS = ("flow", "difference")


def _check_video(video: Tensor) -> None:
    if video.ndim != 5:
        raise ValueError(
            f"expected clips [B, T, C, H, W], got shape {tuple(video.shape)}"
        )
    if video.shape[1] < 2:
        raise ValueError(
            f"clips need at least 2 frames for motion, got T={video.shape[1]}"
        )


# --------------------------------------------------------------------------- the 2-D network
class FrameNet(nn.Module):
    """A VGG-like 2-D CNN: stages of [3x3 conv, BatchNorm, ReLU, 2x2 max-pool], global average pool, linear head.

    It is the image network that :class:`TwoStream` uses for each stream and that :class:`I3D` inflates.
    ``widths`` gives the channels of the stages; each stage halves the resolution.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        widths: Sequence[int] = (16, 32, 64),
    ):
        super().__init__()
        if (
            num_classes < 1
            or in_channels < 1
            or not widths
            or any(w < 1 for w in widths)
        ):
            raise ValueError(
                f"num_classes={num_classes}, in_channels={in_channels} and widths={tuple(widths)} "
                "must be positive (at least one stage)"
            )
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:
            layers += [
                nn.Conv2d(c, w, 3, padding=1, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c = w
        self.features = nn.Sequential(*layers)
        self.widths = tuple(widths)
        self.in_channels = in_channels
        self.num_features = c
        self.head = nn.Linear(c, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """``[B, C, H, W]`` -> pooled features ``[B, num_features]``."""
        return self.features(x).mean((2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x))  # [B, num_classes]


class SingleFrame(nn.Module):
    """The baseline that sees one frame of a clip (the middle one): a :class:`FrameNet` on ``video[:, T // 2]``."""

    def __init__(self, net: FrameNet):
        super().__init__()
        self.net = net

    def forward(self, video: Tensor) -> Tensor:
        _check_video(video)
        return self.net(video[:, video.shape[1] // 2])  # [B, num_classes]


# --------------------------------------------------------------------------- motion by hand
def frame_differences(video: Tensor) -> Tensor:
    """D_t = I_{t+1} - I_t for consecutive frames: ``[B, T, C, H, W]`` -> ``[B, T-1, C, H, W]``."""
    _check_video(video)
    return video[:, 1:] - video[:, :-1]


def lucas_kanade_flow(
    video: Tensor, window: int = 5, eps: float = 1e-3
) -> Tensor:
    """Dense optical flow of consecutive frames (Lucas & Kanade, 1981): ``[B, T, C, H, W]`` -> ``[B, T-1, 2, H, W]``.

    Brightness constancy linearised, I_x u + I_y v + I_t = 0, is solved in the least-squares sense over a
    ``window`` x ``window`` neighbourhood of every pixel:
    [[S_xx, S_xy], [S_xy, S_yy]] [u, v]^T = -[S_xt, S_yt]^T, with S_ab = sum over the window of I_a I_b.
    ``eps`` regularises flat regions (no gradient, so no flow). Channel 0 is u (pixels/frame to the right),
    channel 1 is v (pixels/frame downwards).
    """
    _check_video(video)
    if window < 1 or window % 2 == 0:
        raise ValueError(
            f"window={window} must be a positive odd number of pixels"
        )
    B, T, _, H, W = video.shape
    gray = video.mean(2)  # [B, T, H, W]
    first, second = gray[:, :-1], gray[:, 1:]  # [B, T-1, H, W]
    mid = 0.5 * (first + second).reshape(
        -1, 1, H, W
    )  # spatial gradients of the average of the pair
    # I_x, I_y by central differences (replicate the border so the edges see no false gradient)
    padded = F.pad(mid, (1, 1, 1, 1), mode="replicate")
    Ix = 0.5 * (
        padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]
    )  # [B(T-1), 1, H, W]
    Iy = 0.5 * (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1])
    It = (second - first).reshape(-1, 1, H, W)
    # window sums S_ab (as means, which only rescales eps)
    S = F.avg_pool2d(
        torch.cat([Ix * Ix, Ix * Iy, Iy * Iy, Ix * It, Iy * It], 1),
        window,
        1,
        window // 2,
        count_include_pad=False,
    )
    Sxx, Sxy, Syy, Sxt, Syt = S.unbind(1)
    Sxx, Syy = Sxx + eps, Syy + eps
    # Cramer's rule for the 2x2 system
    det = Sxx * Syy - Sxy * Sxy
    u = (-Syy * Sxt + Sxy * Syt) / det
    v = (Sxy * Sxt - Sxx * Syt) / det
    return torch.stack([u, v], 1).view(B, T - 1, 2, H, W)


def motion_input(video: Tensor, kind: str = "flow") -> Tensor:
    """The motion stream's input: stacked flow (``[B, 2(T-1), H, W]``) or frame differences (``[B, 3(T-1), H, W]``)."""
    if kind == "flow":
        m = lucas_kanade_flow(video)
    elif kind == "difference":
        m = frame_differences(video)
    else:
        raise ValueError(f"kind={kind!r} is unknown; allowed: {MOTION_KINDS}")
    return m.flatten(
        1, 2
    )  # stack time and channels, as Simonyan & Zisserman do


# --------------------------------------------------------------------------- two streams
class TwoStream(nn.Module):
    """Two-stream network (Simonyan & Zisserman, 2014): a spatial stream on one RGB frame and a temporal
    stream on stacked motion fields, each a classifier; their softmax scores are averaged (late fusion).

    ``forward`` returns the log of the fused class probabilities (so cross-entropy and argmax apply);
    :meth:`stream_logits` returns both streams' logits for training each with its own loss.
    """

    def __init__(
        self,
        num_classes: int,
        frames: int,
        widths: Sequence[int] = (16, 32, 64),
        motion: str = "flow",
    ):
        super().__init__()
        if motion not in MOTION_KINDS:
            raise ValueError(
                f"motion={motion!r} is unknown; allowed: {MOTION_KINDS}"
            )
        if frames < 2:
            raise ValueError(f"frames={frames} must be at least 2")
        per_step = 2 if motion == "flow" else 3
        self.motion, self.frames = motion, frames
        self.appearance = FrameNet(num_classes, 3, widths)
        self.temporal = FrameNet(num_classes, per_step * (frames - 1), widths)

    def stream_logits(self, video: Tensor) -> tuple[Tensor, Tensor]:
        """(appearance logits, motion logits), each ``[B, num_classes]``."""
        _check_video(video)
        if video.shape[1] != self.frames:
            raise ValueError(
                f"this model was built for {self.frames} frames, got T={video.shape[1]}"
            )
        with torch.no_grad():  # motion is precomputed input, not learned
            motion = motion_input(video, self.motion)  # [B, 2(T-1), H, W]
        return self.appearance(video[:, video.shape[1] // 2]), self.temporal(
            motion
        )

    def forward(self, video: Tensor) -> Tensor:
        a, m = self.stream_logits(video)
        # late fusion: p = (softmax(a) + softmax(m)) / 2, returned as log p
        return torch.logsumexp(
            torch.stack([a.log_softmax(-1), m.log_softmax(-1)]), 0
        ) - torch.log(torch.tensor(2.0))


class OneStream(nn.Module):
    """One stream of a :class:`TwoStream` on its own, ``"spatial"`` or ``"temporal"``: its logits, so that
    each stream is scored like any classifier (for example by :func:`vnotes.correct_flags`, which a dry run
    cuts to the same batches as the fused model's). Holds the two-stream model, not a copy."""

    STREAMS = ("spatial", "temporal")

    def __init__(self, model: TwoStream, stream: str):
        super().__init__()
        if stream not in self.STREAMS:
            raise ValueError(
                f"stream={stream!r} is unknown; allowed: {self.STREAMS}"
            )
        self.model, self.index = model, self.STREAMS.index(stream)
        self.train(model.training)

    def forward(self, video: Tensor) -> Tensor:
        return self.model.stream_logits(video)[self.index]


def two_stream_step(
    model: nn.Module, batch: tuple[Tensor, Tensor]
) -> tuple[Tensor, dict[str, Tensor]]:
    """A :func:`vnotes.fit` step for :class:`TwoStream`: each stream learns from the labels on its own."""
    video, y = batch[0], batch[1]
    net = getattr(model, "module", model)
    a, m = net.stream_logits(video)
    loss_a, loss_m = (
        F.cross_entropy(a.float(), y),
        F.cross_entropy(m.float(), y),
    )
    return loss_a + loss_m, {
        "appearance_loss": loss_a.detach(),
        "motion_loss": loss_m.detach(),
    }


# --------------------------------------------------------------------------- inflation
def inflate_conv(conv: nn.Conv2d, time_kernel: int) -> nn.Conv3d:
    """A Conv3d whose kernel is the 2-D kernel repeated ``time_kernel`` times along time and divided by it.

    W3d[o, i, t, y, x] = W2d[o, i, y, x] / k_t (Carreira & Zisserman, 2017, Sec. 2.2), so on a clip whose
    frames are all equal the 3-D response at every time step equals the 2-D response.
    No temporal padding is built in: :class:`I3D` replicates the border frames instead.
    """
    if time_kernel < 1:
        raise ValueError(f"time_kernel={time_kernel} must be at least 1")
    if (
        conv.groups != 1
        or conv.padding_mode != "zeros"
        or isinstance(conv.padding, str)
    ):
        raise ValueError(
            "inflate_conv handles ungrouped convolutions with numeric zero padding"
        )
    conv3d = nn.Conv3d(
        conv.in_channels,
        conv.out_channels,
        (time_kernel, *conv.kernel_size),
        stride=(1, *conv.stride),
        padding=(0, *conv.padding),
        dilation=(1, *conv.dilation),
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        # [O, I, kh, kw] -> [O, I, kt, kh, kw], divided by kt so the sum over time is the 2-D kernel
        conv3d.weight.copy_(
            conv.weight.unsqueeze(2).repeat(1, 1, time_kernel, 1, 1)
            / time_kernel
        )
        if conv.bias is not None:
            conv3d.bias.copy_(conv.bias)
    return conv3d


def inflate_batchnorm(bn: nn.BatchNorm2d) -> nn.BatchNorm3d:
    """BatchNorm3d with the same affine parameters and running statistics (normalisation is per channel either way)."""
    bn3d = nn.BatchNorm3d(
        bn.num_features,
        eps=bn.eps,
        momentum=bn.momentum,
        affine=bn.affine,
        track_running_stats=bn.track_running_stats,
    )
    bn3d.load_state_dict(bn.state_dict())
    return bn3d


def boring_video(images: Tensor, frames: int) -> Tensor:
    """The I3D paper's "boring video": each image repeated ``frames`` times, ``[B, C, H, W]`` -> ``[B, T, C, H, W]``."""
    if images.ndim != 4:
        raise ValueError(
            f"expected images [B, C, H, W], got shape {tuple(images.shape)}"
        )
    if frames < 1:
        raise ValueError(f"frames={frames} must be at least 1")
    return images.unsqueeze(1).expand(-1, frames, -1, -1, -1).contiguous()


class _TimePad(nn.Module):
    """Pad the time axis of ``[B, C, T, H, W]`` by repeating the first and last frames (keeps a boring video boring)."""

    def __init__(self, pad: int):
        super().__init__()
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        if self.pad == 0:
            return x
        return F.pad(x, (0, 0, 0, 0, self.pad, self.pad), mode="replicate")


class _TimeSpacePool(nn.Module):
    """Max-pool ``[B, C, T, H, W]`` by (``time``, 2, 2), padding a time axis it does not divide with the last frame."""

    def __init__(self, time: int):
        super().__init__()
        self.time = time
        self.pool = nn.MaxPool3d((time, 2, 2))

    def forward(self, x: Tensor) -> Tensor:
        extra = -x.shape[2] % self.time
        if extra:
            x = F.pad(x, (0, 0, 0, 0, 0, extra), mode="replicate")
        return self.pool(x)


class I3D(nn.Module):
    """Inflated 3-D ConvNet (Carreira & Zisserman, 2017) built from a :class:`FrameNet`'s layout.

    Every k x k convolution becomes k_t x k x k (``time_kernels`` per stage), BatchNorm2d becomes
    BatchNorm3d, and the 2 x 2 max-pool becomes ``time_pools[i]`` x 2 x 2 -- the paper keeps time
    unpooled in the first stages so that early layers see motion at full frame rate. With
    :meth:`from_2d` the 3-D weights start from the 2-D ones (inflation); otherwise they start random.

    Time is padded by repeating border frames (not zeros), and a time axis too short or odd for a pooling
    step is padded the same way, so that on a boring video the network reproduces the 2-D network
    *exactly*, borders included.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        widths: Sequence[int] = (16, 32, 64),
        time_kernels: Sequence[int] | None = None,
        time_pools: Sequence[int] | None = None,
    ):
        super().__init__()
        template = FrameNet(num_classes, in_channels, widths)
        self._build(template, time_kernels, time_pools, inflate=False)

    def _build(
        self,
        net2d: FrameNet,
        time_kernels: Sequence[int] | None,
        time_pools: Sequence[int] | None,
        inflate: bool,
    ) -> None:
        n = len(net2d.widths)
        time_kernels = (
            tuple(time_kernels) if time_kernels is not None else (3,) * n
        )
        time_pools = (
            tuple(time_pools)
            if time_pools is not None
            else (1,) + (2,) * (n - 1)
        )
        if len(time_kernels) != n or len(time_pools) != n:
            raise ValueError(
                f"time_kernels={time_kernels} and time_pools={time_pools} need one entry per stage ({n})"
            )
        if any(k < 1 or k % 2 == 0 for k in time_kernels):
            raise ValueError(
                f"time_kernels={time_kernels} must be positive odd numbers (centred in time)"
            )
        if any(p < 1 for p in time_pools):
            raise ValueError(f"time_pools={time_pools} must be positive")
        layers: list[nn.Module] = []
        stage = 0
        for m in net2d.features:
            if isinstance(m, nn.Conv2d):
                kt = time_kernels[stage]
                conv = inflate_conv(m, kt)
                if not inflate:
                    conv.reset_parameters()
                layers += [_TimePad(kt // 2), conv]
            elif isinstance(m, nn.BatchNorm2d):
                layers.append(
                    inflate_batchnorm(m)
                    if inflate
                    else nn.BatchNorm3d(m.num_features)
                )
            elif isinstance(m, nn.ReLU):
                layers.append(nn.ReLU(inplace=True))
            elif isinstance(m, nn.MaxPool2d):
                tp = time_pools[stage]
                layers.append(_TimeSpacePool(tp))
                stage += 1
            else:  # pragma: no cover - FrameNet has only these layers
                raise TypeError(f"cannot inflate {type(m).__name__}")
        self.features = nn.Sequential(*layers)
        self.widths, self.time_kernels, self.time_pools = (
            net2d.widths,
            time_kernels,
            time_pools,
        )
        self.num_features = net2d.num_features
        self.head = nn.Linear(net2d.num_features, net2d.head.out_features)
        if inflate:
            self.head.load_state_dict(net2d.head.state_dict())

    @classmethod
    def from_2d(
        cls,
        net2d: FrameNet,
        time_kernels: Sequence[int] | None = None,
        time_pools: Sequence[int] | None = None,
    ) -> "I3D":
        """Inflate a trained :class:`FrameNet` into an :class:`I3D` (weights copied, kernels spread over time)."""
        if not isinstance(net2d, FrameNet):
            raise TypeError(
                f"from_2d inflates a FrameNet, got {type(net2d).__name__}"
            )
        model = cls.__new__(cls)
        nn.Module.__init__(model)
        model._build(net2d, time_kernels, time_pools, inflate=True)
        return model.to(next(net2d.parameters()).device)

    def forward_features(self, video: Tensor) -> Tensor:
        """``[B, T, C, H, W]`` -> features pooled over time and space ``[B, num_features]``."""
        if video.ndim != 5:
            raise ValueError(
                f"expected clips [B, T, C, H, W], got shape {tuple(video.shape)}"
            )
        x = video.transpose(1, 2)  # [B, C, T, H, W]
        return self.features(x).mean((2, 3, 4))

    def forward(self, video: Tensor) -> Tensor:
        return self.head(self.forward_features(video))  # [B, num_classes]
