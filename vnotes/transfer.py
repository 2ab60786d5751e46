"""Transfer learning and knowledge distillation (chapter 8a, ``chapters/08a_transfer_distillation``).

* Transfer: a network pretrained on one task is reused for another with little data. :class:`TransferNet`
  puts a new head on a pretrained backbone and freezes what the chosen :data:`TRANSFER_MODES` entry says
  (linear probe, fine-tune the top, fine-tune everything); :func:`layerwise_param_groups` gives earlier
  layers smaller learning rates (discriminative fine-tuning, Howard & Ruder, 2018).
* Distillation (Hinton, Vinyals & Dean, 2015): :func:`soft_targets`, :func:`distillation_loss` and the
  :func:`vnotes.fit` step :func:`distillation_step`.
* Several teachers: :func:`multi_teacher_targets` mixes their soft targets with per-sample weights;
  :func:`uniform_teacher_weights` is the plain average and :func:`curriculum_teacher_weights` a rule-based
  form of reinforced multi-teacher selection (Yuan et al., 2021): a student that is still weak on an example
  follows the teacher closest to itself, a student that already knows it follows the most correct teacher.
"""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "TRANSFER_MODES",
    "TransferNet",
    "layer_groups",
    "layerwise_param_groups",
    "transfer_optimizer",
    "soft_targets",
    "distillation_loss",
    "distillation_step",
    "multi_teacher_targets",
    "uniform_teacher_weights",
    "curriculum_teacher_weights",
    "correctness_teacher_weights",
    "multi_teacher_step",
    "TinyConvNet",
    "teacher_logits",
    "TEACHER_WEIGHTINGS",
    "snapshot",
]

# which layer groups of the backbone learn, per transfer mode ("head" is always new and always learns)
TRANSFER_MODES: dict[str, str] = {
    "scratch": "every layer, from random initialisation",
    "linear_probe": "only the new linear head; the pretrained backbone is frozen (BatchNorm statistics too)",
    "finetune_top": "the last residual stage and the head; earlier layers stay frozen",
    "finetune_full": "every layer, earlier ones with smaller learning rates",
}


# --------------------------------------------------------------------------- transfer
def layer_groups(backbone: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """A :class:`vnotes.cnn.ResNet`'s layers, input to output: ``[("stem", [conv1, bn1]), ("layer1", [...]), ...]``."""
    if not hasattr(backbone, "stages") or not hasattr(backbone, "conv1"):
        raise TypeError(
            f"layer_groups expects a vnotes.cnn ResNet, got {type(backbone).__name__}"
        )
    groups = [("stem", [backbone.conv1, backbone.bn1])]
    groups += [
        (f"layer{i + 1}", [stage]) for i, stage in enumerate(backbone.stages())
    ]
    return groups


class TransferNet(nn.Module):
    """A pretrained backbone with a new linear head; layers outside ``trainable`` are frozen.

    Frozen layers keep ``requires_grad=False`` *and* stay in eval mode even when :func:`vnotes.fit` calls
    ``model.train()``: otherwise BatchNorm would keep re-estimating its statistics and the "frozen"
    features would drift.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        mode: str = "finetune_full",
    ):
        super().__init__()
        if mode not in TRANSFER_MODES:
            raise ValueError(
                f"mode={mode!r} is unknown; allowed: {tuple(TRANSFER_MODES)}"
            )
        if num_classes < 1:
            raise ValueError(f"num_classes={num_classes} must be positive")
        self.mode = mode
        self.backbone = backbone
        self.head = nn.Linear(backbone.num_features, num_classes)
        groups = layer_groups(backbone)
        names = [n for n, _ in groups]
        trainable = {"linear_probe": [], "finetune_top": names[-1:]}.get(
            mode, names
        )
        self.frozen: list[nn.Module] = []
        for name, modules in groups:
            for m in modules:
                m.requires_grad_(name in trainable)
                if name not in trainable:
                    self.frozen.append(m)
        if hasattr(backbone, "fc"):  # the pretraining head is not used
            backbone.fc.requires_grad_(False)
        self.train()

    def train(self, mode: bool = True) -> "TransferNet":
        super().train(mode)
        for m in self.frozen:
            m.eval()
        return self

    def forward_features(self, x: Tensor) -> Tensor:
        return self.backbone.forward_features(x)  # [B, num_features]

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x))  # [B, num_classes]


def layerwise_param_groups(
    model: TransferNet, lr: float, decay: float = 0.3
) -> list[dict]:
    """Parameter groups with lr_l = lr * decay^(L - l) for layer group l of L (the head gets ``lr``).

    Earlier layers hold generic features (edges, colours) that the new task can reuse, so they move less
    (Yosinski et al., 2014; Howard & Ruder, 2018). Frozen parameters are left out.
    """
    if lr <= 0 or not 0 < decay <= 1:
        raise ValueError(
            f"lr={lr} must be positive and decay={decay} must lie in (0, 1]"
        )
    groups = layer_groups(model.backbone)
    out = []
    L = len(groups)
    for depth, (name, modules) in enumerate(groups):
        params = [
            p for m in modules for p in m.parameters() if p.requires_grad
        ]
        if params:
            out.append(
                {
                    "params": params,
                    "lr": lr * decay ** (L - depth),
                    "name": name,
                }
            )
    out.append(
        {"params": list(model.head.parameters()), "lr": lr, "name": "head"}
    )
    return out


def transfer_optimizer(
    model: TransferNet,
    lr: float,
    weight_decay: float = 1e-4,
    decay: float = 0.3,
) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters: layer-wise learning rates for ``finetune_full``, one ``lr`` otherwise."""
    if model.mode == "finetune_full":
        groups = layerwise_param_groups(model, lr, decay)
    else:
        groups = [
            {
                "params": [p for p in model.parameters() if p.requires_grad],
                "lr": lr,
                "name": "trainable",
            }
        ]
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


# --------------------------------------------------------------------------- distillation
class TinyConvNet(nn.Module):
    """A deliberately small student: two 3x3 conv layers of ``width`` channels with pooling, then a linear head."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 8):
        super().__init__()
        if num_classes < 1 or in_channels < 1 or width < 1:
            raise ValueError(
                f"num_classes={num_classes}, in_channels={in_channels}, width={width} must be positive"
            )
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # [B, w, H/2, W/2]
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # [B, 2w, H/4, W/4]
        )
        self.num_features = 2 * width
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(
            self.features(x).amax((2, 3))
        )  # global max pool -> [B, num_classes]


def soft_targets(logits: Tensor, temperature: float) -> Tensor:
    """q_i = exp(z_i / T) / sum_j exp(z_j / T): a softened class distribution (Hinton et al., 2015, Eq. 1)."""
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be positive")
    return (logits.float() / temperature).softmax(-1)


def distillation_loss(
    student_logits: Tensor,
    teacher_probs: Tensor,
    labels: Tensor | None,
    temperature: float,
    alpha: float = 0.9,
) -> Tensor:
    """L = alpha * T^2 * KL(q_teacher(T) || p_student(T)) + (1 - alpha) * CE(p_student(1), y)  (Hinton et al., 2015).

    ``teacher_probs`` are already-softened targets ``[B, C]`` (from :func:`soft_targets` or a mixture of teachers).
    The T^2 factor keeps the soft term's gradients, which scale as 1/T^2, comparable as T changes.
    With ``labels=None`` (or ``alpha=1``) only the soft term is used; labels of -1 mark unlabelled examples of
    the transfer set, which get the soft term only (the hard term averages over the labelled ones).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha} must lie in [0, 1]")
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be positive")
    log_p = F.log_softmax(
        student_logits.float() / temperature, -1
    )  # [B, C] log p_student(T)
    q = teacher_probs.float()
    # KL(q || p) = sum_i q_i (log q_i - log p_i), averaged over the batch (0 log 0 := 0)
    kl = (q * (torch.log(q.clamp(min=1e-12)) - log_p)).sum(-1).mean()
    soft = temperature**2 * kl
    if labels is None or alpha == 1.0:
        return soft
    labelled = labels >= 0
    if not labelled.any():
        return alpha * soft
    hard = F.cross_entropy(student_logits.float()[labelled], labels[labelled])
    return alpha * soft + (1 - alpha) * hard


@torch.no_grad()
def teacher_logits(
    teachers: Sequence[nn.Module], x: Tensor, batch_size: int = 512
) -> Tensor:
    """Logits of every teacher on ``x`` (teachers in eval mode, ``batch_size`` images at a time): ``[K, B, C]``."""
    outs = []
    for t in teachers:
        was = t.training
        t.eval()
        outs.append(
            torch.cat(
                [
                    t(x[i : i + batch_size]).float()
                    for i in range(0, x.shape[0], batch_size)
                ]
            )
        )
        t.train(was)
    return torch.stack(outs)


def _cached_or_computed(
    teachers: Sequence[nn.Module] | None, batch: tuple[Tensor, ...]
) -> Tensor:
    """Teacher logits ``[K, B, C]``: from ``batch[2]`` (``[B, K, C]``, cached once for fixed data) or computed now."""
    if len(batch) > 2:
        z = batch[2]
        return (z[:, None] if z.ndim == 2 else z).transpose(0, 1).float()
    if not teachers:
        raise ValueError(
            "give teachers, or batches (x, y, teacher_logits) with the teachers' logits cached"
        )
    return teacher_logits(teachers, batch[0])


def distillation_step(
    teacher: nn.Module | None = None,
    temperature: float = 4.0,
    alpha: float = 0.9,
) -> Callable:
    """A :func:`vnotes.fit` step: the student learns from ``teacher``'s soft targets and the labels.

    Batches are ``(x, y)`` (the teacher runs on ``x``) or ``(x, y, teacher_logits)`` when the teacher's
    outputs were cached once with :func:`teacher_logits` -- the same numbers, computed once, because the
    training images never change (no augmentation).
    """
    teachers = [teacher] if teacher is not None else None

    def step(
        student: nn.Module, batch: tuple[Tensor, ...]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        x, y = batch[0], batch[1]
        q = soft_targets(
            _cached_or_computed(teachers, batch)[0], temperature
        )  # [B, C]
        logits = student(x)
        loss = distillation_loss(logits, q, y, temperature, alpha)
        return loss, {
            "soft_agreement": (logits.detach().argmax(-1) == q.argmax(-1))
            .float()
            .mean()
        }

    return step


# --------------------------------------------------------------------------- several teachers
def multi_teacher_targets(
    teacher_logits_: Tensor, weights: Tensor, temperature: float
) -> Tensor:
    """q(x) = sum_k w_k(x) softmax(z_k(x) / T): per-sample mixture of the teachers' soft targets, ``[B, C]``.

    ``teacher_logits_`` ``[K, B, C]``; ``weights`` ``[B, K]``, non-negative rows summing to one.
    """
    K, B, _ = teacher_logits_.shape
    if weights.shape != (B, K):
        raise ValueError(
            f"weights must have shape (B, K) = {(B, K)}; got {tuple(weights.shape)}"
        )
    if (weights < 0).any() or not torch.allclose(
        weights.sum(1), torch.ones(B, device=weights.device), atol=1e-5
    ):
        raise ValueError(
            "teacher weights must be non-negative and sum to one for every sample"
        )
    q = soft_targets(teacher_logits_, temperature)  # [K, B, C]
    return torch.einsum("bk,kbc->bc", weights.float(), q)


def uniform_teacher_weights(
    student_logits: Tensor, teacher_logits_: Tensor, labels: Tensor
) -> Tensor:
    """w_k = 1/K for every sample: the plain average of the teachers."""
    K, B, _ = teacher_logits_.shape
    return torch.full((B, K), 1.0 / K, device=teacher_logits_.device)


def curriculum_teacher_weights(
    student_logits: Tensor,
    teacher_logits_: Tensor,
    labels: Tensor,
    sharpness: float = 5.0,
    select_correct: bool = True,
) -> Tensor:
    """Per-sample teacher weights that follow the student's competence (a rule-based stand-in for the
    reinforcement-learned selection policy of Yuan et al., 2021).

    With s = p_student(y | x) the student's current confidence in the true class (0: weak, 1: strong),
    teacher k scores  d_k = (1 - s) KL(p_k || p_student) + s CE(p_k, y):  a weak student is sent to the
    teacher whose predictions are closest to its own, a strong one to the teacher that is most correct.
    w_k = softmax_k(-sharpness * d_k). With ``select_correct`` a teacher whose top class is wrong on the
    example is not selected for it (the paper's policy selects teachers per example); where every teacher
    is wrong, all keep their weights.
    """
    if sharpness <= 0:
        raise ValueError(f"sharpness={sharpness} must be positive")
    if (labels < 0).any():
        raise ValueError(
            "curriculum_teacher_weights needs a label for every example (it judges teachers by them)"
        )
    log_ps = F.log_softmax(student_logits.detach().float(), -1)  # [B, C]
    log_pt = F.log_softmax(teacher_logits_.float(), -1)  # [K, B, C]
    s = log_ps.gather(1, labels[:, None]).exp()[
        :, 0
    ]  # [B] student competence on this example
    kl = (log_pt.exp() * (log_pt - log_ps[None])).sum(
        -1
    )  # [K, B] KL(p_k || p_student)
    ce = -log_pt.gather(
        2, labels[None, :, None].expand(log_pt.shape[0], -1, 1)
    )[..., 0]  # [K, B]
    d = (1 - s)[None] * kl + s[None] * ce  # [K, B]
    if select_correct:
        right = log_pt.argmax(-1) == labels[None]  # [K, B]
        right = right | ~right.any(
            0, keepdim=True
        )  # nobody right: keep everyone
        d = d.masked_fill(~right, float("inf"))
    return torch.softmax(-sharpness * d, 0).T  # [B, K]


def correctness_teacher_weights(
    student_logits: Tensor,
    teacher_logits_: Tensor,
    labels: Tensor,
    sharpness: float = 5.0,
) -> Tensor:
    """w_k = softmax_k(-sharpness * CE(p_k, y)): always trust the teacher that is most right on the example.

    The strong end of :func:`curriculum_teacher_weights` (s = 1) from the first step, without the curriculum;
    close to confidence-aware multi-teacher distillation (Zhang et al., 2022).
    """
    if sharpness <= 0:
        raise ValueError(f"sharpness={sharpness} must be positive")
    if (labels < 0).any():
        raise ValueError(
            "correctness_teacher_weights needs a label for every example"
        )
    log_pt = F.log_softmax(teacher_logits_.float(), -1)  # [K, B, C]
    ce = -log_pt.gather(
        2, labels[None, :, None].expand(log_pt.shape[0], -1, 1)
    )[..., 0]  # [K, B]
    return torch.softmax(-sharpness * ce, 0).T  # [B, K]


TEACHER_WEIGHTINGS: dict[str, Callable] = {
    "uniform": uniform_teacher_weights,
    "curriculum": curriculum_teacher_weights,
    "correctness": correctness_teacher_weights,
}


def multi_teacher_step(
    teachers: Sequence[nn.Module] | None = None,
    weighting: str = "curriculum",
    temperature: float = 4.0,
    alpha: float = 0.9,
) -> Callable:
    """A :func:`vnotes.fit` step distilling from several teachers, mixed by ``weighting`` (:data:`TEACHER_WEIGHTINGS`).

    Batches are ``(x, y)`` or ``(x, y, teacher_logits [B, K, C])`` with the logits cached. Logs the mean weight
    each teacher received (``w0``, ``w1``, ...), so the curriculum can be plotted.
    """
    if weighting not in TEACHER_WEIGHTINGS:
        raise ValueError(
            f"weighting={weighting!r} is unknown; allowed: {tuple(TEACHER_WEIGHTINGS)}"
        )
    rule = TEACHER_WEIGHTINGS[weighting]

    def step(
        student: nn.Module, batch: tuple[Tensor, ...]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        x, y = batch[0], batch[1]
        z_t = _cached_or_computed(teachers, batch)  # [K, B, C]
        logits = student(x)
        w = rule(logits, z_t, y)  # [B, K]
        q = multi_teacher_targets(z_t, w, temperature)
        loss = distillation_loss(logits, q, y, temperature, alpha)
        return loss, {f"w{k}": w[:, k].mean() for k in range(w.shape[1])}

    return step


def snapshot(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` in eval mode (to keep a teacher as it is now)."""
    twin = copy.deepcopy(model).eval()
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin
