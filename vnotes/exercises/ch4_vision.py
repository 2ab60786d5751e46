"""Chapter 4, vision Transformers (pages 4d, 4e and 4f): the shifted-window mask, MLP-Mixer's token mixing,
bilinear sampling and the reference points of deformable attention, shifting images and counting a ViT's
parameters, and the three pages' quizzes."""

from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn.functional as F

from .core import CheckResult, _check, _choice, _compare, _number, _run, _Stop

__all__ = [
    "check_shifted_window_mask",
    "check_token_mixing",
    "swin_mixer_quiz",
    "check_bilinear_sample",
    "check_reference_points",
    "deformable_quiz",
    "check_shift_images",
    "check_vit_parameter_count",
    "inductive_bias_quiz",
]


def _boolean_mask(got, want: torch.Tensor, what: str) -> None:
    """Raise :class:`_Stop` naming the dtype, the shape or the first (window, query, key) that differs."""
    if not isinstance(got, torch.Tensor):
        raise _Stop(f"{what} is a {type(got).__name__}, not a tensor")
    if got.dtype != torch.bool:
        raise _Stop(
            f"{what} is {got.dtype}; the book's masks are boolean (True = may attend)"
        )
    if tuple(got.shape) != tuple(want.shape):
        raise _Stop(
            f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}"
        )
    wrong = torch.nonzero(got != want)
    if len(wrong):
        w, i, j = (int(n) for n in wrong[0])
        raise _Stop(
            f"{what}: in window {w}, query {i}, key {j} yours is {bool(got[w, i, j])}, "
            f"expected {bool(want[w, i, j])} ({len(wrong)} of {want.numel()} entries differ)"
        )


# ============================================================================ page 4d: Swin and MLP-Mixer
def check_shifted_window_mask(shifted_window_mask: Callable) -> CheckResult:
    """Check ``shifted_window_mask(H, W, window_size, shift)`` -> boolean ``[nW, M*M, M*M]``, True where
    two tokens of one window of the cyclically shifted grid came from the same part of the image
    (Liu et al., 2021), against ``vnotes.transformer.shifted_window_mask``.

    Cases: the page's 8 x 8 grid with M = 4 and shift 2, shift 1, a non-square grid, M = 3, one
    window covering the grid, a larger grid with shift 3, and shift 0 (no mask at all).
    """
    from ..transformer import shifted_window_mask as reference

    def body() -> str:
        for H, W, M, s in (
            (8, 8, 4, 2),
            (8, 8, 4, 1),
            (8, 12, 4, 2),
            (6, 6, 3, 1),
            (4, 4, 4, 2),
            (12, 12, 4, 3),
            (8, 8, 4, 0),
        ):
            got = _run(shifted_window_mask, H, W, M, s)
            _boolean_mask(
                got,
                reference(H, W, M, s),
                f"the mask (H={H}, W={W}, window_size={M}, shift={s})",
            )
        return "matches the book's shifted-window mask on seven grids, one window and shift 0 included"

    return _check("shifted_window_mask", shifted_window_mask, body)


def check_token_mixing(token_mixing: Callable) -> CheckResult:
    """Check ``token_mixing(x, w1, b1, w2, b2)`` -> ``[B, S, C]``, the token-mixing MLP of MLP-Mixer
    (Tolstikhin et al., 2021) without its LayerNorm and skip, against the MLP of
    ``vnotes.transformer.MixerBlock`` applied as the block applies it.

    ``x``: ``[B, S, C]`` (S patches, C channels), ``w1``: ``[hidden, S]``, ``b1``: ``[hidden]``,
    ``w2``: ``[S, hidden]``, ``b2``: ``[S]``. Cases: S != C, S == C, one channel, one image.
    """
    from ..transformer import MixerBlock

    def body() -> str:
        g = torch.Generator().manual_seed(5)
        for B, S, C, hidden in (
            (2, 6, 5, 7),
            (3, 4, 4, 8),
            (2, 9, 1, 3),
            (1, 16, 8, 12),
        ):
            block = MixerBlock(S, C, hidden, 2 * C).double()
            mlp = block.token_mixing
            with torch.no_grad():
                for p in mlp.parameters():
                    p.copy_(
                        torch.randn(p.shape, generator=g, dtype=torch.float64)
                    )
            x = torch.randn(B, S, C, generator=g, dtype=torch.float64)
            with torch.no_grad():
                want = mlp(x.transpose(1, 2)).transpose(1, 2)
            w1, b1 = (
                mlp.fc1.weight.detach().clone(),
                mlp.fc1.bias.detach().clone(),
            )
            w2, b2 = (
                mlp.fc2.weight.detach().clone(),
                mlp.fc2.bias.detach().clone(),
            )
            got = _run(token_mixing, x.clone(), w1, b1, w2, b2)
            _compare(
                got,
                want,
                f"the output (B={B}, S={S}, C={C}, hidden={hidden})",
                rtol=1e-6,
                atol=1e-9,
            )
        return "matches MixerBlock's token-mixing MLP on four cases, S == C and one channel included"

    return _check("token_mixing", token_mixing, body)


def swin_mixer_quiz(
    *,
    window_size: int,
    mask: torch.Tensor,
    embed_dim: int,
    test_accuracy: Mapping[str, float],
) -> list[dict]:
    """The quiz of chapter 4d (``04d_swin_mixer``), built from the page's shifted-window mask, Swin's
    embedding width and the three models' test accuracy."""
    M = int(window_size)
    best = max(test_accuracy, key=test_accuracy.get)
    return [
        _number(
            f"Section 4d.1 shifts the windows of an 8 × 8 token grid with windows of "
            f"{M} × {M} tokens. How many windows does SW-MSA attend in (per image)?",
            int(mask.shape[0]),
            "Right: rolling keeps the number of windows, $(H/M)(W/M)$; no padding windows are added.",
        ),
        _number(
            "In the last (bottom-right) shifted window, how many of its (query, key) pairs may "
            "attend?",
            int(mask[-1].sum()),
            "Right: that window holds tokens from four parts of the image; only pairs within the "
            "same part may attend.",
        ),
        _number(
            f"How many entries does the relative position bias table hold per head with "
            f"$M = {M}$?",
            (2 * M - 1) ** 2,
            f"Right: each offset runs from $-(M-1)$ to $M-1$ in each direction, $(2M-1)^2 = "
            f"{(2 * M - 1) ** 2}$.",
        ),
        _number(
            f"Swin's stage 1 here has {embed_dim} channels. How many does stage 2 have after "
            "patch merging?",
            2 * embed_dim,
            "Right: 2 × 2 tokens are concatenated to 4C channels and projected to 2C.",
        ),
        _choice(
            "Which model of section 4d.4 had the highest test accuracy in this run?",
            list(test_accuracy),
            best,
            "Right: that is the table's test accuracy column; the paired bootstrap says whether "
            "the lead exceeds the noise.",
        ),
        _choice(
            "After the roll of SW-MSA, two tokens of the same window may attend to each other when …",
            [
                "they were neighbours in the image before the roll",
                "they lie in the same row of the window",
                "always: the roll only moves the tokens",
            ],
            "they were neighbours in the image before the roll",
            "Right: the mask keeps pairs of the same region; tokens rolled in from the opposite edge "
            "are blocked.",
        ),
    ]


# ============================================================================ page 4e: deformable attention
def check_bilinear_sample(bilinear_sample: Callable) -> CheckResult:
    """Check ``bilinear_sample(value, locations)`` -> ``[N, C, Q, P]``: ``value`` ``[N, C, H, W]`` read at
    ``locations`` ``[N, Q, P, 2]`` ((x, y) in [0, 1], pixel centres at (i + 0.5) / size, zeros outside),
    the interpolation of deformable attention (Zhu et al., 2021), against ``F.grid_sample``
    (bilinear, zero padding, ``align_corners=False``).

    Cases: random points inside a non-square map, exact pixel centres, points near and beyond the
    border, a 1 x 1 map.
    """

    def reference(value, locations):
        return F.grid_sample(
            value,
            2.0 * locations - 1.0,
            mode="bilinear",
            padding_mode="zeros",
            align_corners=False,
        )

    def body() -> str:
        g = torch.Generator().manual_seed(6)
        d = torch.float64

        def rand(*shape, low=0.0, high=1.0):
            return low + (high - low) * torch.rand(
                *shape, generator=g, dtype=d
            )

        centres = torch.stack(
            torch.meshgrid(
                (torch.arange(4, dtype=d) + 0.5) / 4,
                (torch.arange(6, dtype=d) + 0.5) / 6,
                indexing="xy",
            ),
            -1,
        ).reshape(
            1, 1, -1, 2
        )  # (x, y) pairs on a 4-wide, 6-high map's pixel centres
        cases = [
            (
                "random points inside a 5 x 7 map",
                torch.randn(2, 3, 5, 7, generator=g, dtype=d),
                rand(2, 4, 6, 2, low=0.11, high=0.89),
            ),
            (
                "the pixel centres of a 6 x 4 map",
                torch.randn(1, 2, 6, 4, generator=g, dtype=d),
                centres,
            ),
            (
                "points near and beyond the border",
                torch.randn(2, 2, 4, 4, generator=g, dtype=d),
                rand(2, 5, 4, 2, low=-0.3, high=1.3),
            ),
            (
                "a 1 x 1 map",
                torch.randn(3, 2, 1, 1, generator=g, dtype=d),
                rand(3, 2, 3, 2),
            ),
        ]
        for label, value, locations in cases:
            got = _run(bilinear_sample, value.clone(), locations.clone())
            _compare(
                got,
                reference(value, locations),
                f"the output ({label})",
                rtol=1e-6,
                atol=1e-9,
            )
        return "matches F.grid_sample on four cases, pixel centres and points beyond the border included"

    return _check("bilinear_sample", bilinear_sample, body)


def check_reference_points(reference_points: Callable) -> CheckResult:
    """Check ``reference_points(H, W)`` -> ``[H*W, 2]``: the centres of an H x W grid of cells as (x, y)
    in [0, 1], row by row (Zhu et al., 2021), against ``vnotes.transformer.reference_points``.

    Grids 1 x 1, 2 x 2, 3 x 5 and 8 x 8.
    """
    from ..transformer import reference_points as reference

    def body() -> str:
        for H, W in ((1, 1), (2, 2), (3, 5), (8, 8)):
            got = _run(reference_points, H, W)
            _compare(
                got,
                reference(H, W),
                f"the points (H={H}, W={W})",
                rtol=1e-6,
                atol=1e-6,
            )
        return "matches the book's reference points on four grids, 1 x 1 and 3 x 5 included"

    return _check("reference_points", reference_points, body)


def deformable_quiz(
    *,
    grid: tuple[int, int],
    num_heads: int,
    num_points: int,
    object_vs_background: str,
) -> list[dict]:
    """The quiz of chapter 4e (``04e_deformable``), built from the model's token grid, its heads and
    points, and the bootstrap's verdict on object versus background queries ("above", "below" or
    "within noise of")."""
    verdicts = {
        "above": "more than background queries, beyond the noise",
        "below": "less than background queries, beyond the noise",
        "within noise of": "as much as background queries, within the noise",
    }
    if object_vs_background not in verdicts:
        raise ValueError(
            f"object_vs_background={object_vs_background!r} is not one of {list(verdicts)}"
        )
    N = int(grid[0]) * int(grid[1])
    per_query = num_heads * num_points
    return [
        _number(
            f"Each query of the page's model has {num_heads} heads of {num_points} sampling points. "
            "At how many positions does one query read the value map in one layer?",
            per_query,
            f"Right: $M K = {num_heads} \\times {num_points} = {per_query}$, whatever the map's size.",
        ),
        _number(
            f"The model's token grid is {grid[0]} × {grid[1]}. How many times more (query, position) "
            "pairs would global attention score in one layer than this deformable attention?",
            round(N / per_query, 3),
            f"Right: $N^2 / (N M K) = N / (M K) = {N}/{per_query}$.",
            precision=3,
        ),
        _number(
            f"At initialisation head $m$ looks in direction $2\\pi m / M$. With {num_heads} heads, "
            "how many degrees apart are two consecutive heads' directions?",
            round(360 / num_heads, 3),
            f"Right: $360° / {num_heads}$.",
            precision=3,
        ),
        _choice(
            "In section 4e.3, after training, queries on the object put … weight on object pixels",
            list(verdicts.values()),
            verdicts[object_vs_background],
            "Right: that is the bootstrap interval of the difference printed above.",
        ),
        _choice(
            "Where does a query of deformable attention get its sampling offsets from?",
            [
                "a linear layer applied to the query's own features",
                "dot products of the query with every key",
                "a fixed grid around the query",
            ],
            "a linear layer applied to the query's own features",
            "Right: there are no keys; a query decides where to look from its own content.",
        ),
    ]


# ============================================================================ page 4f: inductive bias
def check_shift_images(shift_images: Callable) -> CheckResult:
    """Check ``shift_images(images, dx, dy, fill)`` -> ``[N, C, H, W]``: each image's content moved ``dx``
    pixels right and ``dy`` down (negative: left, up), the uncovered border filled with the number
    ``fill``, against ``vnotes.transformer.inductive_bias.shift_images``.

    Cases: right, up, left and down together, no shift, a shift of all but one column, a non-square
    image; the input must be left as it was.
    """
    from ..transformer.inductive_bias import shift_images as reference

    def body() -> str:
        g = torch.Generator().manual_seed(7)
        for (N, C, H, W), dx, dy, fill in (
            ((2, 3, 6, 6), 2, 0, 0.5),
            ((2, 3, 6, 6), 0, -3, -1.0),
            ((1, 2, 5, 7), -1, 2, 0.25),
            ((3, 1, 4, 4), 0, 0, 9.0),
            ((1, 3, 6, 6), 5, 0, 0.0),
            ((2, 3, 4, 8), 3, -1, 2.0),
        ):
            images = torch.rand(N, C, H, W, generator=g, dtype=torch.float64)
            given = images.clone()
            got = _run(shift_images, given, dx, dy, fill)
            if not torch.equal(given, images):
                raise _Stop(
                    "your function changed the images it was given; shift a copy"
                )
            _compare(
                got,
                reference(images, dx, dy, fill=fill),
                f"the output (image {H}x{W}, dx={dx}, dy={dy}, fill={fill})",
                rtol=0.0,
                atol=1e-12,
            )
        return "matches the book's shift_images on six cases, no shift and a non-square image included"

    return _check("shift_images", shift_images, body)


def _as_int(got, what: str) -> int:
    if isinstance(got, torch.Tensor):
        if got.numel() != 1:
            raise _Stop(
                f"{what} is a tensor of shape {tuple(got.shape)}, not one number"
            )
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        raise _Stop(f"{what} is a {type(got).__name__}, not a number")
    if got != int(got):
        raise _Stop(f"{what} is {got}, not a whole number")
    return int(got)


def check_vit_parameter_count(vit_parameter_count: Callable) -> CheckResult:
    """Check ``vit_parameter_count(image_size, patch_size, dim, depth, num_heads, mlp_ratio, num_classes)``:
    the number of parameters of ``vnotes.transformer.vit_toy`` with these settings (RGB images), against
    ``sum(p.numel() for p in model.parameters())``.

    Cases: page 4f's ViT, the 4c-sized one, a wide one with one block, one patch covering the image.
    """
    from ..transformer import vit_toy

    def body() -> str:
        for image_size, patch, dim, depth, heads, ratio, classes in (
            (16, 4, 48, 2, 4, 2.0, 6),
            (32, 4, 64, 4, 4, 2.0, 10),
            (32, 8, 96, 1, 3, 4.0, 5),
            (16, 16, 8, 3, 1, 1.0, 2),
        ):
            model = vit_toy(
                num_classes=classes,
                image_size=image_size,
                patch_size=patch,
                dim=dim,
                depth=depth,
                num_heads=heads,
                mlp_ratio=ratio,
            )
            want = sum(p.numel() for p in model.parameters())
            what = (
                f"the count (image_size={image_size}, patch_size={patch}, dim={dim}, depth={depth}, "
                f"num_heads={heads}, mlp_ratio={ratio}, num_classes={classes})"
            )
            got = _as_int(
                _run(
                    vit_parameter_count,
                    image_size,
                    patch,
                    dim,
                    depth,
                    heads,
                    ratio,
                    classes,
                ),
                what,
            )
            if got != want:
                raise _Stop(
                    f"{what} is {got:,}: {abs(got - want):,} too {'many' if got > want else 'few'}"
                )
        return "matches the parameter count of vit_toy on four settings, one patch per image included"

    return _check("vit_parameter_count", vit_parameter_count, body)


def inductive_bias_quiz(
    *,
    image_size: int,
    patch_size: int,
    dim: int,
    parameters: Mapping[str, int],
    largest_leader: str | None,
    fewer_changed: str | None,
) -> list[dict]:
    """The quiz of chapter 4f (``04f_inductive_bias``), built from the page's image size, the ViT's patch
    size and width, the two models' parameter counts, the verdict at the largest training set (the leading model's name, or
    None within noise) and the shift probe's verdict (the model that changes fewer predictions, or None)."""
    verdict = {
        "ViT": "the ViT",
        "CNN": "the CNN",
        None: "neither: within noise",
    }
    for value in (largest_leader, fewer_changed):
        if value not in verdict:
            raise ValueError(f"{value!r} is not one of {list(verdict)}")
    more = max(parameters, key=parameters.get)
    tokens = (image_size // patch_size) ** 2 + 1
    return [
        _number(
            f"The ViT of section 4f.1 cuts a {image_size} × {image_size} image into {patch_size} × "
            f"{patch_size} patches. How many tokens enter its first block, [CLS] included?",
            tokens,
            f"Right: $({image_size}/{patch_size})^2 + 1 = {tokens}$.",
        ),
        _choice(
            "Which of the two models of section 4f.1 has more parameters?",
            list(parameters),
            more,
            "Right: the counts printed in 4f.1; matched_pair keeps them within a factor 1.25.",
        ),
        _choice(
            "At the largest training set of section 4f.2, which model has the higher test accuracy by "
            "more than the seeds' noise?",
            list(verdict.values()),
            verdict[largest_leader],
            "Right: that is the verdict column of the table's last row.",
        ),
        _choice(
            "In section 4f.3, averaged over shifts of 1 to 4 pixels, which model changes fewer of its "
            "predictions, by more than the seeds' noise?",
            list(verdict.values()),
            verdict[fewer_changed],
            "Right: that is the sentence under the shift probe.",
        ),
        _number(
            f"The ViT's tokens are {dim} wide. How many parameters do its learned position "
            "embeddings hold?",
            tokens * dim,
            f"Right: one {dim}-wide vector per token, [CLS] included: ${tokens} \\times {dim}$. "
            "The CNN has no such table: where a pattern sits never enters its weights.",
        ),
        _choice(
            f"Moving an image by {patch_size} pixels to the right moves the ViT's patch embeddings "
            "(before the positions are added) …",
            [
                "by one token, unchanged otherwise",
                "not at all",
                "by a fraction of a token",
            ],
            "by one token, unchanged otherwise",
            "Right: a shift by a whole patch puts every patch on its neighbour's place; the learned "
            "positions then tell the model that it moved.",
        ),
    ]
