"""vnotes.fit under DistributedDataParallel (gloo, two CPU processes) equals one process with the global batch."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from vnotes.data import TensorLoader
from vnotes.train import fit

STEPS_EPOCHS = 3
GLOBAL_BATCH = 32


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return x, y


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))


def _worker(rank, world, init_file, out_file):
    os.environ["VNOTES_PROGRESS"] = "0"
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
    )
    try:
        x, y = _data()
        model = _model()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        hist = fit(
            model,
            TensorLoader(
                x, y, batch_size=GLOBAL_BATCH // world, shuffle=True, seed=1
            ),
            optimizer=opt,
            epochs=STEPS_EPOCHS,
            device="cpu",
            verbose=False,
        )
        if rank == 0:
            torch.save(
                {
                    "params": [p.detach() for p in model.parameters()],
                    "epoch_loss": hist.epoch["train_loss"],
                },
                out_file,
            )
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_processes_equal_single_process(tmp_path):
    out = tmp_path / "ddp.pt"
    mp.spawn(
        _worker,
        args=(2, str(tmp_path / "init"), str(out)),
        nprocs=2,
        join=True,
    )
    ddp = torch.load(out, weights_only=True)

    x, y = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    hist = fit(
        model,
        TensorLoader(x, y, batch_size=GLOBAL_BATCH, shuffle=True, seed=1),
        optimizer=opt,
        epochs=STEPS_EPOCHS,
        device="cpu",
        verbose=False,
    )
    for p, q in zip(model.parameters(), ddp["params"]):
        torch.testing.assert_close(p.detach(), q, rtol=1e-5, atol=1e-6)
    assert ddp["epoch_loss"] == pytest.approx(
        hist.epoch["train_loss"], rel=1e-5
    )
