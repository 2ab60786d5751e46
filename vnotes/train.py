"""The one training loop every chapter uses: :func:`fit`.

Features, each optional: validation every epoch, per-step LR schedules, gradient clipping,
an exponential moving average of the weights (:class:`EMA`), early stopping that restores the
best weights (:class:`EarlyStopping`), atomic checkpoints with resume, bf16 autocast,
channels-last memory format for convolutions, ``torch.compile``, and PyTorch
DistributedDataParallel when the process group is initialised (``torchrun``).

The hot loop does not synchronise with the device: per-step losses stay on the device and
are read once per epoch (plus one progress-bar refresh every ``log_every`` steps).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .checkpoint import load_checkpoint, save_checkpoint
from .costs import StepMeter, note_training
from .runtime import autocast, pick_device, resolve_precision
from .scales import dry_run_steps

StepFn = Callable[
    [nn.Module, Any],
    "torch.Tensor | tuple[torch.Tensor, Mapping[str, torch.Tensor]]",
]
EvalFn = Callable[[nn.Module, Iterable], Mapping[str, float]]


# --------------------------------------------------------------------------- history
@dataclass
class History:
    """Everything :func:`fit` measured: ``history.step[key]`` per optimisation step, ``history.epoch[key]`` per epoch."""

    step: dict[str, list[float]] = field(default_factory=dict)
    epoch: dict[str, list[float]] = field(default_factory=dict)

    def log_steps(self, **values: list[float]) -> None:
        for k, v in values.items():
            self.step.setdefault(k, []).extend(float(x) for x in v)

    def log_epoch(self, **values: float) -> None:
        for k, v in values.items():
            self.epoch.setdefault(k, []).append(float(v))

    def __getitem__(self, key: str) -> list[float]:
        if key in self.epoch:
            return self.epoch[key]
        if key in self.step:
            return self.step[key]
        raise KeyError(
            f"{key!r} was not recorded; epoch keys: {sorted(self.epoch)}, step keys: {sorted(self.step)}"
        )

    def __contains__(self, key: str) -> bool:
        return key in self.epoch or key in self.step

    @property
    def epochs_run(self) -> int:
        return len(self.epoch.get("train_loss", []))

    def last(self, key: str) -> float:
        return self[key][-1]

    def best(self, key: str, mode: str = "max") -> float:
        values = self[key]
        return max(values) if mode == "max" else min(values)

    def state_dict(self) -> dict:
        return {"step": self.step, "epoch": self.epoch}

    @classmethod
    def from_state_dict(cls, state: dict) -> "History":
        return cls(
            step={k: list(v) for k, v in state["step"].items()},
            epoch={k: list(v) for k, v in state["epoch"].items()},
        )


# --------------------------------------------------------------------------- helpers
@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, decay: float) -> None:
    """theta_target <- decay * theta_target + (1 - decay) * theta_online  (buffers are copied)."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.lerp_(o.detach(), 1.0 - decay)
    for tb, ob in zip(target.buffers(), online.buffers()):
        tb.copy_(ob)


class EMA:
    """An exponential moving average of a model's weights (Polyak averaging), updated after every step."""

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay={decay} must lie in [0, 1)")
        self.decay = decay
        self.model = copy.deepcopy(_unwrap(model)).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def update(self, model: nn.Module) -> None:
        ema_update(self.model, _unwrap(model), self.decay)


class EarlyStopping:
    """Stop when ``monitor`` has not improved for ``patience`` epochs; optionally restore the best weights."""

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "min",
        patience: int = 5,
        min_delta: float = 0.0,
        restore_best: bool = True,
    ):
        if mode not in ("min", "max"):
            raise ValueError(f"mode={mode!r} must be 'min' or 'max'")
        if patience < 1:
            raise ValueError(f"patience={patience} must be at least 1")
        self.monitor, self.mode, self.patience = monitor, mode, patience
        self.min_delta, self.restore_best = min_delta, restore_best
        self.best_value = math.inf if mode == "min" else -math.inf
        self.best_epoch = -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_epochs = 0

    def _improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best_value - self.min_delta
        return value > self.best_value + self.min_delta

    def update(
        self, epoch: int, logs: Mapping[str, float], model: nn.Module
    ) -> bool:
        """Take one epoch's logs; return True when training should stop."""
        if self.monitor not in logs:
            raise KeyError(
                f"early stopping monitors {self.monitor!r}, but the epoch logged only {sorted(logs)}"
            )
        value = logs[self.monitor]
        if self._improved(value):
            self.best_value, self.best_epoch, self.bad_epochs = value, epoch, 0
            if self.restore_best:
                self.best_state = {
                    k: v.detach().clone()
                    for k, v in _unwrap(model).state_dict().items()
                }
            return False
        self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def restore(self, model: nn.Module) -> None:
        if self.restore_best and self.best_state is not None:
            _unwrap(model).load_state_dict(self.best_state)


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    return (
        getattr(model, "module", model)
        if isinstance(model, nn.parallel.DistributedDataParallel)
        else model
    )


def to_device(
    batch: Any, device: torch.device, channels_last: bool = False
) -> Any:
    """Move a tensor, or a tuple/list/dict of tensors, to ``device`` (4-D float tensors optionally channels-last)."""
    if isinstance(batch, torch.Tensor):
        if batch.device != device:
            batch = batch.to(device, non_blocking=True)
        if channels_last and batch.ndim == 4 and batch.is_floating_point():
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device, channels_last) for b in batch)
    if isinstance(batch, dict):
        return {
            k: to_device(v, device, channels_last) for k, v in batch.items()
        }
    return batch


def classification_step(loss_fn: Callable = F.cross_entropy) -> StepFn:
    """The default step: ``x, y = batch``; loss = ``loss_fn(model(x), y)``."""

    def step(model: nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch[0], batch[1]
        return loss_fn(model(x), y)

    return step


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    *,
    device: torch.device | None = None,
    precision: str = "fp32",
    loss_fn: Callable = F.cross_entropy,
) -> dict[str, float]:
    """Mean loss and accuracy of a classifier over ``loader`` (read from the device once, at the end)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    count = 0
    dry = dry_run_steps()
    for b, batch in enumerate(loader):
        if dry is not None and b >= dry:
            break
        x, y = to_device(batch, device)[:2]
        with autocast(device, precision):
            logits = model(x)
        total_loss += loss_fn(logits.float(), y, reduction="sum")
        correct += (logits.argmax(-1) == y).sum()
        count += y.shape[0]
    totals = torch.stack(
        [
            total_loss,
            correct.to(total_loss.dtype),
            torch.tensor(float(count), device=device),
        ]
    )
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(totals)
    model.train(was_training)
    loss, right, n = totals.tolist()
    if n == 0:
        raise ValueError("evaluate() got an empty loader")
    return {"loss": loss / n, "acc": right / n}


def accuracy(model: nn.Module, loader: Iterable, **kw: Any) -> float:
    """Share of correctly classified examples in ``loader``."""
    return evaluate(model, loader, **kw)["acc"]


def keep_best(
    epochs: int, monitor: str = "val_acc", mode: str = "max"
) -> EarlyStopping:
    """An :class:`EarlyStopping` that only keeps the best validation epoch's weights: its patience is the
    whole run, so training never stops early, and the model ends with the weights of its best epoch."""
    if epochs < 1:
        raise ValueError(f"epochs={epochs} must be at least 1")
    return EarlyStopping(monitor, mode=mode, patience=epochs)


def adamw_one_cycle(
    model: nn.Module,
    *,
    lr: float,
    total_steps: int,
    weight_decay: float,
    warmup: float = 0.1,
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.OneCycleLR]:
    """AdamW (Loshchilov & Hutter, 2019) over ``model``'s trainable parameters and a one-cycle schedule
    (Smith & Topin, 2019) that warms up for the share ``warmup`` of ``total_steps`` to ``lr``, then anneals."""
    if lr <= 0 or total_steps < 1 or not 0 < warmup < 1:
        raise ValueError(
            f"need lr > 0, total_steps >= 1 and 0 < warmup < 1; got {lr}, {total_steps}, {warmup}"
        )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=total_steps, pct_start=warmup
    )
    return optimizer, schedule


@torch.no_grad()
def correct_flags(
    model: nn.Module, loader: Iterable, *, device: torch.device | None = None
) -> torch.Tensor:
    """One bool per example of ``loader`` (on the CPU): is the model's top class right?

    The per-example record a paired bootstrap (:func:`vnotes.paired_bootstrap`) compares between two
    models scored on the same test split; call it once per finished model.
    """
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    flags = []
    dry = dry_run_steps()
    for b, batch in enumerate(loader):
        if dry is not None and b >= dry:
            break
        x, y = to_device(batch, device)[:2]
        flags.append((model(x).argmax(-1) == y).cpu())
    model.train(was_training)
    if not flags:
        raise ValueError("correct_flags() got an empty loader")
    return torch.cat(flags)


def _progress_enabled(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    return os.environ.get("VNOTES_PROGRESS", "1") not in ("0", "false", "no")


# --------------------------------------------------------------------------- the loop
def fit(
    model: nn.Module,
    train_loader: Iterable,
    *,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    loss_fn: Callable | None = None,
    step_fn: StepFn | None = None,
    val_loader: Iterable | None = None,
    eval_fn: EvalFn | None = None,
    scheduler: Any = None,
    scheduler_interval: str = "step",
    clip_grad_norm: float | None = None,
    ema: EMA | None = None,
    early_stopping: EarlyStopping | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    resume: bool = False,
    device: torch.device | str | None = None,
    precision: str = "auto",
    channels_last: bool | str = "auto",
    compile: bool = False,
    progress: bool | None = None,
    desc: str = "train",
    log_every: int = 50,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    verbose: bool = True,
) -> History:
    """Train ``model`` for ``epochs`` passes over ``train_loader`` and return its :class:`History`.

    ``step_fn(model, batch)`` returns the loss (or ``(loss, {name: tensor})``); by default it is
    cross-entropy of ``model(x)`` against ``y``. ``eval_fn(model, val_loader)`` returns a dict of
    validation numbers, logged with a ``val_`` prefix; by default loss and accuracy.
    """
    if epochs < 0 or int(epochs) != epochs:
        raise ValueError(f"epochs={epochs} must be a non-negative integer")
    if scheduler_interval not in ("step", "epoch"):
        raise ValueError(
            f"scheduler_interval={scheduler_interval!r} must be 'step' or 'epoch'"
        )
    if clip_grad_norm is not None and clip_grad_norm <= 0:
        raise ValueError(f"clip_grad_norm={clip_grad_norm} must be positive")
    if step_fn is not None and loss_fn is not None:
        raise ValueError("give either loss_fn or step_fn, not both")

    device = torch.device(device) if device is not None else pick_device()
    model.to(device)
    prec = resolve_precision(precision, device, model)
    dry = (
        dry_run_steps()
    )  # a dry run: at most this many epochs, and batches per epoch
    full_epochs = epochs
    if dry is not None:
        epochs = min(epochs, dry)
    # fp16 has a narrow range: small gradients underflow to zero unless the loss is scaled up first
    # (Micikevicius et al., 2018); bf16 has fp32's range and needs no scaler
    scaler = torch.amp.GradScaler(device.type) if prec == "fp16" else None
    if channels_last == "auto":
        channels_last = device.type == "cuda" and any(
            isinstance(m, nn.Conv2d) for m in model.modules()
        )
    if channels_last:
        model.to(memory_format=torch.channels_last)
    step_fn = step_fn or classification_step(loss_fn or F.cross_entropy)

    distributed = dist.is_available() and dist.is_initialized()
    net: nn.Module = model
    if distributed:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if compile:
        net = torch.compile(net)
    is_main = not distributed or dist.get_rank() == 0

    history = History()
    start_epoch = 0
    if (
        checkpoint_path is not None
        and resume
        and os.path.exists(checkpoint_path)
    ):
        state = load_checkpoint(checkpoint_path, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and "scheduler" in state:
            scheduler.load_state_dict(state["scheduler"])
        history = History.from_state_dict(state["history"])
        start_epoch = int(state["epoch"]) + 1

    try:
        steps_per_epoch = len(train_loader)  # type: ignore[arg-type]
    except TypeError:
        steps_per_epoch = None
    bar = None
    if _progress_enabled(progress) and is_main and epochs > start_epoch:
        from tqdm.auto import tqdm

        total = (
            steps_per_epoch * (epochs - start_epoch)
            if steps_per_epoch
            else None
        )
        bar = tqdm(total=total, desc=desc, leave=False)

    t_fit = time.perf_counter()
    stopped_early = False
    epoch = start_epoch - 1
    for epoch in range(start_epoch, epochs):
        net.train()
        t0 = time.perf_counter()
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        losses: list[torch.Tensor] = []
        lrs: list[float] = []
        norms: list[torch.Tensor] = []
        extras: dict[str, list[torch.Tensor]] = {}
        for i, batch in enumerate(train_loader):
            if dry is not None and i >= dry:
                break
            batch = to_device(batch, device, channels_last)
            # a dry run measures its first step: what the full run would cost (vnotes.costs)
            meter = (
                StepMeter()
                if dry is not None and epoch == start_epoch and i == 0
                else None
            )
            with meter or contextlib.nullcontext():
                with autocast(device, prec):
                    out = step_fn(net, batch)
                loss, extra = out if isinstance(out, tuple) else (out, {})
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(
                        optimizer
                    )  # clip and log the true gradient norm
                else:
                    loss.backward()
                if clip_grad_norm is not None:
                    norms.append(
                        torch.nn.utils.clip_grad_norm_(
                            net.parameters(), clip_grad_norm
                        )
                    )
                if scaler is not None:
                    scaler.step(
                        optimizer
                    )  # skipped when the scaled gradients overflowed
                    scaler.update()
                else:
                    optimizer.step()
            if meter is not None:
                note_training(
                    desc=desc,
                    model=model,
                    batch=batch,
                    meter=meter,
                    full_steps=(
                        steps_per_epoch * (full_epochs - start_epoch)
                        if steps_per_epoch
                        else None
                    ),
                    precision=precision,
                    device=device,
                )
            lrs.append(optimizer.param_groups[0]["lr"])
            if scheduler is not None and scheduler_interval == "step":
                scheduler.step()
            if ema is not None:
                ema.update(model)
            losses.append(loss.detach().float())
            for k, v in extra.items():
                extras.setdefault(k, []).append(
                    torch.as_tensor(v).detach().float()
                )
            if bar is not None:
                bar.update(1)
                if (i + 1) % log_every == 0:
                    bar.set_postfix(
                        epoch=epoch, loss=f"{losses[-1].item():.4f}"
                    )
        if scheduler is not None and scheduler_interval == "epoch":
            scheduler.step()

        # one synchronisation per epoch: read everything the steps left on the device
        step_losses = (
            torch.stack(losses) if losses else torch.zeros(0, device=device)
        )
        mean_loss = (
            step_losses.mean()
            if losses
            else torch.tensor(float("nan"), device=device)
        )
        if distributed:
            dist.all_reduce(
                mean_loss
            )  # SUM works on every backend (gloo has no AVG)
            mean_loss /= dist.get_world_size()
        history.log_steps(loss=step_losses.tolist(), lr=lrs)
        if norms:
            history.log_steps(grad_norm=torch.stack(norms).tolist())
        for k, v in extras.items():
            history.log_steps(**{k: torch.stack(v).tolist()})
        logs: dict[str, float] = {
            "train_loss": float(mean_loss),
            "lr": lrs[-1] if lrs else float("nan"),
        }
        for k, v in extras.items():
            logs[f"train_{k}"] = float(torch.stack(v).mean())

        if val_loader is not None:
            eval_model = ema.model if ema is not None else model
            if eval_fn is not None:
                was = eval_model.training
                eval_model.eval()
                with torch.no_grad():
                    results = eval_fn(eval_model, val_loader)
                eval_model.train(was)
            else:
                results = evaluate(
                    eval_model,
                    val_loader,
                    device=device,
                    precision=prec,
                    loss_fn=loss_fn or F.cross_entropy,
                )
            logs.update({f"val_{k}": float(v) for k, v in results.items()})
        logs["epoch_time"] = time.perf_counter() - t0
        history.log_epoch(**logs)
        if bar is not None:
            bar.set_postfix(
                epoch=epoch,
                **{
                    k: f"{v:.4f}"
                    for k, v in logs.items()
                    if k.startswith(("train_", "val_"))
                },
            )
        if on_epoch_end is not None:
            on_epoch_end(epoch, logs)
        if checkpoint_path is not None and is_main:
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "history": history.state_dict(),
                "epoch": epoch,
            }
            if scheduler is not None:
                state["scheduler"] = scheduler.state_dict()
            save_checkpoint(checkpoint_path, state)
        if not math.isfinite(logs["train_loss"]):
            stopped_early = True
            if verbose and is_main:
                print(
                    f"[{desc}] stopped at epoch {epoch}: the training loss is {logs['train_loss']} (diverged)"
                )
            break
        if early_stopping is not None and early_stopping.update(
            epoch, logs, model
        ):
            stopped_early = True
            break
    if bar is not None:
        bar.close()
    if early_stopping is not None:
        early_stopping.restore(model)
    seconds = time.perf_counter() - t_fit
    history.seconds = seconds  # type: ignore[attr-defined]
    if verbose and is_main and history.epochs_run:
        summary = ", ".join(
            f"{k} {v[-1]:.4g}"
            for k, v in history.epoch.items()
            if k.startswith(("train_", "val_"))
        )
        how = " (stopped early)" if stopped_early else ""
        print(
            f"[{desc}] {epoch + 1 - start_epoch} epochs in {seconds:.1f} s{how} on {device.type}/{prec}: {summary}"
        )
    return history
