"""Plotting helpers used by every chapter, so a reader learns them once.

All functions draw on a Matplotlib ``Axes`` (created if not given) and return it; axis
labels always carry units where there are any.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


def _ax(ax=None, figsize=(5, 3.5)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Moving average over ``window`` steps (same length; the first values average what exists)."""
    v = np.asarray(values, dtype=float)
    if window <= 1 or len(v) == 0:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, len(v) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def plot_curves(
    curves: Mapping[
        str, Sequence[float] | tuple[Sequence[float], Sequence[float]]
    ],
    *,
    xlabel: str = "epoch",
    ylabel: str = "loss",
    title: str | None = None,
    logy: bool = False,
    smooth_window: int = 1,
    ax=None,
    **line_kw,
):
    """One line per named curve; a curve is ``y`` (x = 1, 2, ...) or a pair ``(x, y)``."""
    ax = _ax(ax)
    for name, c in curves.items():
        if isinstance(c, tuple) and len(c) == 2:
            x, y = _np(c[0]), _np(c[1])
        else:
            y = _np(c)
            x = np.arange(1, len(y) + 1)
        ax.plot(x, smooth(y, smooth_window), label=name, **line_kw)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    if len(curves) > 3:
        # many lines fill the plot wherever a legend goes: put it beside the axes instead
        ax.legend(
            fontsize="small",
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            borderaxespad=0.0,
        )
    elif len(curves) > 1 or any(curves):
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return ax


def plot_history(
    history,
    keys: Sequence[str] = ("train_loss", "val_loss"),
    *,
    ylabel: str | None = None,
    title: str | None = None,
    ax=None,
    logy: bool = False,
):
    """Per-epoch curves of a :class:`vnotes.train.History` (keys missing from it are skipped)."""
    curves = {k: history.epoch[k] for k in keys if k in history.epoch}
    if not curves:
        raise KeyError(
            f"none of {list(keys)} is in the history; it has {sorted(history.epoch)}"
        )
    return plot_curves(
        curves,
        xlabel="epoch",
        ylabel=ylabel or " / ".join(curves),
        title=title,
        ax=ax,
        logy=logy,
    )


def _to_hwc(img: Any) -> np.ndarray:
    a = _np(img)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = np.transpose(a, (1, 2, 0))
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    return np.clip(a, 0, 1)


# text in figures: at least this size (points), and at most this many titled images per row, so a
# title stays readable after the page scales the figure down to its text column
TITLE_POINTS = 9
TITLED_COLUMNS = 8
# a one-row table wider than this many columns is shown as setting | value lines
TRANSPOSE_AFTER = 4


def wrap_words(text: str, width: int) -> str:
    """Break ``text`` into lines of at most ``width`` characters at spaces (existing line breaks kept)."""
    if width < 1:
        raise ValueError(f"width={width} must be at least 1 character")
    out = []
    for part in text.split("\n"):
        line = ""
        for w in part.split():
            if line and len(line) + 1 + len(w) > width:
                out.append(line)
                line = w
            else:
                line = f"{line} {w}".strip()
        out.append(line)
    return "\n".join(out)


def show_images(
    images: Any,
    *,
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    scale: float = 1.2,
    cmap: str = "gray",
    suptitle: str | None = None,
    axes=None,
):
    """A grid of images (``[N, C, H, W]`` or ``[N, H, W]``, values in [0, 1]) with optional titles.

    With a title per image, a row holds at most ``TITLED_COLUMNS`` images and each title is wrapped to
    its image's width at ``TITLE_POINTS``, so it stays legible once the page scales the figure to its
    text column. Titles given only to each row's first image (the others empty) label the rows, and
    the grid keeps its ``ncols``.
    """
    images = list(images)
    n = len(images)
    if n == 0:
        raise ValueError("show_images got no images")
    if titles is not None and len(titles) < n:
        raise ValueError(f"got {len(titles)} titles for {n} images")
    # titles only on each row's first image label the rows: the grid keeps its columns
    row_labels = titles is not None and not any(
        titles[i] for i in range(n) if i % min(ncols, n) != 0
    )
    per_image = titles is not None and not row_labels
    ncols = min(ncols, n, TITLED_COLUMNS if per_image else ncols)
    nrows = -(-n // ncols)
    lines = 1 if row_labels else 0
    if per_image:
        scale = max(scale, 1.4)
        # about 0.65 em per character (DejaVu Sans, with a margin): what fits across one image
        width = max(8, int(scale * 72 / (0.65 * TITLE_POINTS)))
        titles = [wrap_words(str(t), width) for t in titles[:n]]
        lines = max(t.count("\n") + 1 for t in titles)
    if axes is None:
        fig, axes = plt.subplots(
            nrows,
            ncols,
            figsize=(
                scale * ncols,
                nrows * (scale + lines * TITLE_POINTS * 1.3 / 72),
            ),
            squeeze=False,
            layout="constrained",
        )
    axes = np.asarray(axes).reshape(-1)
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i < n:
            ax.imshow(
                _to_hwc(images[i]),
                cmap=cmap,
                vmin=0,
                vmax=1,
                interpolation="nearest",
            )
            if titles is not None and titles[i]:
                ax.set_title(
                    titles[i],
                    fontsize=TITLE_POINTS,
                    loc="left" if row_labels else "center",
                )
    if suptitle:
        axes[0].figure.suptitle(suptitle)
    return axes


def overlay_heatmap(
    image: Any,
    heat: Any,
    *,
    ax=None,
    alpha: float = 0.55,
    cmap: str = "jet",
    title: str | None = None,
):
    """Draw ``heat`` (any 2-D size, upsampled to the image) over ``image`` -- for attention and saliency maps."""
    ax = _ax(ax, figsize=(3, 3))
    img = _to_hwc(image)
    h = _np(heat).astype(float)
    if h.ndim != 2:
        raise ValueError(f"heat must be 2-D, got shape {h.shape}")
    H, W = img.shape[:2]
    h_t = torch.from_numpy(h)[None, None].float()
    h = torch.nn.functional.interpolate(
        h_t, size=(H, W), mode="bilinear", align_corners=False
    )[0, 0].numpy()
    h = (h - h.min()) / (h.max() - h.min() + 1e-12)
    ax.imshow(img, cmap="gray", interpolation="nearest")
    ax.imshow(h, cmap=cmap, alpha=alpha, interpolation="bilinear")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=TITLE_POINTS)
    return ax


def scatter_2d(
    points: Any,
    labels: Any = None,
    *,
    class_names: Sequence[str] | None = None,
    method: str = "pca",
    ax=None,
    title: str | None = None,
    s: float = 8,
):
    """Scatter of embeddings reduced to 2-D by ``pca`` (or ``tsne``), coloured by class."""
    x = _np(points).reshape(len(points), -1)
    if x.shape[1] > 2:
        if method == "pca":
            from sklearn.decomposition import PCA

            x = PCA(n_components=2, random_state=0).fit_transform(x)
        elif method == "tsne":
            from sklearn.manifold import TSNE

            # 500 iterations instead of scikit-learn's 1000: a 500-point map took 3.9 -> 2.2 s on the 2-core
            # AVX2 EPYC, and the book draws about fifteen of them (chapters 5 and 6); the clusters are already
            # settled by then. The argument was called n_iter before scikit-learn 1.5.
            steps = (
                "max_iter"
                if "max_iter" in inspect.signature(TSNE).parameters
                else "n_iter"
            )
            x = TSNE(
                n_components=2, random_state=0, init="pca", **{steps: 500}
            ).fit_transform(x)
        else:
            raise ValueError(
                f"method={method!r} is unknown; allowed: 'pca', 'tsne'"
            )
    ax = _ax(ax, figsize=(4.5, 4))
    if labels is None:
        ax.scatter(x[:, 0], x[:, 1], s=s)
    else:
        lab = _np(labels).astype(int)
        for c in np.unique(lab):
            name = class_names[c] if class_names is not None else str(c)
            ax.scatter(x[lab == c, 0], x[lab == c, 1], s=s, label=name)
        # below the axes, off the points (a row of panels keeps its widths)
        ax.legend(
            fontsize="small",
            markerscale=2,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.14),
            ncols=3,
            frameon=False,
        )
    ax.set_xlabel(f"{method} 1")
    ax.set_ylabel(f"{method} 2")
    if title:
        ax.set_title(title)
    return ax


def table_markdown(
    rows: Sequence[Mapping[str, Any]],
    *,
    floatfmt: str = ".3f",
    title: str | None = None,
) -> str:
    """A list of dicts as a Markdown table (columns in order of first appearance), with an optional bold title.

    A single row with more than ``TRANSPOSE_AFTER`` columns (a settings table) is turned on its side,
    one ``setting | value`` line per column, so it fits the text column instead of scrolling.
    """
    if not rows:
        raise ValueError("show_table got no rows")
    cols = list(rows[0].keys())
    for r in rows[1:]:
        cols += [k for k in r if k not in cols]
    if len(rows) == 1 and len(cols) > TRANSPOSE_AFTER:
        rows = [{"setting": c, "value": rows[0].get(c)} for c in cols]
        cols = ["setting", "value"]

    def fmt(v):
        if isinstance(v, float):
            return format(v, floatfmt)
        return "" if v is None else str(v).replace("|", "\\|")

    head = [
        str(c).replace("|", "\\|") for c in cols
    ]  # a literal bar (|x|) would split a column
    lines = ([f"**{title}**", ""] if title else []) + [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(cols),
    ]
    lines += [
        "| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows
    ]
    return "\n".join(lines)


BUDGET_KEYS = ("training steps", "images seen")
SHORT = {
    "training steps": "steps",
    "images seen": "images",
}  # in the marks, kept short: tables are wide


def budget_columns(
    *,
    steps: int,
    batch_size: int | None = None,
    images_seen: int | None = None,
    parameters: int | None = None,
) -> dict[str, int]:
    """The columns that state one row's training budget in a side-by-side table: optimizer steps, training
    images seen (given, or steps x batch size; each augmented view of an image counts once) and, if given,
    parameters. Spread them into a row (``dict(model=..., **budget_columns(...), accuracy=...)``), then call
    :func:`mark_budgets` on the rows."""
    if images_seen is None:
        if batch_size is None or batch_size < 1:
            raise ValueError(
                f"batch_size={batch_size!r} must be >= 1 (or give images_seen)"
            )
        images_seen = steps * batch_size
    if steps < 0 or images_seen < 0:
        raise ValueError(
            f"steps={steps!r} and images_seen={images_seen!r} must be >= 0"
        )
    out = {"training steps": int(steps), "images seen": int(images_seen)}
    if parameters is not None:
        out["parameters"] = int(parameters)
    return out


def mark_budgets(
    rows: Sequence[Mapping[str, Any]], keys: Sequence[str] = BUDGET_KEYS
) -> list[dict]:
    """Copies of ``rows`` with a column ``equal budget``: "yes" for the rows whose ``keys`` (steps and images
    seen) equal the table's most common budget, else how they differ (e.g. "no: 2.5× steps"). Rows without
    the keys (a reference row such as the real data) get no mark; when budgets tie for most common, the first
    row's wins. Parameters are left out of the comparison:
    they are what a table of architectures compares."""
    budgets = [
        tuple(r[k] for k in keys) if all(k in r for k in keys) else None
        for r in rows
    ]
    present = [b for b in budgets if b is not None]
    if not present:
        raise ValueError(f"no row has the budget columns {list(keys)}")
    common = max(
        present, key=present.count
    )  # ties: the first such row in the table
    out = []
    for r, b in zip(rows, budgets):
        row = dict(r)
        if b is None:
            pass  # a reference row: left blank
        elif b == common:
            row["equal budget"] = "yes"
        else:
            parts = [
                f"{v / c:.2g}× {SHORT.get(k, k)}" if c else f"{v:,} {k}"
                for k, v, c in zip(keys, b, common)
                if v != c
            ]
            row["equal budget"] = "no: " + ", ".join(parts)
        out.append(row)
    return out


def show_table(
    rows: Sequence[Mapping[str, Any]],
    *,
    floatfmt: str = ".3f",
    title: str | None = None,
) -> None:
    """Display a list of dicts as a table (rendered as HTML in the book); returns nothing, so a cell that
    ends with it shows the table once. :func:`table_markdown` gives the Markdown text. Rows that state a
    training budget (:func:`budget_columns`) are marked equal or not by :func:`mark_budgets`."""
    budgeted = [r for r in rows if all(k in r for k in BUDGET_KEYS)]
    if len(budgeted) > 1 and not any("equal budget" in r for r in rows):
        rows = mark_budgets(
            rows
        )  # rows that state a budget say whether it is the table's common one
    md = table_markdown(rows, floatfmt=floatfmt, title=title)
    try:
        from IPython.display import Markdown, display

        display(Markdown(md))
    except ImportError:  # plain Python: print it
        print(md)


def show_source(
    obj: Callable | type, *, lines: tuple[int, int] | None = None
) -> None:
    """Show the source of a vnotes function or class, highlighted, so the page teaches the code it imports."""
    src = inspect.getsource(obj)
    if lines is not None:
        src = "\n".join(src.splitlines()[lines[0] : lines[1]])
    where = f"{obj.__module__}.{obj.__qualname__}"
    try:
        from IPython.display import Markdown, display

        display(Markdown(f"Source of `{where}`:\n\n```python\n{src}\n```"))
    except ImportError:
        print(f"# {where}\n{src}")
