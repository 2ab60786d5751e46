"""Train a chapter's model at the `full` scale on one or several GPUs (or CPU processes) with `vnotes.fit`.

One process per GPU, launched by torchrun; several machines join through torchrun's rendezvous:

    torchrun --nproc_per_node=8 tools/train_ddp.py --epochs 30
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 tools/train_ddp.py
    python tools/train_ddp.py --epochs 2 --images 4096      # a single process works too

`fit` wraps the model in DistributedDataParallel when the process group is initialised; each
process's `TensorLoader` takes its share of every epoch (the global batch is batch x processes) and
the logged losses and validation metrics are averaged over processes.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist

from vnotes import fit, pick_device, seed_everything
from vnotes.cnn import resnet_mini
from vnotes.data import TensorLoader, make_scenes


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--images",
        type=int,
        default=100_000,
        help="toy-world training images (full scale)",
    )
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument(
        "--batch", type=int, default=256, help="per-process batch size"
    )
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.1)
    args = ap.parse_args()

    if "RANK" in os.environ:  # launched by torchrun
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    device = (
        torch.device("cuda", torch.cuda.current_device())
        if torch.cuda.is_available()
        else pick_device()
    )
    seed_everything(0)
    train = make_scenes(
        args.images, seed=0, split="train", max_objects=1, noise=0.03
    )
    val = make_scenes(
        max(2_000, args.images // 20),
        seed=0,
        split="val",
        max_objects=1,
        noise=0.03,
    )
    model = resnet_mini(num_classes=6, width=args.width, blocks=(2, 2, 2))
    opt = torch.optim.SGD(
        model.parameters(),
        lr=args.lr,
        momentum=0.9,
        weight_decay=5e-4,
        nesterov=True,
    )
    steps = args.epochs * (
        args.images
        // (
            args.batch
            * (dist.get_world_size() if dist.is_initialized() else 1)
        )
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=max(steps, 1)
    )
    hist = fit(
        model,
        TensorLoader(
            train.images,
            train.labels("shape"),
            batch_size=args.batch,
            shuffle=True,
            drop_last=True,
            device=device,
        ),
        optimizer=opt,
        epochs=args.epochs,
        scheduler=sched,
        device=device,
        val_loader=TensorLoader(
            val.images, val.labels("shape"), batch_size=1024, device=device
        ),
        desc="resnet_mini",
    )
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(f"final validation accuracy {hist.last('val_acc'):.4f}")
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
