"""Figures of chapter 7: similarity matrices, the held-out grid, retrievals, word--patch maps, captions."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from torch import Tensor

from ..data import SHAPES
from ..plot import TITLE_POINTS, _to_hwc, overlay_heatmap, wrap_words
from .data import COLOUR_NAMES, HELDOUT_COMBOS


def plot_combo_grid(
    heldout: Sequence[tuple[str, str]] = HELDOUT_COMBOS,
    ax=None,
    values: Tensor | None = None,
    title: str = "colour-shape pairs: seen in training or held out",
):
    """The 6 x 6 grid of (colour, shape) pairs, held-out ones marked; optional per-pair ``values`` ``[6, 6]``."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 4), layout="constrained")
    held = np.zeros((len(COLOUR_NAMES), len(SHAPES)), dtype=bool)
    for c, s in heldout:
        held[COLOUR_NAMES.index(c), SHAPES.index(s)] = True
    if values is None:
        ax.imshow(held, cmap="Greys", vmin=0, vmax=1.6)
        for i in range(held.shape[0]):
            for j in range(held.shape[1]):
                ax.text(
                    j,
                    i,
                    "held out" if held[i, j] else "seen",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if held[i, j] else "black",
                )
    else:
        v = np.asarray(values, dtype=float)
        im = ax.imshow(v, cmap="viridis", vmin=0, vmax=1)
        plt.colorbar(im, ax=ax, label="accuracy (share)")
        for i in range(v.shape[0]):
            for j in range(v.shape[1]):
                ax.text(
                    j,
                    i,
                    f"{v[i, j]:.2f}" + ("*" if held[i, j] else ""),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="black" if v[i, j] > 0.5 else "white",
                )
    ax.set_xticks(range(len(SHAPES)), SHAPES, rotation=40, fontsize=8)
    ax.set_yticks(range(len(COLOUR_NAMES)), COLOUR_NAMES, fontsize=8)
    ax.set_xlabel("shape")
    ax.set_ylabel("colour")
    ax.set_title(title, fontsize=9)
    return ax


def plot_similarity(
    sim: Tensor,
    images: Tensor,
    captions: Sequence[str],
    title: str = "cosine similarity of image i and caption j",
):
    """A similarity matrix with the images as a strip along the left edge and the captions along the bottom."""
    sim = sim.detach().float().cpu().numpy()
    n, m = sim.shape
    fig, (ax_img, ax) = plt.subplots(
        1,
        2,
        figsize=(0.5 * m + 3.2, 0.5 * n + 2.2),
        layout="constrained",
        width_ratios=[1, m],
        sharey=True,
    )
    strip = np.concatenate(
        [_to_hwc(images[i]) for i in range(n)], axis=0
    )  # [n * H, W, 3]
    ax_img.imshow(
        strip,
        extent=(0, 1, n - 0.5, -0.5),
        aspect="auto",
        interpolation="nearest",
    )
    ax_img.set_xticks([])
    ax_img.set_ylabel("image i")
    ax_img.set_yticks(range(n))
    im = ax.imshow(sim, cmap="magma", aspect="auto")
    fig.colorbar(im, ax=ax, label="cosine similarity", shrink=0.8)
    ax.set_xticks(range(m), captions, rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("caption j")
    ax.set_title(title, fontsize=9)
    return ax


def plot_bars(
    values: Mapping[str, Mapping[str, float]],
    *,
    ylabel: str,
    chance: float | None = None,
    ax=None,
    title: str | None = None,
):
    """Grouped bars: ``values[group][series]``, with an optional dashed chance line."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.4), layout="constrained")
    groups = list(values)
    series = list(dict.fromkeys(k for g in groups for k in values[g]))
    width = 0.8 / len(series)
    for k, name in enumerate(series):
        xs = np.arange(len(groups)) + (k - (len(series) - 1) / 2) * width
        ys = [values[g].get(name, np.nan) for g in groups]
        bars = ax.bar(xs, ys, width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    if chance is not None:
        ax.axhline(
            chance, ls="--", color="grey", lw=1, label=f"chance ({chance:.3f})"
        )
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.08)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def show_ranked(
    queries: Sequence[str],
    images: Tensor,
    scores: Tensor,
    k: int = 6,
    subtitle: Sequence[str] | None = None,
):
    """For each text query (a row), the ``k`` images with the highest score, best first."""
    scores = scores.detach().float().cpu()
    fig, axes = plt.subplots(
        len(queries),
        k,
        figsize=(1.3 * k + 1.6, 1.45 * len(queries)),
        squeeze=False,
        layout="constrained",
    )
    for r, q in enumerate(queries):
        top = scores[r].topk(k)
        for c in range(k):
            ax = axes[r, c]
            ax.imshow(_to_hwc(images[top.indices[c]]), interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            label = (
                f"{top.values[c]:.2f}"
                if subtitle is None
                else subtitle[int(top.indices[c])]
            )
            ax.set_title(label, fontsize=TITLE_POINTS)
        axes[r, 0].set_ylabel(
            q, rotation=0, ha="right", va="center", fontsize=TITLE_POINTS
        )
    return axes


def show_word_maps(
    images: Tensor,
    words: Sequence[Sequence[str]],
    maps: Tensor,
    columns: Sequence[int],
):
    """For each image (a row): the image, then the attention map of each chosen word position over the image."""
    n = len(images)
    fig, axes = plt.subplots(
        n,
        1 + len(columns),
        figsize=(1.6 * (1 + len(columns)), 1.7 * n),
        squeeze=False,
        layout="constrained",
    )
    for r in range(n):
        axes[r, 0].imshow(_to_hwc(images[r]), interpolation="nearest")
        axes[r, 0].axis("off")
        axes[r, 0].set_title(
            wrap_words(
                " ".join(w for w in words[r] if not w.startswith("[")), 18
            ),
            fontsize=TITLE_POINTS,
        )
        for c, pos in enumerate(columns):
            overlay_heatmap(
                images[r],
                maps[r, pos],
                ax=axes[r, 1 + c],
                title=f"'{words[r][pos]}'",
            )
    return axes


def show_captions(
    images: Tensor,
    captions: Sequence[str],
    truth: Sequence[str] | None = None,
    ncols: int = 6,
    marks: Sequence[bool] | None = None,
):
    """Images with generated captions under them (and the true caption, when given); ``marks`` tick right ones."""
    n = len(images)
    ncols = min(
        ncols, n, 4
    )  # four captions across keep 9-point text legible in the text column
    nrows = -(-n // ncols)
    texts = []
    for i in range(n):
        text = captions[i]
        if marks is not None:
            text = ("✓ " if marks[i] else "✗ ") + text
        if truth is not None:
            text += f"\n(true: {truth[i]})"
        texts.append(wrap_words(text, 30))
    lines = max(t.count("\n") + 1 for t in texts)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(2.6 * ncols, nrows * (1.8 + lines * TITLE_POINTS * 1.3 / 72)),
        squeeze=False,
        layout="constrained",
    )
    for i, ax in enumerate(axes.reshape(-1)):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(_to_hwc(images[i]), interpolation="nearest")
        ax.set_title(texts[i], fontsize=TITLE_POINTS)
    return axes
