"""Image--caption pairs, noisy captions and question--answer pairs from the toy world (chapter 7).

Everything the multimodal chapter reads comes from :func:`vnotes.data.make_scenes`: a scene of
coloured shapes and its caption ("a small red circle"). Three choices make the experiments honest:

* **held-out combinations** -- :data:`HELDOUT_COMBOS` are six (colour, shape) pairs that never occur
  in training. Each colour and each shape is held out exactly once, so every word is seen in
  training, only never together with its held-out partner. Zero-shot accuracy on these pairs
  measures composition, not memory.
* **noisy captions** -- ``make_pairs(..., noise=p)`` replaces a share ``p`` of the captions with the
  caption of a *different* random scene, the way alt-text on the web often describes something else.
  The clean caption is kept (``clean_tokens``) so experiments can score against the truth.
* **questions** -- :func:`make_qa` asks about scenes of one or two objects ("what colour is the
  circle ?"), only where the question names a unique object, so that each has one right answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..data import (
    COLOURS,
    SHAPES,
    SIZES,
    Scenes,
    Vocabulary,
    WorldConfig,
    make_scenes,
)

COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)

# each colour and each shape appears in exactly one held-out pair (a "diagonal" of the 6 x 6 grid)
HELDOUT_COMBOS: tuple[tuple[str, str], ...] = (
    ("red", "triangle"),
    ("green", "star"),
    ("blue", "circle"),
    ("yellow", "cross"),
    ("purple", "square"),
    ("cyan", "diamond"),
)

# how a caption may be phrased in training ("{}" is the world's caption, e.g. "a small red circle")
CAPTION_TEMPLATES: tuple[str, ...] = ("{}", "a picture of {}", "a photo of {}")

# extra words beyond the world's own: caption phrasings, question and instruction words
EXTRA_WORDS: tuple[str, ...] = ("picture", "photo", "object", "describe")

SUBSETS: tuple[str, ...] = ("seen", "heldout", "all")

# the per-channel preprocessing every image tower of the chapter applies, as CLIP normalises its inputs
PIXEL_MEAN, PIXEL_STD = 0.5, 0.25


def normalize_pixels(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] -> roughly zero mean, unit spread: (x - 0.5) / 0.25."""
    return (images - PIXEL_MEAN) / PIXEL_STD


def caption_vocabulary() -> Vocabulary:
    """The chapter's word-level tokenizer: the world's words, special tokens, and :data:`EXTRA_WORDS`."""
    return Vocabulary(extra_words=EXTRA_WORDS)


def world_config(
    subset: str = "seen",
    heldout: Sequence[tuple[str, str]] = HELDOUT_COMBOS,
    max_objects: int = 1,
    **overrides,
) -> WorldConfig:
    """The world of ``subset``: ``seen`` (held-out pairs excluded), ``heldout`` (only them) or ``all``."""
    if subset not in SUBSETS:
        raise ValueError(f"subset={subset!r} is unknown; allowed: {SUBSETS}")
    combos = tuple(tuple(c) for c in heldout)
    if subset == "seen":
        return WorldConfig(
            exclude_combos=combos, max_objects=max_objects, **overrides
        )
    if subset == "heldout":
        return WorldConfig(
            only_combos=combos, max_objects=max_objects, **overrides
        )
    return WorldConfig(max_objects=max_objects, **overrides)


def is_heldout(
    colour: torch.Tensor,
    shape: torch.Tensor,
    heldout: Sequence[tuple[str, str]] = HELDOUT_COMBOS,
) -> torch.Tensor:
    """Boolean mask: which (colour index, shape index) pairs are held out of training."""
    out = torch.zeros_like(colour, dtype=torch.bool)
    for c, s in heldout:
        out |= (colour == COLOUR_NAMES.index(c)) & (shape == SHAPES.index(s))
    return out


@dataclass
class ImageTextPairs:
    """Images ``[N, 3, H, W]`` with caption token ids ``[N, L]`` and what the first object really is.

    ``tokens`` are what a model trains on (possibly corrupted); ``clean_tokens`` are the true
    captions; ``noisy[i]`` says whether pair ``i`` was corrupted. ``caption_id`` numbers the distinct
    clean captions' content (colour, shape, size), so two pairs with equal ``caption_id`` describe
    the same thing; ``text_id`` numbers what the (possibly corrupted) caption *says* the same way,
    so it equals ``caption_id`` exactly where the caption is right.
    """

    images: torch.Tensor
    tokens: torch.Tensor
    clean_tokens: torch.Tensor
    captions: list[str]
    clean_captions: list[str]
    colour: torch.Tensor
    shape: torch.Tensor
    size: torch.Tensor
    noisy: torch.Tensor
    text_id: torch.Tensor
    vocab: Vocabulary = field(repr=False)
    scenes: Scenes = field(repr=False)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def class_id(self) -> torch.Tensor:
        """colour * 6 + shape: the 36 colour--shape classes of zero-shot classification."""
        return self.colour * len(SHAPES) + self.shape

    @property
    def caption_id(self) -> torch.Tensor:
        """(colour * 6 + shape) * 2 + size: equal for pairs whose clean captions say the same."""
        return self.class_id * len(SIZES) + self.size

    def subset(self, index: torch.Tensor | Sequence[int]) -> "ImageTextPairs":
        idx = torch.as_tensor(index)
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        pick = idx.tolist()
        return ImageTextPairs(
            self.images[idx],
            self.tokens[idx],
            self.clean_tokens[idx],
            [self.captions[i] for i in pick],
            [self.clean_captions[i] for i in pick],
            self.colour[idx],
            self.shape[idx],
            self.size[idx],
            self.noisy[idx],
            self.text_id[idx],
            self.vocab,
            self.scenes.subset(idx),
        )


def corrupt_captions(
    colour: torch.Tensor,
    shape: torch.Tensor,
    size: torch.Tensor,
    noise: float,
    combos: Sequence[tuple[int, int]],
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replace a share ``noise`` of (colour, shape, size) descriptions by a different random one.

    The replacement is drawn from ``combos`` (colour index, shape index) and a random size, redrawn
    until its colour--shape pair differs from the truth, so a corrupted caption is always wrong
    about the object. Returns the new (colour, shape, size) and the boolean mask of corrupted rows.
    """
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise={noise} must be a share in [0, 1]")
    n = colour.shape[0]
    noisy = torch.from_numpy(rng.random(n) < noise)
    combos_arr = np.asarray(combos)
    c, s, z = colour.clone(), shape.clone(), size.clone()
    for i in noisy.nonzero().flatten().tolist():
        while True:
            cc, ss = combos_arr[rng.integers(len(combos_arr))]
            if (cc, ss) != (int(colour[i]), int(shape[i])):
                break
        c[i], s[i], z[i] = int(cc), int(ss), int(rng.integers(len(SIZES)))
    return c, s, z, noisy


def describe(colour: int, shape: int, size: int) -> str:
    """'a small red circle' for indices into COLOURS, SHAPES and SIZES."""
    return f"a {SIZES[size]} {COLOUR_NAMES[colour]} {SHAPES[shape]}"


def make_pairs(
    n: int,
    *,
    seed: int = 0,
    split: str = "train",
    subset: str = "seen",
    heldout: Sequence[tuple[str, str]] = HELDOUT_COMBOS,
    noise: float = 0.0,
    templates: Sequence[str] = ("{}",),
    max_len: int = 10,
    bos_eos: bool = True,
    vocab: Vocabulary | None = None,
    **world,
) -> ImageTextPairs:
    """``n`` single-object image--caption pairs of ``subset`` (seen / heldout / all combinations).

    Captions are tokenized as ``[BOS] words [EOS] [PAD]...`` (``bos_eos=True``) and phrased with a
    template drawn at random from ``templates``; a share ``noise`` of them is corrupted.
    """
    if max_len < 4:
        raise ValueError(
            f"max_len={max_len} is too short for a caption; use 4 or more"
        )
    for t in templates:
        if t.count("{}") != 1:
            raise ValueError(f"template {t!r} must contain exactly one '{{}}'")
    vocab = vocab or caption_vocabulary()
    cfg = world_config(subset, heldout, max_objects=1, **world)
    scenes = make_scenes(n, seed=seed, split=split, config=cfg)
    rng = np.random.default_rng(
        [seed, 7, {"train": 0, "val": 1, "test": 2}[split]]
    )
    colour, shape, size = (
        scenes.colour[:, 0],
        scenes.shape[:, 0],
        scenes.size[:, 0],
    )
    c, s, z, noisy = corrupt_captions(
        colour, shape, size, noise, cfg.allowed_combos(), rng
    )
    phrasing = rng.integers(len(templates), size=n)
    clean = [
        templates[k].format(describe(a, b, d))
        for k, a, b, d in zip(
            phrasing, colour.tolist(), shape.tolist(), size.tolist()
        )
    ]
    used = [
        templates[k].format(describe(a, b, d))
        for k, a, b, d in zip(phrasing, c.tolist(), s.tolist(), z.tolist())
    ]

    def encode(texts: list[str]) -> torch.Tensor:
        toks = vocab.encode_batch(texts, max_len, bos=bos_eos, eos=bos_eos)
        if bos_eos and any(len(vocab.split(t)) + 2 > max_len for t in texts):
            raise ValueError(
                f"max_len={max_len} cuts captions short; the longest needs "
                f"{max(len(vocab.split(t)) for t in texts) + 2}"
            )
        return toks

    text_id = (c * len(SHAPES) + s) * len(SIZES) + z
    return ImageTextPairs(
        scenes.images,
        encode(used),
        encode(clean),
        used,
        clean,
        colour.clone(),
        shape.clone(),
        size.clone(),
        noisy,
        text_id,
        vocab,
        scenes,
    )


# ----------------------------------------------------------------------------- questions
QUESTION_KINDS: tuple[str, ...] = ("colour", "shape", "size")


@dataclass
class QuestionAnswers:
    """Visual questions about scenes: images ``[N, 3, H, W]``, question ids ``[N, Lq]``, one-word answers.

    ``answer`` is the answer's token id in ``vocab``; ``kind`` indexes :data:`QUESTION_KINDS`.
    """

    images: torch.Tensor
    questions: torch.Tensor
    answer: torch.Tensor
    kind: torch.Tensor
    question_texts: list[str]
    answer_texts: list[str]
    captions: list[str]
    vocab: Vocabulary = field(repr=False)

    def __len__(self) -> int:
        return self.images.shape[0]


def _questions_for(scenes: Scenes, i: int) -> list[tuple[str, str, int]]:
    """Every (question, answer, kind) about scene ``i`` that names a unique object."""
    k = int(scenes.n_objects[i])
    colours = [COLOUR_NAMES[int(scenes.colour[i, j])] for j in range(k)]
    shapes = [SHAPES[int(scenes.shape[i, j])] for j in range(k)]
    sizes = [SIZES[int(scenes.size[i, j])] for j in range(k)]
    out = []
    for j in range(k):
        if shapes.count(shapes[j]) == 1:  # "the circle" names one object
            out.append((f"what colour is the {shapes[j]} ?", colours[j], 0))
            out.append((f"what size is the {shapes[j]} ?", sizes[j], 2))
        if colours.count(colours[j]) == 1:  # "the red object" names one object
            out.append(
                (f"what shape is the {colours[j]} object ?", shapes[j], 1)
            )
    return out


def make_qa(
    n: int,
    *,
    seed: int = 0,
    split: str = "train",
    subset: str = "all",
    heldout: Sequence[tuple[str, str]] = HELDOUT_COMBOS,
    max_objects: int = 2,
    max_len: int = 8,
    vocab: Vocabulary | None = None,
    **world,
) -> QuestionAnswers:
    """``n`` (image, question, answer) triples about scenes of one to ``max_objects`` objects.

    Each scene gets one question drawn at random from those with a unique answer.
    """
    vocab = vocab or caption_vocabulary()
    cfg = world_config(subset, heldout, max_objects=max_objects, **world)
    # a few scenes (two objects alike in colour and shape) admit no question: draw spares, keep n
    scenes = make_scenes(n + n // 8 + 8, seed=seed, split=split, config=cfg)
    rng = np.random.default_rng(
        [seed, 11, {"train": 0, "val": 1, "test": 2}[split]]
    )
    keep, qs, ans, kinds = [], [], [], []
    for i in range(len(scenes)):
        options = _questions_for(scenes, i)
        if not options:
            continue
        q, a, kind = options[rng.integers(len(options))]
        keep.append(i), qs.append(q), ans.append(a), kinds.append(kind)
        if len(keep) == n:
            break
    if len(keep) < n:
        raise RuntimeError(
            f"only {len(keep)} of {n} scenes admit a question; draw more spares"
        )
    scenes = scenes.subset(keep)
    longest = max(len(vocab.split(q)) for q in qs)
    if longest > max_len:
        raise ValueError(
            f"max_len={max_len} cuts questions short; the longest has {longest} words"
        )
    return QuestionAnswers(
        scenes.images,
        vocab.encode_batch(qs, max_len),
        torch.tensor([vocab.stoi[a] for a in ans]),
        torch.tensor(kinds),
        qs,
        ans,
        list(scenes.captions),
        vocab,
    )


# ----------------------------------------------------------------------------- matching test sets
NEGATIVE_KINDS: tuple[str, ...] = ("random", "hard")


def mismatched_captions(
    pairs: ImageTextPairs, kind: str = "random", seed: int = 0
) -> tuple[torch.Tensor, list[str]]:
    """A wrong caption for every image: ``random`` (any other seen description) or ``hard`` (one attribute changed).

    Hard negatives change exactly one of colour, shape or size and stay among the combinations
    of the pairs' world, so a model must check every word against the image.
    """
    if kind not in NEGATIVE_KINDS:
        raise ValueError(
            f"kind={kind!r} is unknown; allowed: {NEGATIVE_KINDS}"
        )
    rng = np.random.default_rng([seed, 13])
    allowed = set(map(tuple, pairs.scenes.config.allowed_combos()))
    texts = []
    for c, s, z in zip(
        pairs.colour.tolist(), pairs.shape.tolist(), pairs.size.tolist()
    ):
        while True:
            if kind == "random":
                cc, ss, zz = (
                    int(rng.integers(len(COLOUR_NAMES))),
                    int(rng.integers(len(SHAPES))),
                    int(rng.integers(len(SIZES))),
                )
            else:
                cc, ss, zz = c, s, z
                which = rng.integers(3)
                if which == 0:
                    cc = int(rng.integers(len(COLOUR_NAMES)))
                elif which == 1:
                    ss = int(rng.integers(len(SHAPES)))
                else:
                    zz = 1 - z
            if (cc, ss, zz) != (c, s, z) and (cc, ss) in allowed:
                break
        texts.append(describe(cc, ss, zz))
    L = pairs.clean_tokens.shape[1]
    bos_eos = bool((pairs.clean_tokens[:, 0] == pairs.vocab.bos).all())
    return pairs.vocab.encode_batch(texts, L, bos=bos_eos, eos=bos_eos), texts


def matching_test(
    pairs: ImageTextPairs, kind: str = "random", seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A balanced image--text matching test: every image once with its true caption, once with a wrong one.

    Returns (image index ``[2N]``, caption ids ``[2N, L]``, label ``[2N]``: 1 = the caption fits).
    """
    neg, _ = mismatched_captions(pairs, kind, seed)
    n = len(pairs)
    index = torch.cat([torch.arange(n), torch.arange(n)])
    return (
        index,
        torch.cat([pairs.clean_tokens, neg]),
        torch.cat([torch.ones(n), torch.zeros(n)]).long(),
    )
