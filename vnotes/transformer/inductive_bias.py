"""Inductive bias: a CNN and a ViT as the training set grows (chapter 4, ``chapters/04f_inductive_bias``).

A convolution looks at a small neighbourhood (locality) with the same weights everywhere, so a
shifted input gives a shifted feature map (translation equivariance); after global average
pooling the class barely moves. A ViT (Dosovitskiy et al., 2021) has neither built in: it sees
patches through learned 1-D position embeddings and must learn from data that a shape is the same
shape anywhere. The paper's Fig. 3-4: ViTs lose to ResNets on small data and catch up with more.

* :func:`matched_pair` -- a toy ViT and a mini ResNet of about the same parameter count
* :func:`train_and_test` -- one training run (best validation epoch kept), scored once on test
* :func:`shift_images` -- move image content by whole pixels, filling the uncovered border
* :func:`shift_directions` -- per image, the signs that move its object towards the free side
* :func:`shift_probe` -- accuracy and changed predictions of a model under growing shifts
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..cnn.common import count_parameters
from ..cnn.resnet import resnet_mini
from ..data import TensorLoader
from ..train import adamw_one_cycle, fit, keep_best
from ..runtime import seed_everything
from .vit import vit_toy


def matched_pair(
    num_classes: int = 6,
    image_size: int = 16,
    *,
    vit: dict | None = None,
    cnn: dict | None = None,
    max_ratio: float = 1.25,
    seed: int = 0,
) -> tuple[nn.Module, nn.Module]:
    """A toy ViT (Dosovitskiy et al., 2021) and a mini ResNet (He et al., 2016) whose parameter counts differ by at most ``max_ratio``.

    ``vit`` holds keyword arguments of :func:`vnotes.transformer.vit_toy`, ``cnn`` those of
    :func:`vnotes.cnn.resnet.resnet_mini`; the pair is built as given, and a ValueError says the
    two counts when they are further apart than ``max_ratio`` (larger / smaller). Each model's initial
    weights are drawn after seeding with ``seed``.
    """
    if max_ratio < 1:
        raise ValueError(f"max_ratio={max_ratio} must be at least 1")
    seed_everything(seed)
    vit_model = vit_toy(
        num_classes=num_classes, image_size=image_size, **(vit or {})
    )
    seed_everything(seed)
    cnn_model = resnet_mini(num_classes=num_classes, **(cnn or {}))
    n_vit, n_cnn = count_parameters(vit_model), count_parameters(cnn_model)
    ratio = max(n_vit, n_cnn) / min(n_vit, n_cnn)
    if ratio > max_ratio:
        raise ValueError(
            f"the ViT has {n_vit:,} parameters and the CNN {n_cnn:,}: ratio {ratio:.2f} > max_ratio={max_ratio}"
        )
    return vit_model, cnn_model


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, batch_size: int = 500) -> Tensor:
    """The model's top class for each image, ``[N]`` (eval mode)."""
    model.eval()
    dev = next(model.parameters()).device
    return torch.cat(
        [
            model(images[i : i + batch_size].to(dev)).argmax(-1).cpu()
            for i in range(0, len(images), batch_size)
        ]
    )


def train_and_test(
    model: nn.Module,
    train: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    *,
    epochs: int,
    lr: float,
    batch_size: int = 64,
    seed: int = 0,
    precision: str = "fp32",
    desc: str = "train",
) -> dict:
    """Train with AdamW and a one-cycle schedule, keep the best validation epoch's weights, then score the test split once.

    The same recipe for every model and training-set size: ``epochs`` passes over the training set
    (so a smaller set gets proportionally fewer steps). Returns ``test_accuracy``, ``val_accuracy``
    (of the kept epoch), ``best_epoch`` (from 1) and ``steps``.
    """
    if epochs < 1:
        raise ValueError(f"epochs={epochs} must be at least 1")
    x_train, y_train = train
    if len(x_train) < 1:
        raise ValueError("the training set is empty")
    seed_everything(seed)
    loader = TensorLoader(
        x_train, y_train, batch_size=batch_size, shuffle=True, seed=seed
    )
    steps = epochs * len(loader)
    if steps < 4:
        raise ValueError(
            f"{len(x_train)} training images in batches of {batch_size} for {epochs} epoch(s) make {steps} step; "
            "the one-cycle schedule needs at least 4"
        )
    opt, sched = (
        adamw_one_cycle(  # warm up for 10 % of the run, at least 2 steps
            model,
            lr=lr,
            total_steps=steps,
            weight_decay=0.05,
            warmup=max(0.1, 2 / steps),
        )
    )
    stopper = keep_best(
        epochs
    )  # never stops early; ends with the best validation epoch's weights
    history = fit(
        model,
        loader,
        optimizer=opt,
        scheduler=sched,
        epochs=epochs,
        val_loader=TensorLoader(*val, batch_size=500),
        early_stopping=stopper,
        precision=precision,
        desc=desc,
        verbose=False,
    )
    x_test, y_test = test
    test_accuracy = (predict(model, x_test) == y_test).float().mean().item()
    return {
        "test_accuracy": test_accuracy,
        "val_accuracy": history.best("val_acc"),
        "best_epoch": stopper.best_epoch + 1,
        "steps": steps,
    }


def shift_images(
    images: Tensor,
    dx: int | Tensor,
    dy: int | Tensor,
    fill: str | float = "border",
) -> Tensor:
    """Move each image's content ``dx`` pixels right and ``dy`` down (negative: left, up); the uncovered border gets ``fill``.

    ``dx`` and ``dy`` are integers or ``[N]`` integer tensors (one shift per image). ``fill="border"``
    fills with each image's median border colour (on the toy world's plain backgrounds: exactly the
    background, the same for every class), ``"edge"`` repeats the nearest border pixel, a number
    fills with that value.
    """
    if images.dim() != 4:
        raise ValueError(
            f"images must be [N, C, H, W], got shape {tuple(images.shape)}"
        )
    N, _, H, W = images.shape
    dx = torch.as_tensor(dx).expand(N)
    dy = torch.as_tensor(dy).expand(N)
    if dx.is_floating_point() or dy.is_floating_point():
        raise ValueError("dx and dy must be whole pixels (integers)")
    if dx.abs().max() >= W or dy.abs().max() >= H:
        raise ValueError(
            f"shifts up to |dx|={dx.abs().max().item()}, |dy|={dy.abs().max().item()} "
            f"must be smaller than the image ({W}x{H})"
        )
    if not (fill in ("border", "edge") or isinstance(fill, (int, float))):
        raise ValueError(f"fill={fill!r} must be 'border', 'edge' or a number")
    # output pixel (y, x) reads input pixel (y - dy, x - dx)
    cols = torch.arange(W)[None, :] - dx[:, None]  # [N, W]
    rows = torch.arange(H)[None, :] - dy[:, None]  # [N, H]
    inside = ((cols >= 0) & (cols < W))[:, None, :] & (
        (rows >= 0) & (rows < H)
    )[:, :, None]  # [N, H, W]
    cols, rows = (
        cols.clamp(0, W - 1),
        rows.clamp(0, H - 1),
    )  # "edge": nearest border pixel
    index = torch.arange(N)[:, None, None]
    out = images.permute(0, 2, 3, 1)[
        index, rows[:, :, None], cols[:, None, :]
    ]  # [N, H, W, C]
    out = out.permute(0, 3, 1, 2).contiguous()
    if fill == "border":
        rim = torch.cat(
            [
                images[..., 0, :],
                images[..., -1, :],
                images[..., 0],
                images[..., -1],
            ],
            dim=-1,
        )  # [N, C, 2W + 2H]
        background = rim.median(-1).values[..., None, None]  # [N, C, 1, 1]
        out = torch.where(inside[:, None], out, background.expand_as(out))
    elif fill != "edge":
        out = torch.where(inside[:, None], out, torch.full_like(out, fill))
    return out


def shift_directions(
    boxes: Tensor, image_size: int
) -> tuple[Tensor, Tensor, Tensor]:
    """For object boxes ``[N, 4]`` (x0, y0, x1, y1), the signs ``sx, sy`` (+1 or -1) towards the freer side, and the room there.

    Returns ``(sx, sy, room)``: shifting by ``(s * sx, s * sy)`` keeps the whole object inside the
    image for every ``s <= room``. The direction depends on where the object is, never on its shape.
    """
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(
            f"boxes must be [N, 4] (x0, y0, x1, y1), got shape {tuple(boxes.shape)}"
        )
    x0, y0, x1, y1 = boxes.unbind(1)
    right, left = image_size - x1, x0
    down, up = image_size - y1, y0
    sx = torch.where(right >= left, 1, -1)
    sy = torch.where(down >= up, 1, -1)
    room = torch.minimum(torch.maximum(right, left), torch.maximum(down, up))
    # boxes hold pixels at least 25 % covered; the anti-aliased rim can reach one pixel further
    return sx, sy, (room.floor().long() - 1).clamp(min=0)


def shift_probe(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    boxes: Tensor,
    shifts: Sequence[int],
    fill: str | float = "border",
) -> list[dict]:
    """Accuracy of ``model`` on images whose object is moved ``s`` pixels right/left and down/up, for each ``s`` in ``shifts``.

    Only images with room for the largest shift are used (the object stays whole at every shift),
    so any loss comes from where the object is, not from losing part of it. Per shift: ``accuracy``,
    ``drop`` (accuracy at shift 0 minus this) and ``changed`` (share of predictions that differ from
    the unshifted ones).
    """
    shifts = [int(s) for s in shifts]
    if not shifts or min(shifts) < 0:
        raise ValueError(f"shifts={shifts} must be non-negative pixel counts")
    sx, sy, room = shift_directions(boxes, images.shape[-1])
    keep = room >= max(shifts)
    if not keep.any():
        raise ValueError(
            f"no image has room for a shift of {max(shifts)} pixels"
        )
    x, y, sx, sy = images[keep], labels[keep], sx[keep], sy[keep]
    base = predict(model, x)
    base_acc = (base == y).float().mean().item()
    rows = []
    for s in shifts:
        pred = predict(model, shift_images(x, s * sx, s * sy, fill=fill))
        acc = (pred == y).float().mean().item()
        rows.append(
            {
                "shift": s,
                "images": int(keep.sum()),
                "accuracy": acc,
                "drop": base_acc - acc,
                "changed": (pred != base).float().mean().item(),
            }
        )
    return rows
