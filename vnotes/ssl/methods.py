"""Self-supervised methods as modules with a ``training_step`` (chapter 5, 对比学习 / 自蒸馏).

Each method wraps an encoder (a :mod:`vnotes.cnn` ResNet or a :class:`vnotes.transformer.ViT`) and
adds what its paper adds on top: a projection head, a momentum encoder and a queue, a predictor,
prototypes, a teacher with a centre. ``training_step(images)`` makes the views, runs the networks
and returns ``(loss, {name: value})``, so :func:`vnotes.fit` trains any of them with
``step_fn=ssl_step``. The papers' settings are written once, as data, in :data:`PAPER_SETTINGS`.

* :class:`SimCLR` -- Chen et al. (2020)
* :class:`MoCo` -- He et al. (2020), momentum encoder + queue of keys
* :class:`BYOL` -- Grill et al. (2020), predictor + EMA target, no negatives
* :class:`SwAV` -- Caron et al. (2020), prototypes + Sinkhorn codes + swapped prediction
* :class:`DINO` -- Caron et al. (2021), self-distillation with a centred, sharpened EMA teacher
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..train import ema_update
from .augment import MultiCrop, ViewAugment
from .normalization import HEAD_NORMS, head_linear, head_norm_layer
from .losses import (
    byol_loss,
    dino_loss,
    hard_negative_nt_xent,
    info_nce,
    nt_xent,
    sinkhorn_knopp,
    swav_loss,
)

# What each paper used (ImageNet, ResNet-50 or ViT-S/16). The book's CPU runs are ~1000x shorter, so
# vnotes.ssl.experiments changes a few of these; it says which and why next to each change.
PAPER_SETTINGS: dict[str, dict[str, Any]] = {
    "simclr": {
        "temperature": 0.1,
        "projection": "2-layer MLP, hidden 2048, out 128",
        "batch_size": 4096,
        "optimizer": "LARS, lr 4.8",
        "crop_scale": (0.08, 1.0),
        "colour_jitter": (0.8, 0.8, 0.8, 0.2),
    },
    "moco": {
        "temperature": 0.07,
        "momentum": 0.999,
        "queue_size": 65536,
        "projection": "linear, out 128",
        "batch_size": 256,
        "shuffle_bn": "8 GPUs",
    },
    "byol": {
        "base_momentum": 0.996,
        "projection": "MLP, hidden 4096, out 256",
        "predictor": "MLP, hidden 4096, out 256",
        "batch_size": 4096,
        "solarize_p": (0.0, 0.2),
    },
    "swav": {
        "temperature": 0.1,
        "epsilon": 0.05,
        "sinkhorn_iterations": 3,
        "prototypes": 3000,
        "multi_crop": "2x224 + 6x96",
        "freeze_prototypes": "first epoch",
    },
    "dino": {
        "student_temp": 0.1,
        "teacher_temp": "0.04 (warm-up to 0.07 in some runs)",
        "center_momentum": 0.9,
        "teacher_momentum": "0.996 -> 1 (cosine)",
        "out_dim": 65536,
        "head": "3-layer MLP 2048, bottleneck 256",
        "multi_crop": "2x224 (40-100%) + 10x96 (5-40%)",
        "clip_grad": 3.0,
    },
    "mae": {
        "mask_ratio": 0.75,
        "decoder": "8 blocks, width 512",
        "norm_pix_loss": True,
        "epochs": 1600,
        "init": "Xavier-uniform linear layers",
        "positions": "fixed 2-D sine-cosine",
    },
}


# --------------------------------------------------------------------------- encoders and heads
def encoder_dim(encoder: nn.Module) -> int:
    """Width of the features :func:`encode` returns for ``encoder``."""
    if hasattr(encoder, "num_features"):
        return int(encoder.num_features)
    if hasattr(encoder, "norm") and isinstance(encoder.norm, nn.LayerNorm):
        return int(encoder.norm.normalized_shape[0])
    raise TypeError(
        f"cannot tell the feature width of {type(encoder).__name__}; give a ResNet or a ViT"
    )


def encode(encoder: nn.Module, x: Tensor) -> Tensor:
    """The representation h = f(x) ``[B, D]``: a ResNet's pooled features or a ViT's [CLS] token."""
    features = encoder.forward_features(x)
    return features[:, 0] if features.ndim == 3 else features


def _grouped(fn, x: Tensor, groups: int) -> Tensor:
    """Run ``fn`` on ``groups`` equal slices of the batch: each slice gets its own BatchNorm statistics."""
    if groups <= 1:
        return fn(x)
    return torch.cat([fn(chunk) for chunk in x.chunk(groups)])


class MLPHead(nn.Sequential):
    """Linear -> BN -> ReLU (x ``layers - 1``) -> Linear: SimCLR's projection g(h) (Chen et al., 2020), BYOL's projector and predictor.

    ``norm`` is what follows each hidden linear layer: ``"batch"`` (BatchNorm, the default),
    ``"none"`` (a bias instead), or ``"group_ws"`` (weight-standardised linear layer + GroupNorm,
    batch-independent; Richemond et al., 2020). ``batch_norm=False`` is the older spelling of ``"none"``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        layers: int = 2,
        batch_norm: bool = True,
        norm: str | None = None,
    ):
        if layers < 1:
            raise ValueError(f"layers={layers} must be at least 1")
        if norm is None:
            norm = "batch" if batch_norm else "none"
        elif norm not in HEAD_NORMS:
            raise ValueError(
                f"norm={norm!r} is unknown; allowed: {HEAD_NORMS}"
            )
        modules: list[nn.Module] = []
        dim = in_dim
        for _ in range(layers - 1):
            modules += [head_linear(norm, dim, hidden_dim)]
            modules += (
                [] if norm == "none" else [head_norm_layer(norm, hidden_dim)]
            )
            modules += [nn.ReLU(inplace=True)]
            dim = hidden_dim
        modules.append(nn.Linear(dim, out_dim))
        super().__init__(*modules)


def ssl_step(model: nn.Module, batch: Any):
    """The ``step_fn`` for :func:`vnotes.fit`: the first tensor of the batch are the (unlabelled) images."""
    images = batch[0] if isinstance(batch, (tuple, list)) else batch
    return model.training_step(images)


def cosine_schedule(step: int, total: int, start: float, end: float) -> float:
    """start -> end along half a cosine over ``total`` steps (BYOL's and DINO's momentum schedule)."""
    if total <= 0:
        return end
    progress = min(step, total) / total
    return end - (end - start) * (math.cos(math.pi * progress) + 1) / 2


class _Method(nn.Module):
    """What every method shares: the encoder being trained, a step counter and the views."""

    def __init__(self, encoder: nn.Module, augment: ViewAugment | None):
        super().__init__()
        self.encoder = encoder
        self.augment = augment or ViewAugment()
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        """The representation used downstream (before any head)."""
        return encode(self.encoder, x)

    def training_step(
        self, images: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:  # pragma: no cover
        raise NotImplementedError


def _embedding_std(z: Tensor) -> Tensor:
    """Mean per-dimension std of L2-normalised embeddings: ~1/sqrt(D) when spread out, 0 when collapsed."""
    return F.normalize(z.detach().float(), dim=-1).std(dim=0).mean()


# --------------------------------------------------------------------------- SimCLR
class SimCLR(_Method):
    """SimCLR (Chen et al., 2020): two augmented views, encoder f, MLP projection g, NT-Xent on z = g(f(x)).

    With ``hard_negative_beta > 0`` the loss becomes Robinson et al.'s (2021) hard-negative NT-Xent.
    """

    def __init__(
        self,
        encoder: nn.Module,
        projection_dim: int = 64,
        hidden_dim: int | None = None,
        temperature: float = 0.5,
        augment: ViewAugment | None = None,
        hard_negative_beta: float = 0.0,
        tau_plus: float = 0.0,
    ):
        super().__init__(encoder, augment)
        dim = encoder_dim(encoder)
        self.projector = MLPHead(dim, hidden_dim or dim, projection_dim)
        self.temperature, self.beta, self.tau_plus = (
            temperature,
            hard_negative_beta,
            tau_plus,
        )

    def training_step(
        self, images: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        self.step += 1
        views = torch.cat(
            [self.augment(images), self.augment(images)]
        )  # [2B, 3, H, W]
        z = self.projector(encode(self.encoder, views))  # [2B, projection_dim]
        z1, z2 = z.float().chunk(2)
        if self.beta > 0 or self.tau_plus > 0:
            loss = hard_negative_nt_xent(
                z1, z2, self.temperature, self.beta, self.tau_plus
            )
        else:
            loss = nt_xent(z1, z2, self.temperature)
        return loss, {"z_std": _embedding_std(z1)}


# --------------------------------------------------------------------------- MoCo
class MoCo(_Method):
    """MoCo (He et al., 2020): a query encoder, a momentum key encoder and a queue of past keys as negatives.

    The dictionary (queue) holds ``queue_size`` keys, independent of the batch size; the key encoder
    follows the query encoder slowly, theta_k <- m theta_k + (1 - m) theta_q, so keys from earlier
    batches stay comparable. ``shuffle_groups`` emulates Shuffling BN on one device: keys are
    computed on a shuffled batch in groups, so query and key never share BatchNorm statistics.
    ``mlp=True`` gives MoCo v2's MLP head (Chen et al., 2020b); ``symmetric=True`` uses each view once
    as query and once as key, l(q1, k2) + l(q2, k1), as the MoCo authors' CIFAR-10 demo does.
    """

    def __init__(
        self,
        encoder: nn.Module,
        projection_dim: int = 64,
        queue_size: int = 4096,
        momentum: float = 0.99,
        temperature: float = 0.07,
        augment: ViewAugment | None = None,
        mlp: bool = False,
        shuffle_groups: int = 2,
        symmetric: bool = False,
    ):
        super().__init__(encoder, augment)
        if queue_size < 1:
            raise ValueError(f"queue_size={queue_size} must be at least 1")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum={momentum} must lie in [0, 1)")
        if shuffle_groups < 1:
            raise ValueError(
                f"shuffle_groups={shuffle_groups} must be at least 1"
            )
        dim = encoder_dim(encoder)
        self.projector = (
            MLPHead(dim, dim, projection_dim)
            if mlp
            else nn.Linear(dim, projection_dim)
        )
        # the key encoder: a copy that gets no gradient, only the momentum update
        self.key_encoder = copy.deepcopy(self.encoder)
        self.key_projector = copy.deepcopy(self.projector)
        for p in [
            *self.key_encoder.parameters(),
            *self.key_projector.parameters(),
        ]:
            p.requires_grad_(False)
        self.momentum, self.temperature, self.shuffle_groups = (
            momentum,
            temperature,
            shuffle_groups,
        )
        self.symmetric = symmetric
        # the dictionary: a FIFO queue of L2-normalised keys, started with random unit vectors
        self.register_buffer(
            "queue",
            F.normalize(torch.randn(queue_size, projection_dim), dim=1),
        )
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @property
    def queue_size(self) -> int:
        return self.queue.shape[0]

    @torch.no_grad()
    def momentum_update(self) -> None:
        """theta_k <- m theta_k + (1 - m) theta_q, for the encoder and the projection (He et al., 2020, Eq. 2)."""
        ema_update(self.key_encoder, self.encoder, self.momentum)
        ema_update(self.key_projector, self.projector, self.momentum)

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Push this batch's keys ``[B, dim]`` into the queue, overwriting the oldest ones."""
        keys = keys.detach().to(self.queue.dtype)
        n, K = keys.shape[0], self.queue_size
        if n >= K:  # a batch larger than the queue: keep its newest K keys
            self.queue.copy_(keys[-K:])
            self.queue_ptr.zero_()
            return
        ptr = int(self.queue_ptr)
        first = min(n, K - ptr)
        self.queue[ptr : ptr + first] = keys[:first]
        self.queue[: n - first] = keys[first:]  # wrap around
        self.queue_ptr.fill_((ptr + n) % K)

    def _key_fn(self, x: Tensor) -> Tensor:
        return self.key_projector(encode(self.key_encoder, x))

    def _query_fn(self, x: Tensor) -> Tensor:
        return self.projector(encode(self.encoder, x))

    @torch.no_grad()
    def keys(self, x: Tensor) -> Tensor:
        """k = f_k(x) for a batch of key views, with BN shuffled across groups; L2-normalised ``[B, dim]``."""
        perm = torch.randperm(x.shape[0], device=x.device)
        k = _grouped(self._key_fn, x[perm], self.shuffle_groups)
        return F.normalize(k[perm.argsort()].float(), dim=1)

    def training_step(
        self, images: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        self.step += 1
        x1, x2 = self.augment(images), self.augment(images)
        q1 = F.normalize(
            _grouped(self._query_fn, x1, self.shuffle_groups).float(), dim=1
        )  # [B, dim]
        self.momentum_update()
        k2 = self.keys(x2)  # [B, dim], no gradient
        negatives = self.queue.clone()  # [K, dim], keys of earlier batches
        loss = info_nce(q1, k2, negatives, self.temperature)
        if self.symmetric:
            q2 = F.normalize(
                _grouped(self._query_fn, x2, self.shuffle_groups).float(),
                dim=1,
            )
            k1 = self.keys(x1)
            loss = loss + info_nce(q2, k1, negatives, self.temperature)
            k2 = torch.cat([k1, k2])
        self.enqueue(k2)
        return loss, {"z_std": _embedding_std(q1)}


# --------------------------------------------------------------------------- BYOL
class BYOL(_Method):
    """BYOL (Grill et al., 2020): online (encoder, projector, predictor) predicts the EMA target's projection of another view.

    No negatives: the predictor and the slowly moving target keep it from collapsing. The target's
    momentum follows tau = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2. The second view uses
    solarisation (the paper's asymmetric augmentations). ``predictor=False`` removes the predictor
    (the ablation of the paper's Table 5, which collapses). ``norm`` is the projector's and predictor's
    normalisation (:class:`MLPHead`): ``"batch"`` as in the paper, ``"none"`` or ``"group_ws"`` for
    Richemond et al.'s (2020) question whether BYOL needs batch statistics.
    """

    def __init__(
        self,
        encoder: nn.Module,
        projection_dim: int = 64,
        hidden_dim: int | None = None,
        base_momentum: float = 0.99,
        total_steps: int = 1000,
        augment: ViewAugment | None = None,
        augment2: ViewAugment | None = None,
        predictor: bool = True,
        norm: str = "batch",
    ):
        super().__init__(encoder, augment)
        dim = encoder_dim(encoder)
        hidden = hidden_dim or 2 * dim
        self.augment2 = augment2 or ViewAugment(solarize_p=0.2)
        self.projector = MLPHead(dim, hidden, projection_dim, norm=norm)
        self.predictor = (
            MLPHead(projection_dim, hidden, projection_dim, norm=norm)
            if predictor
            else nn.Identity()
        )
        self.target_encoder = copy.deepcopy(self.encoder)
        self.target_projector = copy.deepcopy(self.projector)
        for p in [
            *self.target_encoder.parameters(),
            *self.target_projector.parameters(),
        ]:
            p.requires_grad_(False)
        if not 0 <= base_momentum < 1:
            raise ValueError(
                f"base_momentum={base_momentum} must lie in [0, 1)"
            )
        self.base_momentum, self.total_steps = base_momentum, total_steps

    def current_momentum(self) -> float:
        return cosine_schedule(
            int(self.step), self.total_steps, self.base_momentum, 1.0
        )

    @torch.no_grad()
    def momentum_update(self) -> None:
        """xi <- tau xi + (1 - tau) theta for the target encoder and projector."""
        tau = self.current_momentum()
        ema_update(self.target_encoder, self.encoder, tau)
        ema_update(self.target_projector, self.projector, tau)

    def training_step(
        self, images: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        self.momentum_update()
        self.step += 1
        v1, v2 = self.augment(images), self.augment2(images)
        views = torch.cat([v1, v2])
        z = self.projector(encode(self.encoder, views))  # [2B, dim]
        p1, p2 = self.predictor(z).chunk(2)
        with torch.no_grad():
            t1, t2 = self.target_projector(
                encode(self.target_encoder, views)
            ).chunk(2)
        # symmetric: the prediction from view 1 regresses the target of view 2 and vice versa
        loss = byol_loss(p1, t2) + byol_loss(p2, t1)
        return loss, {"z_std": _embedding_std(z)}


# --------------------------------------------------------------------------- SwAV
class SwAV(_Method):
    """SwAV (Caron et al., 2020): predict one view's cluster code (Sinkhorn over prototypes) from another view.

    Codes are computed for the global views only, and predicted from every other view (multi-crop).
    Prototypes are kept on the unit sphere and frozen for the first ``freeze_prototypes_steps`` steps.
    """

    def __init__(
        self,
        encoder: nn.Module,
        projection_dim: int = 64,
        hidden_dim: int | None = None,
        num_prototypes: int = 32,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        multi_crop: MultiCrop | None = None,
        freeze_prototypes_steps: int = 0,
    ):
        super().__init__(
            encoder, multi_crop.global_view if multi_crop else None
        )
        dim = encoder_dim(encoder)
        self.multi_crop = multi_crop or MultiCrop(
            ViewAugment(), ViewAugment(size=16, scale=(0.05, 0.3)), 2, 2
        )
        self.projector = MLPHead(dim, hidden_dim or dim, projection_dim)
        self.prototypes = nn.Linear(projection_dim, num_prototypes, bias=False)
        self.temperature, self.epsilon, self.iterations = (
            temperature,
            epsilon,
            sinkhorn_iterations,
        )
        self.freeze_prototypes_steps = freeze_prototypes_steps

    def training_step(
        self, images: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        self.step += 1
        with torch.no_grad():
            self.prototypes.weight.copy_(
                F.normalize(self.prototypes.weight, dim=1)
            )
        W = self.prototypes.weight
        if int(self.step) <= self.freeze_prototypes_steps:
            W = W.detach()
        views = self.multi_crop(images)
        n_global = self.multi_crop.n_global
        # views of one resolution go through the encoder together
        big = F.normalize(
            self.projector(
                encode(self.encoder, torch.cat(views[:n_global]))
            ).float(),
            dim=1,
        )
        z = list(big.chunk(n_global))
        if len(views) > n_global:
            small = F.normalize(
                self.projector(
                    encode(self.encoder, torch.cat(views[n_global:]))
                ).float(),
                dim=1,
            )
            z += list(small.chunk(len(views) - n_global))
        scores = [zv @ W.float().T for zv in z]  # [B, K] each: z . c_k
        codes = [
            sinkhorn_knopp(s.detach(), self.epsilon, self.iterations)
            for s in scores[:n_global]
        ]
        loss = swav_loss(
            scores, codes, self.temperature, code_views=range(n_global)
        )
        # how many prototypes are some sample's strongest assignment: 1 would mean collapse
        used = torch.cat(codes).argmax(1).unique().numel()
        return loss, {
            "z_std": _embedding_std(z[0]),
            "prototypes_used": torch.tensor(float(used)),
        }


# --------------------------------------------------------------------------- DINO
class DINOHead(nn.Module):
    """DINO's projection head (Caron et al., 2021): 3-layer MLP (GELU) -> L2-normalise -> weight-normalised linear to K.

    ``norm_last_layer=False`` leaves the last layer's rows free (the authors' advice for small data
    and small batches: sharper outputs early, at some risk of instability); ``batch_norm=True``
    puts BatchNorm after the hidden layers (the official code's ``use_bn_in_head``).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 256,
        hidden_dim: int = 128,
        bottleneck_dim: int = 64,
        norm_last_layer: bool = True,
        batch_norm: bool = False,
    ):
        super().__init__()
        self.norm_last_layer = norm_last_layer
        norm = (
            (lambda: nn.BatchNorm1d(hidden_dim)) if batch_norm else nn.Identity
        )  # the code's use_bn_in_head
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            norm(),
            nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim),
            norm(),
            nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        # weight normalisation with the norm fixed to 1: each output unit is a unit vector v_k / |v_k|
        self.last_direction = nn.Parameter(
            torch.empty(out_dim, bottleneck_dim)
        )
        nn.init.trunc_normal_(self.last_direction, std=0.02)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, h: Tensor, freeze_last: bool = False) -> Tensor:
        y = F.normalize(
            self.mlp(h), dim=-1
        )  # [B, bottleneck], on the unit sphere
        v = (
            self.last_direction.detach()
            if freeze_last
            else self.last_direction
        )
        if self.norm_last_layer:
            v = F.normalize(v, dim=1)
        return y @ v.T  # [B, K]


class DINO(_Method):
    """DINO (Caron et al., 2021): self-distillation with no labels.

    Student and teacher share the architecture (a ViT + :class:`DINOHead`); the teacher is an EMA
    of the student and gets no gradient. The teacher sees only the global crops; the student sees
    all crops, so local views must predict the teacher's reading of the whole image. Teacher outputs
    are centred (c <- m c + (1 - m) mean g_t) and sharpened (low tau_t): centring alone would make the
    output uniform, sharpening alone would let one dimension dominate; together they avoid collapse.
    """

    def __init__(
        self,
        encoder: nn.Module,
        out_dim: int = 256,
        hidden_dim: int = 128,
        bottleneck_dim: int = 64,
        student_temp: float = 0.1,
        teacher_temp: float = 0.04,
        warmup_teacher_temp: float = 0.04,
        warmup_steps: int = 0,
        center_momentum: float = 0.9,
        base_momentum: float = 0.996,
        total_steps: int = 1000,
        multi_crop: MultiCrop | None = None,
        freeze_last_layer_steps: int = 0,
        norm_last_layer: bool = True,
        head_batch_norm: bool = False,
    ):
        super().__init__(
            encoder, multi_crop.global_view if multi_crop else None
        )
        self.multi_crop = multi_crop or MultiCrop(
            ViewAugment(scale=(0.4, 1.0)),
            ViewAugment(size=16, scale=(0.05, 0.4)),
            2,
            4,
        )
        self.head = DINOHead(
            encoder_dim(encoder),
            out_dim,
            hidden_dim,
            bottleneck_dim,
            norm_last_layer,
            head_batch_norm,
        )
        self.teacher_encoder = copy.deepcopy(self.encoder)
        self.teacher_head = copy.deepcopy(self.head)
        for p in [
            *self.teacher_encoder.parameters(),
            *self.teacher_head.parameters(),
        ]:
            p.requires_grad_(False)
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.student_temp, self.teacher_temp, self.warmup_teacher_temp = (
            student_temp,
            teacher_temp,
            warmup_teacher_temp,
        )
        self.warmup_steps, self.center_momentum = warmup_steps, center_momentum
        self.base_momentum, self.total_steps = base_momentum, total_steps
        self.freeze_last_layer_steps = freeze_last_layer_steps

    def current_teacher_temp(self) -> float:
        """Linear warm-up from ``warmup_teacher_temp`` to ``teacher_temp`` over ``warmup_steps``."""
        if int(self.step) >= self.warmup_steps:
            return self.teacher_temp
        return (
            self.warmup_teacher_temp
            + (self.teacher_temp - self.warmup_teacher_temp)
            * int(self.step)
            / self.warmup_steps
        )

    def current_momentum(self) -> float:
        return cosine_schedule(
            int(self.step), self.total_steps, self.base_momentum, 1.0
        )

    @torch.no_grad()
    def momentum_update(self) -> None:
        """theta_t <- lambda theta_t + (1 - lambda) theta_s."""
        lam = self.current_momentum()
        ema_update(self.teacher_encoder, self.encoder, lam)
        ema_update(self.teacher_head, self.head, lam)

    @torch.no_grad()
    def update_center(self, teacher_out: Tensor) -> None:
        """c <- m c + (1 - m) * mean over the batch of the teacher's outputs."""
        batch_mean = teacher_out.float().mean(0, keepdim=True)  # [1, K]
        self.center.mul_(self.center_momentum).add_(
            batch_mean, alpha=1 - self.center_momentum
        )

    def _run(
        self,
        encoder: nn.Module,
        head: DINOHead,
        views: list[Tensor],
        freeze_last: bool = False,
    ) -> list[Tensor]:
        """Outputs per view; views of one resolution go through the network together."""
        outs: list[Tensor] = []
        start = 0
        while start < len(views):
            end = start
            while (
                end < len(views)
                and views[end].shape[-1] == views[start].shape[-1]
            ):
                end += 1
            y = head(
                encode(encoder, torch.cat(views[start:end])),
                freeze_last=freeze_last,
            )
            outs += list(y.chunk(end - start))
            start = end
        return outs

    def training_step(
        self, images: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        self.momentum_update()
        views = self.multi_crop(images)
        n_global = self.multi_crop.n_global
        with torch.no_grad():
            teacher = self._run(
                self.teacher_encoder, self.teacher_head, views[:n_global]
            )
        freeze = int(self.step) < self.freeze_last_layer_steps
        student = self._run(self.encoder, self.head, views, freeze_last=freeze)
        temp = self.current_teacher_temp()
        loss = dino_loss(
            student, teacher, self.center, self.student_temp, temp
        )
        t_all = torch.cat(teacher).float()
        with torch.no_grad():
            probs = torch.softmax((t_all - self.center) / temp, dim=-1)
            # entropy of the teacher's targets: ~0 when sharpening wins, log K when centring wins (both collapses)
            entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean()
        self.update_center(t_all)
        self.step += 1
        return loss, {
            "teacher_entropy": entropy,
            "z_std": _embedding_std(student[0]),
        }
