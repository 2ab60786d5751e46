"""The book's toy world: procedural scenes of coloured shapes, with labels, captions and boxes.

Every chapter that needs images uses this generator, so a reader meets one world throughout:
the CNN chapter classifies its shapes, the ViT chapter looks where its objects are, the
contrastive chapter learns them without labels, the generative chapter draws them, the
multimodal chapter reads their captions ("a small red circle left of a large blue square"),
DETR finds their boxes and the video chapter watches them move.

Everything is deterministic given ``seed`` and ``split``; the three splits never share a
random stream. Attribute combinations can be held out (``exclude_combos``) so that zero-shot
claims are tested on colour-shape pairs a model never saw.

Rendering is vectorised with NumPy: each shape is a signed-distance test on the pixel grid
(circle: distance to the centre; convex polygons: the largest signed distance to an edge line;
cross and star: unions of two polygons), and edges are anti-aliased by a one-pixel ramp.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

import numpy as np
import torch

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross", "star")
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.15, 0.15),
    "green": (0.20, 0.75, 0.25),
    "blue": (0.20, 0.40, 0.95),
    "yellow": (0.95, 0.85, 0.15),
    "purple": (0.65, 0.30, 0.85),
    "cyan": (0.15, 0.80, 0.85),
}
SIZES: tuple[str, ...] = ("small", "large")
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
DIRECTIONS: tuple[str, ...] = ("right", "left", "down", "up")
SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
BACKGROUNDS: tuple[str, ...] = ("plain", "gradient")

# half-extent of an object as a fraction of the image side, per size word
_SIZE_RANGE = {"small": (0.11, 0.16), "large": (0.21, 0.28)}


@dataclass(frozen=True)
class WorldConfig:
    """How scenes are drawn. Change any field with ``dataclasses.replace`` or keyword overrides."""

    image_size: int = 32
    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = tuple(COLOURS)
    sizes: tuple[str, ...] = SIZES
    min_objects: int = 1
    max_objects: int = 1
    max_rotation: float = 15.0           # degrees of random rotation for polygons
    colour_jitter: float = 0.04          # std of per-object RGB jitter
    background: str = "plain"
    noise: float = 0.0                   # std of Gaussian pixel noise
    exclude_combos: tuple[tuple[str, str], ...] = ()   # (colour, shape) pairs never drawn
    only_combos: tuple[tuple[str, str], ...] = ()      # if set, only these (colour, shape) pairs

    def __post_init__(self) -> None:
        if self.image_size < 8:
            raise ValueError(f"image_size={self.image_size} is too small; use 8 or more pixels")
        for s in self.shapes:
            if s not in SHAPES:
                raise ValueError(f"shape {s!r} is unknown; allowed: {SHAPES}")
        for c in self.colours:
            if c not in COLOURS:
                raise ValueError(f"colour {c!r} is unknown; allowed: {tuple(COLOURS)}")
        for z in self.sizes:
            if z not in SIZES:
                raise ValueError(f"size {z!r} is unknown; allowed: {SIZES}")
        if not 1 <= self.min_objects <= self.max_objects <= 6:
            raise ValueError(f"need 1 <= min_objects <= max_objects <= 6, got {self.min_objects}, {self.max_objects}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background={self.background!r} is unknown; allowed: {BACKGROUNDS}")
        if self.noise < 0 or self.colour_jitter < 0:
            raise ValueError("noise and colour_jitter must be non-negative")
        for colour, shape in (*self.exclude_combos, *self.only_combos):
            if colour not in COLOURS or shape not in SHAPES:
                raise ValueError(f"combo ({colour!r}, {shape!r}) must be (colour, shape) from {tuple(COLOURS)} x {SHAPES}")
        if not self.allowed_combos():
            raise ValueError("exclude_combos/only_combos leave no (colour, shape) pair to draw")

    def allowed_combos(self) -> list[tuple[int, int]]:
        """(colour index, shape index) pairs that may be drawn, indices into COLOURS and SHAPES."""
        colour_ids = [list(COLOURS).index(c) for c in self.colours]
        shape_ids = [SHAPES.index(s) for s in self.shapes]
        excl = {(list(COLOURS).index(c), SHAPES.index(s)) for c, s in self.exclude_combos}
        only = {(list(COLOURS).index(c), SHAPES.index(s)) for c, s in self.only_combos}
        return [(c, s) for c in colour_ids for s in shape_ids
                if (c, s) not in excl and (not only or (c, s) in only)]


@dataclass
class Scenes:
    """A batch of scenes. Per-object tensors have shape ``[N, K]`` (K = max objects) with -1 where empty.

    ``shape``, ``colour`` and ``size`` index into :data:`SHAPES`, :data:`COLOURS` and :data:`SIZES`;
    ``boxes`` are ``(x0, y0, x1, y1)`` in pixels; ``images`` are float RGB in [0, 1], ``[N, 3, H, W]``.
    """

    images: torch.Tensor
    shape: torch.Tensor
    colour: torch.Tensor
    size: torch.Tensor
    boxes: torch.Tensor
    centers: torch.Tensor
    n_objects: torch.Tensor
    captions: list[str]
    config: WorldConfig = field(repr=False)
    coverage: np.ndarray | None = field(default=None, repr=False, compare=False)
    """Per-object pixel coverage ``[N, K, H, W]`` in [0, 1] from the renderer (None if not kept)."""

    def __len__(self) -> int:
        return self.images.shape[0]

    def labels(self, task: str = "shape") -> torch.Tensor:
        """Class label of the first object: ``shape``, ``colour``, ``size`` or ``colour_shape`` (colour*6+shape)."""
        if task == "shape":
            return self.shape[:, 0].clone()
        if task == "colour":
            return self.colour[:, 0].clone()
        if task == "size":
            return self.size[:, 0].clone()
        if task == "colour_shape":
            return self.colour[:, 0] * len(SHAPES) + self.shape[:, 0]
        raise ValueError(f"task={task!r} is unknown; allowed: shape, colour, size, colour_shape")

    @staticmethod
    def class_names(task: str = "shape") -> list[str]:
        """Names of the classes of :meth:`labels` for ``task``."""
        if task == "shape":
            return list(SHAPES)
        if task == "colour":
            return list(COLOURS)
        if task == "size":
            return list(SIZES)
        if task == "colour_shape":
            return [f"{c} {s}" for c in COLOURS for s in SHAPES]
        raise ValueError(f"task={task!r} is unknown; allowed: shape, colour, size, colour_shape")

    def subset(self, index: Sequence[int] | torch.Tensor | slice) -> "Scenes":
        idx = torch.arange(len(self))[index] if isinstance(index, slice) else torch.as_tensor(index)
        return Scenes(self.images[idx], self.shape[idx], self.colour[idx], self.size[idx], self.boxes[idx],
                      self.centers[idx], self.n_objects[idx], [self.captions[i] for i in idx.tolist()], self.config,
                      None if self.coverage is None else self.coverage[idx.numpy()])

    def object_masks(self, threshold: float = 0.5) -> torch.Tensor:
        """Boolean ``[N, H, W]`` masks of the pixels covered by any object (exact, from the renderer)."""
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold={threshold!r} must be in [0, 1)")
        if self.coverage is None:
            raise ValueError("these scenes carry no coverage maps (built by hand, not by make_scenes); "
                             "masks are only available for scenes rendered by make_scenes or their subsets")
        return torch.from_numpy(self.coverage.max(axis=1) > threshold)


# ----------------------------------------------------------------------------- geometry
def _polygon_coverage(xs: np.ndarray, ys: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of convex polygons. verts: [M, P, 2] counter-clockwise in image coords."""
    # signed distance of each pixel to each edge line; inside a convex polygon all are <= 0
    a = verts                                   # [M, P, 2]
    b = np.roll(verts, -1, axis=1)              # next vertex
    edge = b - a
    normal = np.stack([edge[..., 1], -edge[..., 0]], -1)            # outward for this winding
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-9
    px = xs[None, None] - a[..., 0][..., None, None]                # [M, P, H, W]
    py = ys[None, None] - a[..., 1][..., None, None]
    dist = px * normal[..., 0][..., None, None] + py * normal[..., 1][..., None, None]
    sdf = dist.max(axis=1)                                          # [M, H, W]
    return np.clip(0.5 - sdf, 0.0, 1.0)


def _regular(cx, cy, radius, angle, k, phase):
    """Vertices [M, k, 2] of regular k-gons, ordered so that the edge normals point outwards."""
    t = phase + angle[:, None] + np.arange(k)[None] * (2 * np.pi / k)
    return np.stack([cx[:, None] + radius[:, None] * np.cos(t), cy[:, None] + radius[:, None] * np.sin(t)], -1)


def _rotated(cx, cy, pts, angle):
    """Place template points [P, 2] (in units of the object's half-extent, pre-scaled) rotated by angle."""
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    x = pts[..., 0] * c - pts[..., 1] * s
    y = pts[..., 0] * s + pts[..., 1] * c
    return np.stack([cx[:, None] + x, cy[:, None] + y], -1)


def _coverage(shape_id: int, xs, ys, cx, cy, r, angle) -> np.ndarray:
    """Coverage [M, H, W] of M objects of one shape; r is the half-extent in pixels."""
    name = SHAPES[shape_id]
    if name == "circle":
        d = np.sqrt((xs[None] - cx[:, None, None]) ** 2 + (ys[None] - cy[:, None, None]) ** 2) - r[:, None, None]
        return np.clip(0.5 - d, 0.0, 1.0)
    if name == "square":
        return _polygon_coverage(xs, ys, _regular(cx, cy, r * 0.85 * np.sqrt(2), angle, 4, np.pi / 4))
    if name == "triangle":
        return _polygon_coverage(xs, ys, _regular(cx, cy, r * 1.15, angle, 3, -np.pi / 2))
    if name == "diamond":   # a rhombus, taller than wide, so rotation never turns it into a square
        tpl = np.array([[0.0, -1.0], [0.62, 0.0], [0.0, 1.0], [-0.62, 0.0]])
        return _polygon_coverage(xs, ys, _rotated(cx, cy, tpl[None] * r[:, None, None], angle))
    if name == "cross":     # union of a horizontal and a vertical bar
        w = 0.34
        wide = np.array([[-1.0, -w], [1.0, -w], [1.0, w], [-1.0, w]])
        tall = np.array([[-w, -1.0], [w, -1.0], [w, 1.0], [-w, 1.0]])
        h = _polygon_coverage(xs, ys, _rotated(cx, cy, wide[None] * r[:, None, None], angle))
        v = _polygon_coverage(xs, ys, _rotated(cx, cy, tall[None] * r[:, None, None], angle))
        return np.maximum(h, v)
    if name == "star":      # hexagram: union of an upward and a downward triangle
        up = _polygon_coverage(xs, ys, _regular(cx, cy, r * 1.1, angle, 3, -np.pi / 2))
        down = _polygon_coverage(xs, ys, _regular(cx, cy, r * 1.1, angle, 3, np.pi / 2))
        return np.maximum(up, down)
    raise AssertionError(name)


# ----------------------------------------------------------------------------- sampling
def _rng(seed: int, split: str, stream: int = 0) -> np.random.Generator:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is unknown; allowed: {tuple(SPLITS)}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    return np.random.default_rng([int(seed), SPLITS[split], stream])


def _sample_objects(n: int, cfg: WorldConfig, rng: np.random.Generator, margin: float = 0.0):
    """Attributes and non-overlapping positions for n scenes of up to K objects (arrays [n, K])."""
    K, S = cfg.max_objects, cfg.image_size
    combos = np.array(cfg.allowed_combos())
    size_ids = np.array([SIZES.index(z) for z in cfg.sizes])
    count = rng.integers(cfg.min_objects, cfg.max_objects + 1, size=n)
    pick = rng.integers(0, len(combos), size=(n, K))
    colour, shape = combos[pick, 0], combos[pick, 1]
    size = size_ids[rng.integers(0, len(size_ids), size=(n, K))]
    lo = np.array([_SIZE_RANGE[z][0] for z in SIZES])[size]
    hi = np.array([_SIZE_RANGE[z][1] for z in SIZES])[size]
    r = (lo + (hi - lo) * rng.random((n, K))) * S
    angle = np.deg2rad(rng.uniform(-cfg.max_rotation, cfg.max_rotation, size=(n, K)))
    cx = np.zeros((n, K))
    cy = np.zeros((n, K))
    for i in range(n):
        for k in range(count[i]):
            for attempt in range(60):
                if attempt == 30 and size[i, k] == SIZES.index("large") and "small" in cfg.sizes:
                    size[i, k] = SIZES.index("small")  # no room: shrink rather than overlap
                    r[i, k] = _SIZE_RANGE["small"][0] * S
                lo_c, hi_c = r[i, k] + 1 + margin, S - r[i, k] - 1 - margin
                x, y = rng.uniform(lo_c, max(hi_c, lo_c + 1e-3), size=2)
                if all((x - cx[i, j]) ** 2 + (y - cy[i, j]) ** 2 > (r[i, k] + r[i, j] + 1.5) ** 2 for j in range(k)):
                    break
            cx[i, k], cy[i, k] = x, y
    present = np.arange(K)[None] < count[:, None]
    return dict(count=count, present=present, colour=colour, shape=shape, size=size, r=r, angle=angle, cx=cx, cy=cy)


def _render(objs: dict, cfg: WorldConfig, rng: np.random.Generator, n_images: int):
    """Draw objects (arrays [n_images, K]) onto backgrounds; returns images [N,3,H,W] and coverage [N,K,H,W]."""
    S, K = cfg.image_size, objs["cx"].shape[1]
    ys, xs = np.mgrid[0:S, 0:S].astype(np.float32) + 0.5
    base = rng.uniform(0.05, 0.18, size=(n_images, 1, 1, 1)).astype(np.float32)
    img = np.broadcast_to(base, (n_images, 3, S, S)).copy()
    if cfg.background == "gradient":
        theta = rng.uniform(0, 2 * np.pi, size=n_images)
        ramp = (np.cos(theta)[:, None, None] * (xs - S / 2) + np.sin(theta)[:, None, None] * (ys - S / 2)) / S
        tint = rng.uniform(0.0, 0.25, size=(n_images, 3, 1, 1))
        img = img + tint * (ramp[:, None] + 0.5)
    rgb = np.array(list(COLOURS.values()), dtype=np.float32)[objs["colour"]]
    rgb = np.clip(rgb + rng.normal(0, cfg.colour_jitter, size=rgb.shape), 0, 1).astype(np.float32)
    cov = np.zeros((n_images, K, S, S), dtype=np.float32)
    chunk = 2048
    for k in range(K):
        for sid in range(len(SHAPES)):
            sel = np.nonzero(objs["present"][:, k] & (objs["shape"][:, k] == sid))[0]
            for start in range(0, len(sel), chunk):
                idx = sel[start:start + chunk]
                cov[idx, k] = _coverage(sid, xs, ys, objs["cx"][idx, k], objs["cy"][idx, k],
                                        objs["r"][idx, k], objs["angle"][idx, k])
        c = cov[:, k][:, None]
        img = img * (1 - c) + rgb[:, k][:, :, None, None] * c
    if cfg.noise > 0:
        img = img + rng.normal(0, cfg.noise, size=img.shape)
    return np.clip(img, 0, 1).astype(np.float32), cov


def _boxes(cov: np.ndarray, present: np.ndarray, threshold: float = 0.25) -> np.ndarray:
    """Tight (x0, y0, x1, y1) pixel boxes of each object's covered pixels; -1 where no object."""
    inside = cov > threshold                                  # [N, K, H, W]
    rows, cols = inside.any(axis=3), inside.any(axis=2)       # [N, K, H], [N, K, W]
    S = cov.shape[-1]
    y0 = rows.argmax(-1)
    y1 = S - rows[..., ::-1].argmax(-1)
    x0 = cols.argmax(-1)
    x1 = S - cols[..., ::-1].argmax(-1)
    boxes = np.stack([x0, y0, x1, y1], -1).astype(np.float32)
    boxes[~present] = -1
    return boxes


# ----------------------------------------------------------------------------- captions
def describe_object(colour: int, shape: int, size: int) -> str:
    """'a small red circle' for indices into COLOURS, SHAPES and SIZES."""
    return f"a {SIZES[size]} {list(COLOURS)[colour]} {SHAPES[shape]}"


def relation(dx: float, dy: float) -> str:
    """The word for where object A lies relative to B, given centre offsets A - B (image y points down)."""
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


def _caption(objs: dict, i: int) -> str:
    parts = [describe_object(objs["colour"][i, k], objs["shape"][i, k], objs["size"][i, k])
             for k in range(objs["count"][i])]
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        rel = relation(objs["cx"][i, 0] - objs["cx"][i, 1], objs["cy"][i, 0] - objs["cy"][i, 1])
        return f"{parts[0]} {rel} {parts[1]}"
    return ", ".join(parts[:-1]) + " and " + parts[-1]


# ----------------------------------------------------------------------------- public API
def make_scenes(n: int, *, seed: int = 0, split: str = "train", config: WorldConfig | None = None,
                **overrides) -> Scenes:
    """Generate ``n`` scenes deterministically from ``seed`` and ``split``.

    >>> s = make_scenes(4, seed=0, max_objects=2)
    >>> s.images.shape, s.captions[0]        # doctest: +SKIP
    (torch.Size([4, 3, 32, 32]), 'a large blue star left of a small red circle')
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n={n!r} must be a positive integer")
    cfg = replace(config or WorldConfig(), **overrides) if overrides else (config or WorldConfig())
    rng = _rng(seed, split)
    objs = _sample_objects(n, cfg, rng)
    images, cov = _render(objs, cfg, rng, n)
    present = objs["present"]

    def per_object(a):
        out = torch.from_numpy(np.asarray(a)).long()
        out[~torch.from_numpy(present)] = -1
        return out

    centers = torch.from_numpy(np.stack([objs["cx"], objs["cy"]], -1)).float()
    centers[~torch.from_numpy(present)] = -1
    scenes = Scenes(images=torch.from_numpy(images), shape=per_object(objs["shape"]),
                    colour=per_object(objs["colour"]), size=per_object(objs["size"]),
                    boxes=torch.from_numpy(_boxes(cov, present)), centers=centers,
                    n_objects=torch.from_numpy(objs["count"]).long(),
                    captions=[_caption(objs, i) for i in range(n)], config=cfg, coverage=cov)
    return scenes


@dataclass
class Clips:
    """Short videos ``[N, T, 3, H, W]`` of moving shapes; ``direction`` indexes :data:`DIRECTIONS`."""

    videos: torch.Tensor
    direction: torch.Tensor
    speed: torch.Tensor
    shape: torch.Tensor
    colour: torch.Tensor

    def __len__(self) -> int:
        return self.videos.shape[0]


def make_clips(n: int, *, frames: int = 8, seed: int = 0, split: str = "train",
               speed: tuple[float, float] = (1.0, 2.0), distractors: int = 0,
               config: WorldConfig | None = None, **overrides) -> Clips:
    """Clips where one object moves in a straight line (right, left, down or up) and
    ``distractors`` other objects stand still. A single frame cannot tell the direction; two can.
    """
    if frames < 2:
        raise ValueError(f"frames={frames} must be at least 2 for anything to move")
    if distractors < 0 or distractors > 4:
        raise ValueError(f"distractors={distractors} must lie in 0..4")
    cfg = replace(config or WorldConfig(), **overrides) if overrides else (config or WorldConfig())
    cfg = replace(cfg, min_objects=1 + distractors, max_objects=1 + distractors, sizes=("small",))
    rng = _rng(seed, split, stream=1)
    S = cfg.image_size
    direction = rng.integers(0, len(DIRECTIONS), size=n)
    step = rng.uniform(*speed, size=n)
    travel = step * (frames - 1)
    objs = _sample_objects(n, cfg, rng, margin=0.0)
    # place the mover so that its whole path stays inside the image
    r = objs["r"][:, 0]
    unit = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]], dtype=np.float64)[direction]
    start = np.empty((n, 2))
    for axis in range(2):
        u = unit[:, axis]
        lo_a = r + 1 + np.where(u < 0, travel, 0.0)
        hi_a = S - r - 1 - np.where(u > 0, travel, 0.0)
        start[:, axis] = lo_a + (hi_a - lo_a).clip(min=0) * rng.random(n)
    # every frame: copy the scene, move object 0 along its path
    T = frames
    tiled = {k: np.repeat(v, T, axis=0) for k, v in objs.items()}
    t = np.tile(np.arange(T), n)
    tiled["cx"][:, 0] = np.repeat(start[:, 0], T) + np.repeat(unit[:, 0] * step, T) * t
    tiled["cy"][:, 0] = np.repeat(start[:, 1], T) + np.repeat(unit[:, 1] * step, T) * t
    # the same background for all frames of a clip: render with a per-clip generator state
    images, _ = _render(tiled, replace(cfg, noise=0.0), _ClipRng(rng, T), n * T)
    if cfg.noise > 0:
        images = np.clip(images + rng.normal(0, cfg.noise, size=images.shape), 0, 1).astype(np.float32)
    videos = torch.from_numpy(images).view(n, T, 3, S, S)
    return Clips(videos=videos, direction=torch.from_numpy(direction).long(),
                 speed=torch.from_numpy(step).float(), shape=torch.from_numpy(objs["shape"][:, 0]).long(),
                 colour=torch.from_numpy(objs["colour"][:, 0]).long())


class _ClipRng:
    """Draws per-clip random numbers once and repeats them for every frame (same background, same jitter)."""

    def __init__(self, rng: np.random.Generator, frames: int):
        self.rng, self.frames = rng, frames

    def _repeat(self, fn, size):
        size = (size,) if isinstance(size, int) else tuple(size)
        per_clip = fn((size[0] // self.frames, *size[1:]))
        return np.repeat(per_clip, self.frames, axis=0)

    def uniform(self, low=0.0, high=1.0, size=None):
        return self._repeat(lambda s: self.rng.uniform(low, high, size=s), size)

    def normal(self, loc=0.0, scale=1.0, size=None):
        return self._repeat(lambda s: self.rng.normal(loc, scale, size=s), size)


# ----------------------------------------------------------------------------- tokenizer
SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[CLS]", "[SEP]", "[MASK]", "[BOS]", "[EOS]", "[UNK]")


class Vocabulary:
    """A word-level tokenizer for the toy world's captions (and a few question words).

    Special tokens come first, so ``[PAD]`` is 0. ``encode`` pads or truncates to ``length``.
    """

    def __init__(self, extra_words: Iterable[str] = ()):
        words = ["a", "and", ",", "of", "left", "right", "above", "below", *SIZES, *COLOURS, *SHAPES,
                 "what", "colour", "shape", "size", "is", "the", "?"]
        for w in extra_words:
            if w not in words:
                words.append(w)
        self.itos: list[str] = list(SPECIAL_TOKENS) + words
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def __getattr__(self, name: str) -> int:
        # vocab.pad, vocab.cls, vocab.mask ... -> ids of the special tokens
        token = f"[{name.upper()}]"
        if name.islower() and token in SPECIAL_TOKENS:
            return self.stoi[token]
        raise AttributeError(name)

    @staticmethod
    def split(text: str) -> list[str]:
        return text.replace(",", " , ").replace("?", " ? ").split()

    def encode(self, text: str, length: int | None = None, bos: bool = False, eos: bool = False,
               cls: bool = False) -> list[int]:
        ids = [self.stoi.get(w, self.stoi["[UNK]"]) for w in self.split(text)]
        if bos:
            ids = [self.stoi["[BOS]"]] + ids
        if cls:
            ids = [self.stoi["[CLS]"]] + ids
        if eos:
            ids = ids + [self.stoi["[EOS]"]]
        if length is not None:
            if length < 1:
                raise ValueError(f"length={length} must be positive")
            ids = (ids + [self.stoi["[PAD]"]] * length)[:length]
        return ids

    def encode_batch(self, texts: Sequence[str], length: int, **kw) -> torch.Tensor:
        """``[len(texts), length]`` long tensor of token ids, padded with ``[PAD]``."""
        return torch.tensor([self.encode(t, length, **kw) for t in texts], dtype=torch.long)

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        words = []
        for i in ids:
            w = self.itos[int(i)]
            if w == "[EOS]" and skip_special:
                break
            if skip_special and w in SPECIAL_TOKENS:
                continue
            words.append(w)
        return " ".join(words).replace(" ,", ",").replace(" ?", "?")
