"""The momentum model and feature queue that ALBEF (7c) and BLIP (7e) share.

Both follow MoCo (He et al., 2020) as ALBEF (Li et al., 2021) adapted it: a copy of every part of
the model that makes a contrastive or distillation *target* is kept as an exponential moving
average of the trained weights, never trained by gradients,

    theta_m <- m * theta_m + (1 - m) * theta,

and its normalised embeddings fill ring buffers (queues) that serve as extra negatives. BLIP
(Li et al., 2022) keeps the same machinery, so it lives here once.

Two settings depend on the length of the run rather than on the model:

* **the momentum** ``m``: the momentum model averages the last ``1 / (1 - m)`` steps or so (its
  *horizon*). The papers' 0.995 is a horizon of 200 steps, a blink in their 100,000s of steps but
  longer than the book's whole miniature runs of 100-300 steps, where the copy would stay near its
  initial weights. :func:`momentum_for_horizon` picks ``m`` from a horizon stated as a share of
  the run's steps.
* **the distillation weight** ``alpha``: both papers' code raises it linearly from 0 to its value
  over the first epoch, while the momentum model is still poor (ALBEF's ``alpha *
  min(1, i / len(data_loader))`` in epoch 0); ``alpha_ramp_steps`` is that length in steps.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..train import ema_update


def momentum_for_horizon(total_steps: int, share: float) -> float:
    """The momentum ``m`` whose horizon ``1 / (1 - m)`` is ``share`` of ``total_steps`` (at least one step).

    ``momentum_for_horizon(300, 0.1)`` -> 0.9667 (a 30-step horizon); a horizon of one step or less
    gives ``m = 0``: the copy is the model itself.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps={total_steps} must be at least 1")
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share={share} must lie in (0, 1]")
    return 1.0 - 1.0 / max(share * total_steps, 1.0)


# the book's choice for every momentum model of chapter 7: a horizon of 10 % of the run's steps (the issue's
# range is 5-25 %); fixed in advance, not tuned on these pages
HORIZON_SHARE = 0.1


def run_settings(
    n_train: int,
    batch_size: int,
    epochs: int,
    horizon_share: float = HORIZON_SHARE,
    ramp: bool = True,
) -> dict[str, float | int]:
    """``momentum`` and ``alpha_ramp_steps`` for a run of ``epochs`` over ``n_train`` pairs in batches of ``batch_size``.

    The run takes ``epochs * (n_train // batch_size)`` steps (the last, partial batch dropped, as
    :func:`vnotes.multimodal.recipes.train_model` does); alpha ramps up over the first epoch (constant
    with ``ramp=False``) and the momentum's horizon is ``horizon_share`` of all steps. Pass the result
    to ``build_albef`` or ``build_blip``.
    """
    if min(n_train, batch_size, epochs) < 1:
        raise ValueError(
            f"need n_train, batch_size, epochs >= 1; got {n_train}, {batch_size}, {epochs}"
        )
    per_epoch = n_train // batch_size
    if per_epoch == 0:
        raise ValueError(
            f"batch_size={batch_size} exceeds the {n_train} training pairs"
        )
    return dict(
        momentum=momentum_for_horizon(epochs * per_epoch, horizon_share),
        alpha_ramp_steps=per_epoch if ramp else 0,
    )


def momentum_horizon(momentum: float) -> float:
    """The number of steps the momentum model averages over, ``1 / (1 - m)`` (infinite for ``m = 1``)."""
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum={momentum} must lie in [0, 1]")
    return float("inf") if momentum == 1.0 else 1.0 / (1.0 - momentum)


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
    alpha: float
    alpha_ramp_steps: int

    def init_momentum(
        self,
        parts: Sequence[str],
        momentum: float,
        queue_size: int,
        embed_dim: int,
        alpha_ramp_steps: int = 0,
    ) -> None:
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum={momentum} must lie in [0, 1]")
        if alpha_ramp_steps < 0:
            raise ValueError(
                f"alpha_ramp_steps={alpha_ramp_steps} must be non-negative (0: no ramp)"
            )
        self.alpha_ramp_steps = int(alpha_ramp_steps)
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
        # training steps taken so far (momentum updates): drives the alpha ramp
        self.register_buffer(
            "momentum_steps", torch.zeros((), dtype=torch.long)
        )

    def distill_alpha(self) -> float:
        """This step's distillation weight: ``alpha * min(1, i / alpha_ramp_steps)`` at step ``i`` (0-based).

        Call it before :meth:`momentum_update` in a training step; with ``alpha_ramp_steps = 0`` it is
        the constant ``alpha``.
        """
        if self.alpha_ramp_steps == 0:
            return self.alpha
        return self.alpha * min(
            1.0, int(self.momentum_steps) / self.alpha_ramp_steps
        )

    @torch.no_grad()
    def momentum_update(self) -> None:
        """theta_m <- m theta_m + (1 - m) theta for every part of the momentum model."""
        for name, target in self.momentum_model.items():
            ema_update(target, getattr(self, name), self.momentum)
        self.momentum_steps += 1
