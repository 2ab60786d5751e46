"""Region features for the detector-based vision--language models of chapter 7j: boxes, RoIAlign, object tags.

ViLBERT, LXMERT, UNITER and OSCAR do not see pixels. They see the output of an object detector:
for each of ~36 boxes, a feature vector pooled from a CNN's feature map inside the box (Anderson
et al., 2018, "bottom-up attention", a Faster R-CNN trained on Visual Genome), the box's geometry,
and -- for OSCAR -- the detector's class word ("dog", "couch").

Our stand-in is honest about what it is:

* **an oracle detector** -- the boxes are the toy world's ground-truth boxes. A real detector
  misses objects and proposes wrong ones; ours never does, which favours the region models.
* **RoIAlign** (He et al., 2017) over a *frozen* CNN feature map: the ResNet image tower of the
  chapter's CLIP (notebook 7a), pooled to one vector per box by :func:`torchvision.ops.roi_align`.
* **geometry** -- ``(x1, y1, x2, y2, area)`` divided by the image size, ViLBERT's 5-d location.
* **object tags** -- the class word (a shape) a linear classifier on the region feature predicts,
  as OSCAR takes the detector's class labels. Its class distribution is also the target of
  masked-region classification (ViLBERT, UNITER, LXMERT).

The module also builds the pre-training pairs of multi-object scenes ("a small red circle left of
a large blue square") with one *hard* negative caption each (one attribute of one object changed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align

from ..data import SHAPES, SIZES, Scenes, Vocabulary, make_scenes
from ..data.toyworld import COLOURS, describe_object, relation
from .data import (
    HELDOUT_COMBOS,
    QuestionAnswers,
    normalize_pixels,
    world_config,
)

GEOMETRY_DIM = 5  # x1, y1, x2, y2, area -- all divided by the image size (ViLBERT, Lu et al., 2019)
TAG_WORDS: tuple[str, ...] = (
    SHAPES  # the detector's classes: the toy world's shapes
)
WHOLE_IMAGE = (
    0.0,
    0.0,
    1.0,
    1.0,
    1.0,
)  # the geometry of ViLBERT's [IMG] token


# ----------------------------------------------------------------------------- geometry and RoIAlign
def box_geometry(boxes: Tensor, image_size: int) -> Tensor:
    """``[..., 4]`` pixel boxes ``(x1, y1, x2, y2)`` -> ``[..., 5]`` = (x1/W, y1/H, x2/W, y2/H, area/(W H))."""
    if boxes.shape[-1] != 4:
        raise ValueError(
            f"boxes must end in 4 coordinates (x1, y1, x2, y2); got shape {tuple(boxes.shape)}"
        )
    b = boxes.float() / image_size
    area = (b[..., 2] - b[..., 0]).clamp(min=0) * (
        b[..., 3] - b[..., 1]
    ).clamp(min=0)
    return torch.cat([b, area[..., None]], -1)


def roi_features(
    fmap: Tensor,
    boxes: Tensor,
    valid: Tensor,
    spatial_scale: float,
    output_size: int = 2,
    sampling_ratio: int = 2,
) -> Tensor:
    """One feature vector per box: RoIAlign (He et al., 2017) then the mean over its output grid.

    ``fmap`` ``[B, C, h, w]``; ``boxes`` ``[B, R, 4]`` in pixels; ``valid`` ``[B, R]`` marks real boxes.
    ``spatial_scale`` maps pixels to feature cells (1/stride). Returns ``[B, R, C]``, zero where no box.
    RoIAlign samples the map bilinearly at ``sampling_ratio``^2 points in each of the
    ``output_size``^2 bins, with no rounding of the box to the cell grid (``aligned=True``).
    """
    B, R, _ = boxes.shape
    if fmap.shape[0] != B or valid.shape != (B, R):
        raise ValueError(
            f"fmap {tuple(fmap.shape)}, boxes {tuple(boxes.shape)} and valid {tuple(valid.shape)} "
            "must agree on the batch and box counts"
        )
    out = fmap.new_zeros(B, R, fmap.shape[1])
    if not valid.any():
        return out
    b_idx, r_idx = valid.nonzero(as_tuple=True)
    # torchvision's RoI format: [K, 5] = (image index, x1, y1, x2, y2)
    rois = torch.cat(
        [b_idx[:, None].to(fmap.dtype), boxes[b_idx, r_idx].to(fmap.dtype)], 1
    )
    pooled = roi_align(
        fmap,
        rois,
        output_size,
        spatial_scale=spatial_scale,
        sampling_ratio=sampling_ratio,
        aligned=True,
    )  # [K, C, s, s]
    out[b_idx, r_idx] = pooled.mean((2, 3))
    return out


# ----------------------------------------------------------------------------- the detector's output
@dataclass
class Regions:
    """What the detector hands the vision--language model, per image: up to R boxes.

    ``features`` ``[N, R, C]``, ``geometry`` ``[N, R, 5]``, ``boxes`` ``[N, R, 4]`` (pixels),
    ``pad`` ``[N, R]`` (True = no box: the key-padding convention of :mod:`vnotes.transformer`),
    ``class_probs`` ``[N, R, 6]`` (the detector's shape distribution), ``tags`` ``[N, R]`` (vocabulary
    ids of the predicted class words, [PAD] where no box), ``labels`` ``[N, R]`` (true shapes, -1 pad).
    """

    features: Tensor
    geometry: Tensor
    boxes: Tensor
    pad: Tensor
    class_probs: Tensor
    tags: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return self.features.shape[0]

    def model_inputs(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(features, geometry, pad, tags): what every region model's ``forward`` takes before the words."""
        return self.features, self.geometry, self.pad, self.tags

    def subset(self, index: Tensor) -> "Regions":
        return Regions(
            *(
                getattr(self, f)[index]
                for f in (
                    "features",
                    "geometry",
                    "boxes",
                    "pad",
                    "class_probs",
                    "tags",
                    "labels",
                )
            )
        )

    def pad_to(self, n_regions: int, pad_id: int) -> "Regions":
        """The same detections with room for ``n_regions`` boxes per image (extra slots are padding, tag ``pad_id``).

        A model trained with R box slots should see R slots at test time too: OSCAR's token sequence
        [words; tags; [SEP]] puts its [SEP] after the R tag slots, so fewer slots would move it.
        """
        extra = n_regions - self.features.shape[1]
        if extra < 0:
            raise ValueError(
                f"n_regions={n_regions} is fewer than the {self.features.shape[1]} slots already there"
            )
        if extra == 0:
            return self
        grow = lambda t, value: torch.cat(
            [t, t.new_full((t.shape[0], extra, *t.shape[2:]), value)], 1
        )
        return Regions(
            grow(self.features, 0.0),
            grow(self.geometry, 0.0),
            grow(self.boxes, 0),
            grow(self.pad, True),
            grow(self.class_probs, 0.0),
            grow(self.tags, pad_id),
            grow(self.labels, -1),
        )

    def tag_accuracy(self) -> float:
        """Share of boxes whose predicted class word is the true shape."""
        real = ~self.pad
        return (
            (self.class_probs.argmax(-1)[real] == self.labels[real])
            .float()
            .mean()
            .item()
        )


class OracleDetector(nn.Module):
    """A stand-in for the Faster R-CNN of "bottom-up attention" (Anderson et al., 2018): ground-truth boxes
    (an *oracle*: no missed or invented objects), RoIAlign features from a frozen CNN, and a linear class head.

    ``backbone`` must offer ``forward_features(x, pool=False) -> [B, C, h, w]`` (the chapter-3 CNNs do).
    """

    def __init__(
        self, backbone: nn.Module, image_size: int = 32, output_size: int = 2
    ):
        super().__init__()
        if not hasattr(backbone, "forward_features"):
            raise TypeError(
                f"{type(backbone).__name__} needs forward_features(x, pool=False)"
            )
        self.backbone = backbone.eval()
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.image_size, self.output_size = image_size, output_size
        with torch.no_grad():
            fmap = self.backbone.forward_features(
                torch.zeros(1, 3, image_size, image_size), pool=False
            )
        self.feature_dim, self.grid = fmap.shape[1], fmap.shape[-1]
        if image_size % self.grid:
            raise ValueError(
                f"a {self.grid} x {self.grid} feature map does not tile {image_size} pixels"
            )
        self.stride = image_size // self.grid
        self.classifier = nn.Linear(
            self.feature_dim, len(TAG_WORDS)
        )  # the detector's class head

    def train(self, mode: bool = True) -> "OracleDetector":
        super().train(mode)
        self.backbone.eval()  # frozen: its BatchNorm statistics never move
        return self

    @torch.no_grad()
    def region_features(
        self,
        images: Tensor,
        boxes: Tensor,
        valid: Tensor,
        batch_size: int = 512,
    ) -> Tensor:
        """``[N, R, C]`` RoIAlign features of ``boxes`` on the frozen feature map, computed in chunks."""
        out = []
        for i in range(0, len(images), batch_size):
            fmap = self.backbone.forward_features(
                normalize_pixels(images[i : i + batch_size]), pool=False
            )
            out.append(
                roi_features(
                    fmap,
                    boxes[i : i + batch_size],
                    valid[i : i + batch_size],
                    1.0 / self.stride,
                    self.output_size,
                )
            )
        return torch.cat(out)

    @torch.no_grad()
    def detect(
        self, images: Tensor, scenes: Scenes, vocab: Vocabulary
    ) -> Regions:
        """Boxes from ``scenes`` (the oracle), features from the frozen CNN, class words from the head."""
        if len(images) != len(scenes):
            raise ValueError(f"{len(images)} images for {len(scenes)} scenes")
        valid = scenes.shape >= 0  # [N, R]
        boxes = scenes.boxes.clamp(min=0)
        feats = self.region_features(images, boxes, valid)
        probs = F.softmax(self.classifier(feats), -1) * valid[..., None]
        tag_ids = torch.tensor([vocab.stoi[w] for w in TAG_WORDS])
        tags = torch.where(
            valid,
            tag_ids[probs.argmax(-1)],
            torch.full_like(valid, vocab.pad, dtype=torch.long),
        )
        return Regions(
            feats,
            box_geometry(boxes, self.image_size) * valid[..., None],
            boxes,
            ~valid,
            probs,
            tags,
            scenes.shape.clone(),
        )

    def fit_classifier(
        self,
        images: Tensor,
        scenes: Scenes,
        steps: int = 300,
        lr: float = 0.05,
        weight_decay: float = 1e-4,
    ) -> list[float]:
        """Train the class head (softmax regression on frozen RoI features) on labelled boxes; returns the losses."""
        valid = scenes.shape >= 0
        feats = self.region_features(images, scenes.boxes.clamp(min=0), valid)[
            valid
        ]  # [K, C]
        labels = scenes.shape[valid]
        opt = torch.optim.Adam(
            self.classifier.parameters(), lr=lr, weight_decay=weight_decay
        )
        losses = []
        for _ in range(steps):
            loss = F.cross_entropy(self.classifier(feats), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses


# ----------------------------------------------------------------------------- pre-training pairs
@dataclass
class RegionPairs:
    """Scenes of one or two objects with their captions: ``tokens`` ``[N, L]`` the true caption,
    ``hard_tokens`` ``[N, L]`` the same caption with one attribute of one object changed (always false)."""

    images: Tensor
    tokens: Tensor
    hard_tokens: Tensor
    captions: list[str]
    hard_captions: list[str]
    scenes: Scenes = field(repr=False)

    def __len__(self) -> int:
        return self.images.shape[0]


def _scene_caption(
    colour: Sequence[int],
    shape: Sequence[int],
    size: Sequence[int],
    rel: str | None,
) -> str:
    parts = [describe_object(c, s, z) for c, s, z in zip(colour, shape, size)]
    return parts[0] if rel is None else f"{parts[0]} {rel} {parts[1]}"


def hard_negative_caption(
    scenes: Scenes, i: int, rng: np.random.Generator
) -> str:
    """Scene ``i``'s caption with one attribute (colour, shape or size) of one object changed.

    A new (colour, shape) pair stays among the world's allowed combinations, so held-out pairs
    never appear, not even in negatives.
    """
    k = int(scenes.n_objects[i])
    if k > 2:
        raise ValueError(
            f"scene {i} has {k} objects; captions with relations cover one or two"
        )
    colour = scenes.colour[i, :k].tolist()
    shape = scenes.shape[i, :k].tolist()
    size = scenes.size[i, :k].tolist()
    rel = None
    if k == 2:
        dx, dy = (scenes.centers[i, 0] - scenes.centers[i, 1]).tolist()
        rel = relation(dx, dy)
    allowed = set(map(tuple, scenes.config.allowed_combos()))
    truth = _scene_caption(colour, shape, size, rel)
    while True:
        c, s, z = list(colour), list(shape), list(size)
        j = int(rng.integers(k))
        which = int(rng.integers(3))
        if which == 0:
            c[j] = int(rng.integers(len(COLOURS)))
        elif which == 1:
            s[j] = int(rng.integers(len(SHAPES)))
        else:
            z[j] = 1 - z[j]
        if (c[j], s[j]) in allowed:
            text = _scene_caption(c, s, z, rel)
            if text != truth:
                return text


def make_region_pairs(
    n: int,
    *,
    seed: int = 0,
    split: str = "train",
    subset: str = "seen",
    max_objects: int = 2,
    max_len: int = 14,
    vocab: Vocabulary | None = None,
) -> RegionPairs:
    """``n`` scenes of 1..``max_objects`` objects (held-out colour--shape pairs excluded for ``seen``), captioned
    ``[BOS] a small red circle left of a large blue square [EOS]``, each with one hard negative caption."""
    from .data import caption_vocabulary

    vocab = vocab or caption_vocabulary()
    if not 1 <= max_objects <= 2:
        raise ValueError(
            f"max_objects={max_objects} must be 1 or 2 (captions relate at most two objects)"
        )
    scenes = make_scenes(
        n,
        seed=seed,
        split=split,
        config=world_config(subset, HELDOUT_COMBOS, max_objects),
    )
    rng = np.random.default_rng(
        [seed, 17, {"train": 0, "val": 1, "test": 2}[split]]
    )
    hard = [hard_negative_caption(scenes, i, rng) for i in range(n)]
    longest = max(len(vocab.split(t)) for t in scenes.captions) + 2
    if longest > max_len:
        raise ValueError(
            f"max_len={max_len} cuts captions short; the longest needs {longest}"
        )
    return RegionPairs(
        scenes.images,
        vocab.encode_batch(scenes.captions, max_len, bos=True, eos=True),
        vocab.encode_batch(hard, max_len, bos=True, eos=True),
        list(scenes.captions),
        hard,
        scenes,
    )


# ----------------------------------------------------------------------------- the chapter's questions, with boxes
def qa_scenes(
    qa: QuestionAnswers,
    n: int,
    *,
    seed: int = 0,
    split: str = "train",
    subset: str = "all",
    max_objects: int = 2,
) -> Scenes:
    """The scenes (with boxes) behind ``make_qa(n, seed=seed, split=split, ...)``, which keeps only the images.

    The scenes are drawn again exactly as :func:`vnotes.multimodal.data.make_qa` draws them (with its
    spares) and matched to the questions' images pixel for pixel; a mismatch raises rather than
    hand a model the wrong boxes.
    """
    cfg = world_config(subset, HELDOUT_COMBOS, max_objects=max_objects)
    scenes = make_scenes(n + n // 8 + 8, seed=seed, split=split, config=cfg)
    keep, j = [], 0
    for i in range(len(scenes)):
        if j < len(qa) and torch.equal(scenes.images[i], qa.images[j]):
            keep.append(i)
            j += 1
    if j != len(qa):
        raise RuntimeError(
            f"only {j} of {len(qa)} question images were found among the regenerated scenes; "
            "make_qa's sampling has changed -- update qa_scenes to match it"
        )
    return scenes.subset(keep)


def answer_words() -> list[str]:
    """The closed answer set of the chapter's questions: colours, shapes and sizes (14 words)."""
    return [*COLOURS, *SHAPES, *SIZES]


def answer_index(answer_ids: Tensor, vocab: Vocabulary) -> Tensor:
    """Vocabulary ids of answers -> indices into :func:`answer_words`."""
    lookup = {vocab.stoi[w]: k for k, w in enumerate(answer_words())}
    return torch.tensor([lookup[int(a)] for a in answer_ids])


def with_first_token(ids: Tensor, first: int) -> Tensor:
    """Prepend one token (``[BOS]``, which plays ``[CLS]`` in this chapter) to every row of ``ids``."""
    return torch.cat(
        [torch.full((ids.shape[0], 1), first, dtype=ids.dtype), ids], 1
    )


# ----------------------------------------------------------------------------- figures
def show_boxes(
    images: Tensor,
    regions: Regions,
    vocab: Vocabulary,
    titles: Sequence[str] | None = None,
    ncols: int = 6,
):
    """Images with the detector's boxes and predicted class words (the OSCAR tags) drawn on them."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    from ..plot import _to_hwc

    n = len(images)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(2.1 * ncols, 2.3 * nrows),
        squeeze=False,
        layout="constrained",
    )
    for i, ax in enumerate(axes.reshape(-1)):
        if i >= n:
            ax.axis("off")
            continue
        ax.imshow(
            _to_hwc(images[i]),
            interpolation="nearest",
            extent=(0, images.shape[-1], images.shape[-2], 0),
        )
        for r in (~regions.pad[i]).nonzero().flatten().tolist():
            x0, y0, x1, y1 = regions.boxes[i, r].tolist()
            ax.add_patch(
                Rectangle(
                    (x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.2, ec="white"
                )
            )
            ax.text(
                x0,
                y0 - 0.5,
                vocab.itos[int(regions.tags[i, r])],
                color="white",
                fontsize=6.5,
                va="bottom",
                bbox=dict(fc="black", alpha=0.6, pad=0.5, lw=0),
            )
        ax.set_xlabel("x (pixels)", fontsize=7)
        ax.set_ylabel("y (pixels)", fontsize=7)
        ax.tick_params(labelsize=6)
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
    return axes


def show_word_region_attention(
    images: Tensor,
    boxes: Tensor,
    region_pad: Tensor,
    words: Sequence[Sequence[str]],
    att: Tensor,
    columns: Sequence[Sequence[int]],
    row_labels: Sequence[str],
):
    """For each row (a model or an image), each chosen word: the image with every box shaded by the share of
    that word's region attention it gets (the number is printed on the box)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    from ..plot import _to_hwc

    n, k = len(images), max(len(c) for c in columns)
    fig, axes = plt.subplots(
        n, k, figsize=(2.0 * k, 2.15 * n), squeeze=False, layout="constrained"
    )
    cmap = plt.get_cmap("magma")
    for r in range(n):
        real = (~region_pad[r]).nonzero().flatten().tolist()
        for c in range(k):
            ax = axes[r, c]
            if c >= len(columns[r]):
                ax.axis("off")
                continue
            pos = columns[r][c]
            w = att[r, pos, real]
            w = w / w.sum().clamp(min=1e-12)
            ax.imshow(
                _to_hwc(images[r]),
                interpolation="nearest",
                extent=(0, images.shape[-1], images.shape[-2], 0),
            )
            for j, reg in enumerate(real):
                x0, y0, x1, y1 = boxes[r, reg].tolist()
                colour = cmap(0.25 + 0.75 * float(w[j]))
                ax.add_patch(
                    Rectangle(
                        (x0, y0),
                        x1 - x0,
                        y1 - y0,
                        fill=False,
                        lw=1 + 3 * float(w[j]),
                        ec=colour,
                    )
                )
                ax.text(
                    x0 + 0.5,
                    y1 - 0.5,
                    f"{float(w[j]):.2f}",
                    color="white",
                    fontsize=7,
                    bbox=dict(fc="black", alpha=0.6, pad=0.5, lw=0),
                )
            ax.set_title(f"'{words[r][pos]}'", fontsize=8)
            ax.set_xlabel("x (pixels)", fontsize=7)
            ax.tick_params(labelsize=6)
            if c == 0:
                ax.set_ylabel(f"{row_labels[r]}\ny (pixels)", fontsize=7)
    return axes
