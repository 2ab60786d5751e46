"""What a page's training would cost at ``full``, measured during a dry run (``$VNOTES_DRY_RUN``).

In a dry run every training loop runs a couple of steps of the page's ``full`` configuration. :func:`vnotes.fit`
measures its first step here -- floating-point operations (counted by PyTorch's ``FlopCounterMode``) and the
memory the step allocates (every new tensor storage, freed when PyTorch frees it) -- and notes how many steps
the real run would take. The notes go to ``<metrics dir>/<scale>-dry/<notebook>.costs.json`` beside the dry
run's metrics; ``benchmarks/full_costs.py`` turns them into predicted GPU times. Outside a dry run nothing here
runs, so ordinary training pays nothing for it.
"""

from __future__ import annotations

import json
import weakref
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from . import record

# the training runs this process noted, in order (one kernel = one page)
RUNS: list[dict[str, Any]] = []


class PeakMemory(TorchDispatchMode):
    """Tracks the bytes of tensor storages created inside the ``with`` block and still alive: ``peak`` is their maximum.

    An operation's output counts as new memory when its storage is none of its inputs' (in-place updates and
    views allocate nothing); the storage is subtracted again when it is freed. Memory that existed before the
    block (the weights, the batch) is not counted.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self.ops = 0  # operations that write memory: on a GPU, about one kernel launch each
        self._tracked: set[int] = set()

    def _freed(self, key: int, nbytes: int) -> None:
        self._tracked.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {
            a.untyped_storage().data_ptr()
            for a in tree_flatten((args, kwargs))[0]
            if isinstance(a, torch.Tensor)
        }
        # a kernel on a GPU: an operation that writes memory (a new tensor, or one updated in place);
        # views and other metadata-only operations launch nothing
        writes = func._schema.name.endswith("_") or func._schema.is_mutable
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key in inputs or key in self._tracked or key == 0:
                continue
            writes = True
            nbytes = storage.nbytes()
            self._tracked.add(key)
            self.live += nbytes
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._freed, key, nbytes)
        self.ops += writes
        return out


class StepMeter:
    """``with StepMeter() as m: <one training step>`` -> ``m.flops``, ``m.peak_bytes`` and ``m.ops`` of that step."""

    def __init__(self) -> None:
        self.flops = 0
        self.peak_bytes = 0
        self.ops = 0
        self._flops = FlopCounterMode(display=False)
        self._memory = PeakMemory()

    def __enter__(self) -> StepMeter:
        self._flops.__enter__()
        self._memory.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._memory.__exit__(*exc)
        self._flops.__exit__(*exc)
        self.flops = int(self._flops.get_total_flops())
        self.peak_bytes = int(self._memory.peak)
        self.ops = self._memory.ops


def tensor_bytes(*objects: Any) -> int:
    """Bytes held by every tensor in ``objects`` (nested lists, tuples and dicts; modules: their parameters and buffers)."""
    total = 0
    for obj in objects:
        if isinstance(obj, torch.nn.Module):
            obj = [*obj.parameters(), *obj.buffers()]
        for t in tree_flatten(obj)[0]:
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total


def note_training(
    *,
    desc: str,
    model: torch.nn.Module,
    batch: Any,
    meter: StepMeter,
    full_steps: int | None,
    precision: str,
    device: torch.device,
) -> dict[str, Any]:
    """Note one training run of a dry run (what :func:`vnotes.fit` calls) and write the page's costs file."""
    current = record.current_recorder()
    row = {
        "notebook": current.notebook if current is not None else None,
        "desc": desc,
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(
            p.numel() for p in model.parameters() if p.requires_grad
        ),
        "flops_per_step": meter.flops,
        "ops_per_step": meter.ops,
        "full_steps": full_steps,
        # the weights and one batch, which exist before the step, plus what the step allocates
        "peak_bytes": tensor_bytes(model, batch) + meter.peak_bytes,
        "precision": precision,
        "measured_on": device.type,
    }
    RUNS.append(row)
    _write()
    return row


def _write() -> None:
    current = record.current_recorder()
    if current is None:
        return
    path = current.path.with_name(f"{current.notebook}.costs.json")
    runs = [r for r in RUNS if r["notebook"] == current.notebook]
    payload = {
        "notebook": current.notebook,
        "scale": current.scale,
        "runs": runs,
    }
    record.atomic_write_text(path, json.dumps(payload, indent=1))
