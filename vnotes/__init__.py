"""vnotes: the implementations behind the executable deep-learning book.

The core every chapter shares:

* :mod:`vnotes.scales`     -- ``smoke`` / ``default`` / ``full`` presets
* :mod:`vnotes.runtime`    -- device, precision, seeding
* :mod:`vnotes.train`      -- the one training loop, :func:`~vnotes.train.fit`
* :mod:`vnotes.record`     -- headline metrics written for the tests
* :mod:`vnotes.plot`       -- curves, image grids, heat-map overlays, embeddings, source display
* :mod:`vnotes.data`       -- the toy world, scikit-learn's digits, torchvision sets (online only)
* :mod:`vnotes.checkpoint` -- atomic checkpoints and the local model cache
* :mod:`vnotes.noise`      -- the one definition of "within noise" (seeds, paired bootstrap)

Chapters live in their own modules (``vnotes.optim``, ...) and import the core, never the reverse.
"""

from .noise import compare_seeds, paired_bootstrap, rank_seeds
from .record import Recorder
from .runtime import describe, pick_device, seed_everything
from .scales import SCALES, by_scale, resolve_scale
from .train import (
    EMA,
    EarlyStopping,
    History,
    correct_flags,
    evaluate,
    fit,
    keep_best,
)

__version__ = "0.1.0"
__all__ = [
    "EMA",
    "EarlyStopping",
    "History",
    "Recorder",
    "SCALES",
    "by_scale",
    "compare_seeds",
    "correct_flags",
    "describe",
    "evaluate",
    "fit",
    "keep_best",
    "paired_bootstrap",
    "pick_device",
    "rank_seeds",
    "resolve_scale",
    "seed_everything",
]
