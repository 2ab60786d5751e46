"""The momentum model and feature queue that ALBEF (7c) and BLIP (7e) share.

Both follow MoCo (He et al., 2020) as ALBEF (Li et al., 2021) adapted it: a copy of every part of
the model that makes a contrastive or distillation *target* is kept as an exponential moving
average of the trained weights, never trained by gradients,

    theta_m <- m * theta_m + (1 - m) * theta,

and its normalised embeddings fill ring buffers (queues) that serve as extra negatives. BLIP
(Li et al., 2022) keeps the same machinery, so it lives here once.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..train import ema_update


class FeatureQueue(nn.Module):
    """Ring buffers of momentum embeddings and what their captions say, as in MoCo (He et al., 2020) and ALBEF."""

    def __init__(self, size: int, dim: int):
        super().__init__()
        if size < 0:
            raise ValueError(f"queue size={size} must be non-negative")
        self.register_buffer(
            "image", F.normalize(torch.randn(size, dim), dim=1)
        )
        self.register_buffer(
            "text", F.normalize(torch.randn(size, dim), dim=1)
        )
        self.register_buffer(
            "ids", torch.full((size,), -1, dtype=torch.long)
        )  # -1: never written
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    def contents(self) -> tuple[Tensor, Tensor, Tensor]:
        """The filled entries: image ``[Q', E]``, text ``[Q', E]`` embeddings and caption ids ``[Q']``."""
        filled = self.ids >= 0
        return self.image[filled], self.text[filled], self.ids[filled]

    @torch.no_grad()
    def push(
        self, image_feat: Tensor, text_feat: Tensor, text_id: Tensor
    ) -> None:
        """Overwrite the oldest entries with the newest momentum embeddings."""
        Q = self.ids.shape[0]
        if Q == 0:
            return
        n = min(image_feat.shape[0], Q)
        at = (int(self.ptr) + torch.arange(n, device=image_feat.device)) % Q
        self.image[at] = image_feat[:n].to(self.image.dtype)
        self.text[at] = text_feat[:n].to(self.text.dtype)
        self.ids[at] = text_id[:n]
        self.ptr.fill_((int(self.ptr) + n) % Q)


class MomentumDistillation:
    """Mixin for an ``nn.Module`` with a momentum (EMA) copy of some of its parts and a feature queue (ALBEF, BLIP).

    Call :meth:`init_momentum` at the end of ``__init__`` (after the parts exist); it sets
    ``self.momentum_model`` (an ``nn.ModuleDict`` of frozen copies, keyed by attribute name) and
    ``self.queue``. :meth:`momentum_update` then moves every copy towards its online part.
    """

    momentum: float

    def init_momentum(
        self,
        parts: Sequence[str],
        momentum: float,
        queue_size: int,
        embed_dim: int,
    ) -> None:
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum={momentum} must lie in [0, 1]")
        missing = [
            name
            for name in parts
            if not isinstance(getattr(self, name, None), nn.Module)
        ]
        if missing:
            raise ValueError(
                f"momentum parts {missing} are not sub-modules of {type(self).__name__}"
            )
        self.momentum = momentum
        # the momentum model: an EMA copy of every part that makes a target, never trained by gradients
        self.momentum_model = nn.ModuleDict(
            {name: copy.deepcopy(getattr(self, name)) for name in parts}
        )
        for p in self.momentum_model.parameters():
            p.requires_grad_(False)
        self.queue = FeatureQueue(queue_size, embed_dim)

    @torch.no_grad()
    def momentum_update(self) -> None:
        """theta_m <- m theta_m + (1 - m) theta for every part of the momentum model."""
        for name, target in self.momentum_model.items():
            ema_update(target, getattr(self, name), self.momentum)
