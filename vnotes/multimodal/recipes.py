"""How the chapter's notebooks train their models: one recipe (AdamW, one-cycle schedule, :func:`vnotes.fit`)."""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from ..data import TensorLoader
from ..runtime import seed_everything
from ..train import EMA, History, adamw_one_cycle, fit


def train_model(
    model: nn.Module,
    tensors: tuple[Tensor, ...],
    step_fn: Callable,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float = 0.02,
    seed: int = 0,
    desc: str = "train",
    precision: str = "auto",
    val_loader=None,
    eval_fn=None,
    progress: bool | None = None,
    warmup: float = 0.1,
    ema_decay: float | None = None,
) -> History:
    """Train the trainable parameters of ``model`` on mini-batches of ``tensors`` with AdamW and a one-cycle schedule.

    With ``ema_decay`` the model ends up holding the exponential moving average of its weights (as diffusion
    models are sampled, Ho et al., 2020).
    """
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(
            f"need epochs >= 1, batch_size >= 1 and lr > 0; got {epochs}, {batch_size}, {lr}"
        )
    seed_everything(seed)
    loader = TensorLoader(
        *tensors,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        seed=seed,
    )
    if len(loader) == 0:
        raise ValueError(
            f"batch_size={batch_size} exceeds the {tensors[0].shape[0]} training examples"
        )
    opt, sched = adamw_one_cycle(
        model,
        lr=lr,
        total_steps=epochs * len(loader),
        weight_decay=weight_decay,
        warmup=warmup,
    )
    ema = EMA(model, ema_decay) if ema_decay is not None else None
    history = fit(
        model,
        loader,
        optimizer=opt,
        epochs=epochs,
        step_fn=step_fn,
        scheduler=sched,
        val_loader=val_loader,
        eval_fn=eval_fn,
        precision=precision,
        progress=progress,
        desc=desc,
        ema=ema,
    )
    if ema is not None:
        model.load_state_dict(ema.model.state_dict())
    return history
