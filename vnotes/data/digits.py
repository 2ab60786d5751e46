"""scikit-learn's handwritten digits: 1,797 real 8x8 scans that ship inside the package (no download).

Alpaydin & Kaynak (1998), UCI "Optical Recognition of Handwritten Digits".
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

SPLITS = ("train", "val", "test")


@dataclass
class Digits:
    """Images ``[N, 1, S, S]`` in [0, 1] and labels ``[N]`` (0-9)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]

    def flat(self) -> torch.Tensor:
        """Images flattened to ``[N, S*S]`` for MLPs."""
        return self.images.flatten(1)


def load_digits(split: str = "train", *, size: int = 8, seed: int = 0,
                fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> Digits:
    """One split of the digits, stratified by class and fixed by ``seed``; resized to ``size`` (bilinear)."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is unknown; allowed: {SPLITS}")
    if size < 4 or size > 64:
        raise ValueError(f"size={size} must lie between 4 and 64 pixels")
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6 or min(fractions) <= 0:
        raise ValueError(f"fractions={fractions} must be three positive numbers summing to 1")
    from sklearn.datasets import load_digits as _sk_load

    raw = _sk_load()
    x = raw.images.astype(np.float32) / 16.0
    y = raw.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {s: [] for s in SPLITS}
    for c in range(10):
        idx = rng.permutation(np.nonzero(y == c)[0])
        n_train = int(round(fractions[0] * len(idx)))
        n_val = int(round(fractions[1] * len(idx)))
        parts["train"] += idx[:n_train].tolist()
        parts["val"] += idx[n_train:n_train + n_val].tolist()
        parts["test"] += idx[n_train + n_val:].tolist()
    sel = np.sort(np.array(parts[split]))
    images = torch.from_numpy(x[sel]).unsqueeze(1)
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return Digits(images=images, labels=torch.from_numpy(y[sel]))
