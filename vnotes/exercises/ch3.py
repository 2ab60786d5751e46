"""Chapter 3 (convolutional networks): the convolution by unfold, the receptive field, the depthwise
separable parameter count, the channel shuffle, the residual block, batch norm in training, the Pareto
front, and the quizzes of pages 3a–3d."""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .core import CheckResult, _check, _choice, _compare, _number, _run, _Stop

__all__ = [
    "check_conv2d_unfold",
    "check_receptive_field",
    "check_separable_parameters",
    "check_channel_shuffle",
    "check_residual_forward",
    "check_batch_norm_train",
    "check_pareto_front",
    "check_conv_macs",
    "convolution_quiz",
    "cnn_families_quiz",
    "miniatures_quiz",
]


def _count(got, what: str) -> int:
    """The reader's answer as an int; a tensor with one element or an integral float is fine."""
    if isinstance(got, torch.Tensor):
        if got.numel() != 1:
            raise _Stop(
                f"{what} is a tensor of shape {tuple(got.shape)}, not one number"
            )
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        raise _Stop(f"{what} is a {type(got).__name__}, not a number")
    if not math.isfinite(got) or got != int(got):
        raise _Stop(f"{what} is {got!r}, not a whole number")
    return int(got)


def _run_case(fn: Callable, label: str, *args, **kwargs):
    """:func:`_run`, with the case named when the reader's function raises (a "not yet" stays as it is)."""
    try:
        return _run(fn, *args, **kwargs)
    except _Stop as stop:
        if str(stop).startswith("not yet"):
            raise
        raise _Stop(f"{stop} ({label})") from None


# ============================================================================ page 3a
def check_conv2d_unfold(conv2d_unfold: Callable) -> CheckResult:
    """Check ``conv2d_unfold(x, weight, bias=None, stride=1, padding=0, groups=1) -> y``, a 2-D
    convolution written as ``F.unfold`` plus one matrix product, against ``F.conv2d``.

    ``x``: ``[B, C_in, H, W]``, ``weight``: ``[C_out, C_in/groups, kh, kw]``, ``bias``: ``[C_out]`` or
    None; ``stride`` and ``padding`` an int or a pair. Cases: stride 1 without padding, stride 2 with
    padding, a non-square kernel with different strides and paddings per axis, two groups, a depthwise
    convolution (groups = channels), a 1×1 kernel without bias, an output of a single pixel.
    """

    def body() -> str:
        g = torch.Generator().manual_seed(30)

        def rand(*shape):
            return torch.randn(*shape, generator=g, dtype=torch.float64)

        cases = [
            (
                "stride 1, no padding",
                rand(2, 3, 8, 9),
                rand(4, 3, 3, 3),
                rand(4),
                {},
            ),
            (
                "stride 2, padding 1",
                rand(2, 4, 9, 7),
                rand(6, 4, 3, 3),
                rand(6),
                dict(stride=2, padding=1),
            ),
            (
                "a 3×5 kernel, stride (2, 1), padding (1, 2)",
                rand(1, 3, 11, 10),
                rand(5, 3, 3, 5),
                rand(5),
                dict(stride=(2, 1), padding=(1, 2)),
            ),
            (
                "groups=2",
                rand(2, 4, 6, 6),
                rand(6, 2, 3, 3),
                rand(6),
                dict(padding=1, groups=2),
            ),
            (
                "a depthwise convolution, groups=5",
                rand(2, 5, 7, 7),
                rand(5, 1, 3, 3),
                rand(5),
                dict(stride=2, padding=1, groups=5),
            ),
            (
                "a 1×1 kernel without bias",
                rand(3, 6, 5, 4),
                rand(2, 6, 1, 1),
                None,
                {},
            ),
            (
                "an output of one pixel",
                rand(2, 3, 3, 3),
                rand(4, 3, 3, 3),
                rand(4),
                {},
            ),
        ]
        for label, x, w, b, kw in cases:
            want = F.conv2d(x, w, b, **kw)
            before = x.clone()
            got = _run_case(
                conv2d_unfold,
                label,
                x,
                w.clone(),
                None if b is None else b.clone(),
                **kw,
            )
            if not torch.equal(x, before):
                raise _Stop(
                    f"conv2d_unfold changed its input x in place ({label})"
                )
            _compare(got, want, f"the output ({label})", rtol=1e-9, atol=1e-9)
        return (
            "matches F.conv2d with strides, paddings, a non-square kernel, groups, a depthwise "
            "kernel, no bias and a one-pixel output"
        )

    return _check("conv2d_unfold", conv2d_unfold, body)


def check_receptive_field(receptive_field: Callable) -> CheckResult:
    """Check ``receptive_field(layers) -> int``: the receptive field (in input pixels, along one axis)
    of the top layer of a stack given as ``(kernel, stride, dilation)`` triples, against the book's
    :func:`vnotes.cnn.conv.receptive_field` (which the page checks against a gradient measurement).

    Cases: no layer, one layer, 3×3 stacks at stride 1, with strides, with growing dilations, a mix
    with a 1×1 layer and large kernels.
    """

    def body() -> str:
        from vnotes.cnn import conv

        cases = [
            ("no layer at all", []),
            ("one 3×3 layer", [(3, 1, 1)]),
            ("one 7×7 layer with stride 2", [(7, 2, 1)]),
            ("five 3×3 layers at stride 1", [(3, 1, 1)] * 5),
            ("3×3 layers, each with stride 2", [(3, 2, 1)] * 4),
            (
                "3×3 layers with dilations 1, 2, 4, 8",
                [(3, 1, 2**i) for i in range(4)],
            ),
            (
                "a 7×7/2 stem, a 3×3/2 pool, a 1×1 and two 3×3 layers",
                [(7, 2, 1), (3, 2, 1), (1, 1, 1), (3, 1, 1), (3, 2, 2)],
            ),
            ("a 2×2/2 layer, then a 5×5", [(2, 2, 1), (5, 1, 1)]),
        ]
        for label, layers in cases:
            want = (
                conv.receptive_field(layers)[-1]["receptive_field"]
                if layers
                else 1
            )
            got = _count(
                _run(receptive_field, list(layers)),
                f"the receptive field ({label})",
            )
            if got != want:
                raise _Stop(
                    f"the receptive field of {label} {layers} is {got}; the reference gives {want}"
                )
        return "matches the formula on eight stacks, with strides, dilations and an empty stack"

    return _check("receptive_field", receptive_field, body)


def convolution_quiz(
    *,
    layer_parameters: Mapping[str, int],
    image_side: int,
    measured_field: Mapping[int, int],
    shift_errors: Mapping[str, float],
    first_layer: nn.Module,
    spread_small: float,
    spread_large: float,
) -> list[dict]:
    """The quiz of chapter 3a (``03a_convolution``), built from what the page measured.

    ``layer_parameters`` is one row of section 3a.2's table (``conv_vs_dense_parameters`` for an
    ``image_side`` × ``image_side`` image); ``measured_field`` maps a depth of 3×3 layers to the measured
    receptive field; ``shift_errors`` is section 3a.3's table (layer and shift -> max error, the keys
    naming "max-pool" and the shift); ``first_layer`` is the trained NiN's first convolution;
    ``spread_small`` and ``spread_large`` are section 3a.6's tap spreads.
    """
    dense, conv_count = (
        layer_parameters["dense"],
        layer_parameters["convolution"],
    )
    ratio = dense / conv_count
    magnitude = round(math.log10(ratio))
    ratio_options = [f"about {10**e:,}" for e in (1, 3, 5, 7)]
    nearest = min((1, 3, 5, 7), key=lambda e: abs(e - magnitude))
    depth = max(measured_field)
    pooled = {k: v for k, v in shift_errors.items() if "max-pool" in k}
    if not pooled:
        raise ValueError("shift_errors has no row with a max-pool")
    odd = [k for k in pooled if "(1, 0)" in k]
    if not odd:
        raise ValueError(
            "shift_errors has no max-pool row with the shift (1, 0)"
        )
    odd_error = pooled[odd[0]]
    exact = odd_error < 1e-6
    first_params = sum(p.numel() for p in first_layer.parameters())
    w = first_layer.weight
    has_bias = getattr(first_layer, "bias", None) is not None
    wider = "large objects" if spread_large > spread_small else "small objects"
    return [
        _choice(
            f"Section 3a.2: for a {image_side}×{image_side} image, roughly how many times more weights "
            "does the fully connected layer need than the 3×3 convolution?",
            ratio_options,
            f"about {10**nearest:,}",
            f"Right: {dense:,} against {conv_count:,}, a factor of {ratio:,.0f}; the convolution's "
            "count does not depend on the image size.",
        ),
        _number(
            f"Section 3a.4 measured the receptive field of {depth} stacked 3×3 layers at stride 1. How "
            "many pixels wide is it?",
            int(measured_field[depth]),
            f"Right: $1 + {depth}\\cdot(3-1) = {1 + 2 * depth}$; each layer adds $k-1 = 2$ pixels.",
        ),
        _choice(
            "Section 3a.3: is a convolution followed by a 2×2 max-pool equivariant to a shift of the "
            "input by one pixel?",
            [
                "yes, exactly: the error is at float rounding",
                "no: a shift that is not a multiple of the stride changes the output",
            ],
            "yes, exactly: the error is at float rounding"
            if exact
            else "no: a shift that is not a multiple of the stride changes the output",
            f"Right: the measured error was {odd_error:.2g}; the pooled output grid no longer lines up "
            "with the shifted input.",
        ),
        _number(
            f"Section 3a.5: the trained NiN's first layer has {w.shape[0]} filters of size "
            f"{w.shape[2]}×{w.shape[3]} over {w.shape[1]} input channels"
            + (", each with a bias" if has_bias else ", without bias")
            + ". How many parameters does it have?",
            int(first_params),
            f"Right: ${w.shape[0]}\\cdot{w.shape[1]}\\cdot{w.shape[2]}\\cdot{w.shape[3]}"
            + (f" + {w.shape[0]}" if has_bias else "")
            + f" = {first_params:,}$, whatever the image size.",
        ),
        _choice(
            "Section 3a.6: around the centre of which objects did the second deformable layer spread "
            "its taps further?",
            ["small objects", "large objects"],
            wider,
            f"Right: {spread_small:.2f} cells for small objects, {spread_large:.2f} for large ones.",
        ),
    ]


# ============================================================================ page 3b
def check_separable_parameters(separable_parameters: Callable) -> CheckResult:
    """Check ``separable_parameters(c_in, c_out, k, bias=False) -> int``: the parameters of a depthwise
    separable convolution (a k×k depthwise convolution, one filter per input channel, then a 1×1
    pointwise convolution from ``c_in`` to ``c_out`` channels; with ``bias`` both have one), against
    ``sum(p.numel() for p in module.parameters())`` of the two ``nn.Conv2d`` layers.
    """

    def body() -> str:
        cases = [
            (32, 64, 3, False),
            (128, 128, 3, False),
            (16, 48, 5, False),
            (24, 8, 3, True),
            (7, 13, 5, True),
            (1, 1, 1, False),
            (3, 96, 7, True),
        ]
        for c_in, c_out, k, bias in cases:
            module = nn.Sequential(
                nn.Conv2d(c_in, c_in, k, groups=c_in, bias=bias),
                nn.Conv2d(c_in, c_out, 1, bias=bias),
            )
            want = sum(p.numel() for p in module.parameters())
            label = f"c_in={c_in}, c_out={c_out}, k={k}, bias={bias}"
            got = _count(
                _run(separable_parameters, c_in, c_out, k, bias=bias),
                f"the count ({label})",
            )
            if got != want:
                raise _Stop(
                    f"for {label} you count {got:,} parameters; the torch modules have {want:,}"
                )
        return "matches the torch modules' parameter counts for seven layers, with and without bias"

    return _check("separable_parameters", separable_parameters, body)


def check_channel_shuffle(channel_shuffle: Callable) -> CheckResult:
    """Check ``channel_shuffle(x, groups) -> y`` (ShuffleNet, Zhang et al., 2018): ``[B, C, H, W]`` with
    ``C = g·n`` in, the same shape out, channel ``j`` of every group side by side; against the book's
    :func:`vnotes.cnn.shufflenet.channel_shuffle`. Cases: g = 3 on 12 channels, g = 4 on 8, g = 2,
    g = 1 and g = C (both the identity), a non-contiguous input.
    """

    def body() -> str:
        from vnotes.cnn.shufflenet import channel_shuffle as reference

        g = torch.Generator().manual_seed(31)
        cases = [
            (
                "groups=3, 12 channels",
                torch.randn(2, 12, 3, 4, generator=g),
                3,
            ),
            ("groups=4, 8 channels", torch.randn(1, 8, 2, 2, generator=g), 4),
            ("groups=2, 6 channels", torch.randn(3, 6, 1, 5, generator=g), 2),
            (
                "groups=1 (nothing to shuffle)",
                torch.randn(2, 5, 2, 2, generator=g),
                1,
            ),
            (
                "groups=6 on 6 channels",
                torch.randn(1, 6, 3, 3, generator=g),
                6,
            ),
            (
                "a non-contiguous input, groups=3",
                torch.randn(2, 4, 5, 9, generator=g).permute(0, 3, 1, 2),
                3,
            ),
        ]
        for label, x, groups in cases:
            want = reference(x.clone(), groups)
            before = x.clone()
            got = _run_case(channel_shuffle, label, x, groups)
            if not torch.equal(x, before):
                raise _Stop(
                    f"channel_shuffle changed its input in place ({label})"
                )
            if isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(
                want.shape
            ):
                # name the first output channel that holds the wrong input channel
                for c in range(want.shape[1]):
                    if not torch.equal(got[:, c], want[:, c]):
                        src = [
                            i
                            for i in range(x.shape[1])
                            if torch.equal(got[:, c], x[:, i])
                        ]
                        holds = (
                            f"input channel {src[0]}"
                            if src
                            else "no input channel unchanged"
                        )
                        raise _Stop(
                            f"output channel {c} ({label}) holds {holds}; the reference puts "
                            "another there"
                        )
            _compare(got, want, f"the output ({label})", rtol=0, atol=0)
        return "matches the reference shuffle for 1 to 6 groups and a non-contiguous input"

    return _check("channel_shuffle", channel_shuffle, body)


def check_residual_forward(residual_forward: Callable) -> CheckResult:
    """Check ``residual_forward(block, x) -> y``, the forward pass of ResNet's basic block
    (He et al., 2016) written with the block's layers (``block.conv1``, ``block.bn1``, ``block.conv2``,
    ``block.bn2``, ``block.downsample``: a module or None), against the block's own ``forward``.

    Cases: an identity shortcut, a projection shortcut with stride 2, batch norm in evaluation mode
    with non-trivial running statistics, and the block in training mode.
    """

    def body() -> str:
        from vnotes.cnn.resnet import BasicBlock, conv1x1

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(32)
            identity = BasicBlock(6, 6)
            projection = BasicBlock(
                4,
                8,
                stride=2,
                downsample=nn.Sequential(conv1x1(4, 8, 2), nn.BatchNorm2d(8)),
            )
            for block in (identity, projection):
                for m in block.modules():
                    if isinstance(m, nn.BatchNorm2d):
                        m.running_mean.normal_()
                        m.running_var.uniform_(0.5, 2.0)
                        nn.init.normal_(m.weight, 1.0, 0.3)
                        nn.init.normal_(m.bias, 0.0, 0.3)
                block.double()
            cases = [
                (
                    "identity shortcut, evaluation mode",
                    identity,
                    torch.randn(2, 6, 5, 5),
                ),
                (
                    "projection shortcut with stride 2, evaluation mode",
                    projection,
                    torch.randn(2, 4, 8, 8),
                ),
                (
                    "identity shortcut, training mode",
                    identity,
                    torch.randn(3, 6, 4, 4),
                ),
            ]
            for label, block, x in cases:
                x = x.double()
                block.train("training" in label)
                state = {k: v.clone() for k, v in block.state_dict().items()}
                with torch.no_grad():
                    want = block(x.clone())
                block.load_state_dict(
                    state
                )  # the reference's step of the running statistics undone
                before = x.clone()
                with torch.no_grad():
                    got = _run_case(residual_forward, label, block, x)
                block.load_state_dict(state)
                if not torch.equal(x, before):
                    raise _Stop(
                        f"residual_forward changed its input x in place ({label}); the shortcut "
                        "needs it unchanged"
                    )
                _compare(
                    got, want, f"the output ({label})", rtol=1e-9, atol=1e-9
                )
                if isinstance(got, torch.Tensor) and (got < 0).any():
                    raise _Stop(f"the output ({label}) has negative values")
        return "matches BasicBlock.forward with an identity and a projection shortcut, in both modes"

    return _check("residual_forward", residual_forward, body)


def cnn_families_quiz(
    *,
    inception_naive: int,
    inception_reduced: int,
    bottleneck_rows: Sequence[Mapping],
    fire_parameters: int,
    conv_parameters: int,
    shuffled: torch.Tensor,
    ms_per_gmac_dense: float | None,
    ms_per_gmac_depthwise: float | None,
) -> list[dict]:
    """The quiz of chapter 3b (``03b_cnn_families``), built from what the page counted and measured.

    ``inception_naive``/``inception_reduced``: inception 3a's convolution weights without and with the 1×1
    reductions; ``bottleneck_rows``: ``resnet.bottleneck_comparison(...)``, whose second row is the
    bottleneck against three 3×3 layers; ``fire_parameters``/``conv_parameters``: the Fire module and the
    plain 3×3 convolution of section 3b.4; ``shuffled``: the channel indices after the page's shuffle (its
    number of groups is read from it: position 1 holds channel ``C/g``); ``ms_per_gmac_*``: the medians of section 3b.12 (None when not measured).
    """
    saving = 1 - inception_reduced / inception_naive
    saving_options = [
        "about 10%",
        "about 25%",
        "about 50%",
        "about 70%",
        "about 90%",
    ]
    saving_values = [0.1, 0.25, 0.5, 0.7, 0.9]
    saving_key = saving_options[
        min(
            range(len(saving_values)),
            key=lambda i: abs(saving_values[i] - saving),
        )
    ]
    bottleneck = float(bottleneck_rows[1]["bottleneck saves"])
    shuffled = [int(v) for v in torch.as_tensor(shuffled).flatten().tolist()]
    n = shuffled[1]  # channel 0 of group 1 follows channel 0 of group 0
    if (
        n < 1
        or len(shuffled) % n
        or sorted(shuffled) != list(range(len(shuffled)))
    ):
        raise ValueError(
            f"shuffled={shuffled} is not a channel shuffle of 0..C-1"
        )
    groups = len(shuffled) // n
    questions = [
        _choice(
            "Section 3b.2: how large a share of inception 3a's convolution weights do the 1×1 "
            "reductions save?",
            saving_options,
            saving_key,
            f"Right: {inception_reduced:,} weights instead of {inception_naive:,}, {saving:.0%} fewer.",
        ),
        _number(
            "Section 3b.3: by how many percent (rounded to a whole number) does the bottleneck have fewer "
            "convolution weights than three 3×3 layers of its inner width?",
            round(100 * bottleneck),
            f"Right: {bottleneck:.1%}; the notes' 30% is this comparison.",
        ),
        _number(
            "Section 3b.4: how many times fewer parameters (rounded to one decimal) does the Fire module "
            "have than the plain 3×3 convolution with the same 128 → 128 channels?",
            round(conv_parameters / fire_parameters, 1),
            f"Right: {conv_parameters:,} / {fire_parameters:,} = {conv_parameters / fire_parameters:.2f}.",
            precision=3,
        ),
        _number(
            f"Section 3b.7 shuffles {len(shuffled)} channels in {groups} groups of {n}. After the shuffle, "
            "which input channel sits at position 1 (counting from 0)?",
            shuffled[1],
            f"Right: the shuffle takes channel 0 of every group first: {shuffled[: groups + 1]} …",
        ),
    ]
    if ms_per_gmac_dense is not None and ms_per_gmac_depthwise is not None:
        more = ms_per_gmac_depthwise > ms_per_gmac_dense
        questions.append(
            _choice(
                "Section 3b.12: per multiply-add, which networks took more CPU time?",
                [
                    "the depthwise (lightweight) families",
                    "the dense-convolution families",
                ],
                "the depthwise (lightweight) families"
                if more
                else "the dense-convolution families",
                f"Right: {ms_per_gmac_depthwise:.0f} ms per G multiply-adds for the depthwise families, "
                f"{ms_per_gmac_dense:.0f} for the dense ones.",
            )
        )
    return questions


# ============================================================================ pages 3c and 3d
def check_batch_norm_train(batch_norm_train: Callable) -> CheckResult:
    """Check ``batch_norm_train(x, gamma, beta, running_mean, running_var, momentum, eps) -> (y,
    running_mean, running_var)``: one training-mode step of 2-D batch norm (Ioffe & Szegedy, 2015) on
    ``x`` ``[B, C, H, W]``, against ``nn.BatchNorm2d`` in training mode: the output, normalised with the
    batch's statistics per channel, and the running statistics after the step (PyTorch's convention:
    ``new = (1 - momentum)·old + momentum·batch``, the variance unbiased). Cases: three steps in a row,
    a batch of one image, a channel with a constant value, ``momentum`` 0.1 and 0.5.
    """

    def body() -> str:
        g = torch.Generator().manual_seed(33)
        cases = [
            ("a batch of 4, momentum 0.1", 0.1, 1e-5, [(4, 3, 5, 6)] * 3),
            (
                "a batch of one 4×4 image, momentum 0.5",
                0.5,
                1e-3,
                [(1, 2, 4, 4)],
            ),
            ("a constant channel", 0.1, 1e-5, [(3, 2, 3, 3)]),
        ]
        for label, momentum, eps, shapes in cases:
            C = shapes[0][1]
            bn = nn.BatchNorm2d(C, eps=eps, momentum=momentum).double().train()
            with torch.no_grad():
                bn.weight.copy_(
                    torch.rand(C, generator=g, dtype=torch.float64) + 0.5
                )
                bn.bias.copy_(torch.randn(C, generator=g, dtype=torch.float64))
            mean = bn.running_mean.clone()
            var = bn.running_var.clone()
            for step, shape in enumerate(shapes, 1):
                x = (
                    2 * torch.randn(*shape, generator=g, dtype=torch.float64)
                    + 1
                )
                if "constant" in label:
                    x[:, 1] = 3.0
                with torch.no_grad():
                    want = bn(x)
                at = f"{label}, step {step}" if len(shapes) > 1 else label
                args = (
                    x,
                    bn.weight.detach(),
                    bn.bias.detach(),
                    mean.clone(),
                    var.clone(),
                )
                out = _run_case(
                    batch_norm_train,
                    at,
                    *(a.clone() for a in args),
                    momentum,
                    eps,
                )
                if not isinstance(out, (tuple, list)) or len(out) != 3:
                    raise _Stop(
                        f"batch_norm_train should return three tensors (y, running_mean, running_var), "
                        f"got {type(out).__name__}"
                        + (
                            f" of length {len(out)}"
                            if isinstance(out, (tuple, list))
                            else ""
                        )
                    )
                y, new_mean, new_var = out
                _compare(y, want, f"the output ({at})", rtol=1e-6, atol=1e-8)
                _compare(
                    new_mean,
                    bn.running_mean,
                    f"running_mean ({at})",
                    rtol=1e-9,
                    atol=1e-12,
                )
                _compare(
                    new_var,
                    bn.running_var,
                    f"running_var ({at})",
                    rtol=1e-9,
                    atol=1e-12,
                )
                mean, var = bn.running_mean.clone(), bn.running_var.clone()
        return (
            "matches nn.BatchNorm2d in training mode: the output and both running statistics, over "
            "three steps, a batch of one and a constant channel"
        )

    return _check("batch_norm_train", batch_norm_train, body)


def check_pareto_front(pareto_front: Callable) -> CheckResult:
    """Check ``pareto_front(costs, scores) -> list[int]``: the indices of the points that no other point
    beats (at most the cost and at least the score, one of them strictly), ordered by cost, against the
    book's :func:`vnotes.cnn.zoo.pareto_front`. Cases: a random cloud, two identical points (both stay),
    equal costs with different scores, one point, every point on the front.
    """

    def body() -> str:
        from vnotes.cnn.zoo import pareto_front as reference

        g = torch.Generator().manual_seed(34)
        cloud_c = (torch.rand(12, generator=g) * 100).round().tolist()
        cloud_s = torch.rand(12, generator=g).round(decimals=3).tolist()
        cases = [
            ("a random cloud of 12 points", cloud_c, cloud_s),
            ("one point", [5.0], [0.7]),
            (
                "two identical points",
                [3.0, 1.0, 3.0, 4.0],
                [0.8, 0.5, 0.8, 0.6],
            ),
            (
                "equal costs, different scores",
                [2.0, 2.0, 1.0, 5.0],
                [0.6, 0.9, 0.4, 0.95],
            ),
            (
                "equal scores, different costs",
                [4.0, 1.0, 2.0, 8.0],
                [0.9, 0.5, 0.9, 0.99],
            ),
            (
                "every point on the front",
                [1.0, 2.0, 4.0, 8.0],
                [0.1, 0.3, 0.6, 0.9],
            ),
            (
                "costs given out of order",
                [9.0, 1.0, 5.0, 3.0, 7.0],
                [0.9, 0.2, 0.7, 0.4, 0.1],
            ),
        ]
        for label, costs, scores in cases:
            want = reference(costs, scores)
            got = _run_case(pareto_front, label, list(costs), list(scores))
            try:
                got = [int(i) for i in got]
            except (TypeError, ValueError):
                raise _Stop(
                    f"pareto_front should return a list of indices ({label}), got "
                    f"{type(got).__name__}"
                ) from None
            if sorted(got) != sorted(want):
                extra = sorted(set(got) - set(want))
                missing = sorted(set(want) - set(got))
                what = (
                    f"includes point {extra[0]} (cost {costs[extra[0]]:g}, score {scores[extra[0]]:g}), "
                    "which another point beats"
                    if extra
                    else f"leaves out point {missing[0]} (cost {costs[missing[0]]:g}, score "
                    f"{scores[missing[0]]:g}), which no point beats"
                )
                raise _Stop(f"the front ({label}) {what}")
            if [costs[i] for i in got] != sorted(costs[i] for i in got):
                raise _Stop(
                    f"the front ({label}) is not ordered by cost, cheapest first"
                )
        return "matches the reference front on seven sets of points, with ties and a single point"

    return _check("pareto_front", pareto_front, body)


def check_conv_macs(conv_macs: Callable) -> CheckResult:
    """Check ``conv_macs(c_in, c_out, k, size, stride=1, groups=1) -> int``: the multiply-adds of one
    ``nn.Conv2d(c_in, c_out, k, stride, padding=k // 2, groups=groups)`` on one ``size``×``size`` image
    (bias additions not counted), against :func:`vnotes.cnn.profile.count_macs` of that module. Cases: a
    standard 3×3 layer, a strided one, a 1×1 layer, a depthwise layer, a grouped one, an odd size with a
    stride and a 5×5 kernel.
    """

    def body() -> str:
        from vnotes.cnn.profile import count_macs

        cases = [
            dict(c_in=16, c_out=32, k=3, size=8, stride=1, groups=1),
            dict(c_in=8, c_out=8, k=3, size=9, stride=2, groups=1),
            dict(c_in=24, c_out=40, k=1, size=5, stride=1, groups=1),
            dict(c_in=32, c_out=32, k=3, size=8, stride=1, groups=32),
            dict(c_in=12, c_out=24, k=1, size=6, stride=1, groups=3),
            dict(c_in=6, c_out=6, k=5, size=11, stride=2, groups=6),
            dict(c_in=3, c_out=4, k=3, size=1, stride=1, groups=1),
        ]
        for case in cases:
            module = nn.Conv2d(
                case["c_in"],
                case["c_out"],
                case["k"],
                case["stride"],
                padding=case["k"] // 2,
                groups=case["groups"],
            )
            want = count_macs(
                module, (case["c_in"], case["size"], case["size"])
            )
            label = ", ".join(f"{k}={v}" for k, v in case.items())
            got = _count(_run(conv_macs, **case), f"the count ({label})")
            if got != want:
                raise _Stop(
                    f"for {label} you count {got:,} multiply-adds; count_macs of the module gives {want:,}"
                )
        return "matches count_macs for standard, strided, 1×1, depthwise and grouped convolutions"

    return _check("conv_macs", conv_macs, body)


def miniatures_quiz(
    *, results: Sequence[Mapping], best: Mapping
) -> list[dict]:
    """The quiz of chapters 3c and 3d (``03c_classic_cnns``, ``03d_lightweight_cnns``), built from the
    trained miniatures: ``results`` is ``MiniatureComparison.results`` (one dict per family, with
    ``label``, ``params``, ``macs``, ``latency_ms``, ``test_accuracy``) and ``best`` its ``best`` (the
    miniature most accurate on validation).
    """
    from vnotes.cnn.zoo import pareto_front

    results = list(results)
    if len(results) < 2:
        raise ValueError("the quiz compares at least two trained miniatures")
    labels = [r["label"] for r in results]
    smallest = min(results, key=lambda r: r["params"])
    most_macs = max(results, key=lambda r: r["macs"])
    front = pareto_front(
        [r["params"] for r in results], [r["test_accuracy"] for r in results]
    )
    on_front = [labels[i] for i in front]
    return [
        _choice(
            "Which miniature has the fewest parameters?",
            labels,
            smallest["label"],
            f"Right: {smallest['params']:,} parameters.",
        ),
        _choice(
            "Which miniature needs the most multiply-adds for one 32×32 image?",
            labels,
            most_macs["label"],
            f"Right: {most_macs['macs'] / 1e6:.1f} M multiply-adds.",
        ),
        _number(
            f"How many of the {len(results)} miniatures lie on the Pareto front of test accuracy "
            "against parameters?",
            len(front),
            f"Right: {', '.join(on_front)}; every other miniature is beaten on both counts.",
        ),
        _choice(
            "Which miniature was the most accurate on validation, the one whose Grad-CAM maps are shown?",
            labels,
            best["label"],
            f"Right: {best['label']}, chosen on validation; its test accuracy is "
            f"{best['test_accuracy']:.3f}.",
        ),
        _choice(
            "A miniature is on the Pareto front of accuracy against latency when …",
            [
                "no other miniature is both at least as fast and at least as accurate",
                "it is faster than the median miniature",
                "its accuracy per millisecond is the highest",
            ],
            "no other miniature is both at least as fast and at least as accurate",
            "Right: every point off the front is beaten on both counts by some point on it; the front "
            "is what one chooses from, by how much time one can spend.",
        ),
    ]
