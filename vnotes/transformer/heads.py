"""One head or several? The notes' comparison table turned into measurements (``chapters/04a_attention``).

The task (:func:`offset_gather_task`): at every position the model must name the tuple of
tokens found K fixed steps back. A one-layer model has to bring K different tokens into one
position; with h heads each head can fetch one, with one head they arrive as one weighted average.
Every model here has the same width and the same number of parameters; only the split into heads differs.
"""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

import torch
from torch import Tensor, nn

from .attention import ablate_heads
from .language import (
    CausalLM,
    sequence_labelling_accuracy,
    sequence_labelling_step,
)


def offset_gather_task(
    n: int,
    *,
    offsets: tuple[int, ...] = (1, 2, 3, 5),
    vocab: int = 3,
    length: int = 16,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Random sequences ``x`` over ``vocab`` symbols; the target at i names the tuple (x_{i-o} for o in offsets).

    The target is sum_k x_{i-o_k} vocab^(K-1-k), a class among vocab^K; positions i < max(offsets) are -100.
    """
    if not offsets or min(offsets) < 1 or max(offsets) >= length:
        raise ValueError(
            f"offsets={offsets} must be positive and smaller than length={length}"
        )
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, vocab, (n, length), generator=g)
    m = max(offsets)
    target = torch.zeros(n, length - m, dtype=torch.long)
    for o in offsets:
        target = target * vocab + x[:, m - o : length - o]
    y = torch.full_like(x, -100)
    y[:, m:] = target
    return x, y


@contextlib.contextmanager
def noisy_output(
    module: nn.Module, relative_std: float, seed: int = 0
) -> Iterator[None]:
    """Inside the ``with`` block, add Gaussian noise of ``relative_std`` times the RMS of ``module``'s output to it."""
    if relative_std < 0:
        raise ValueError(f"relative_std={relative_std} must be non-negative")
    g = torch.Generator().manual_seed(seed)

    def add_noise(mod: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
        rms = output.detach().pow(2).mean().sqrt()
        noise = torch.randn(output.shape, generator=g).to(
            output.device, output.dtype
        )
        return output + relative_std * rms * noise

    handle = module.register_forward_hook(add_noise)
    try:
        yield
    finally:
        handle.remove()


def ablated_accuracy(model: CausalLM, loader) -> float:
    """Accuracy with one head of the (single) layer switched off, averaged over which head."""
    attn = model.blocks[0].attn
    accs = []
    for h in range(attn.num_heads):
        with ablate_heads(attn, [h]):
            accs.append(sequence_labelling_accuracy(model, loader)["acc"])
    return sum(accs) / len(accs)


def noisy_accuracy(
    model: CausalLM, loader, relative_std: float, seed: int = 0
) -> float:
    """Accuracy when the token embeddings of the input get Gaussian noise of ``relative_std`` times their RMS."""
    with noisy_output(model.token_embed, relative_std, seed):
        return sequence_labelling_accuracy(model, loader)["acc"]


def embedding_gradient_ratio(model: CausalLM, x: Tensor, y: Tensor) -> float:
    """||dL/d(input embeddings)|| / ||dL/d(final hidden states)||: how much of the gradient reaches the bottom."""
    model.zero_grad(set_to_none=True)
    store: dict[str, Tensor] = {}

    def keep(name: str):
        def hook(mod: nn.Module, inputs: tuple, output: Tensor) -> None:
            output.retain_grad()
            store[name] = output

        return hook

    handles = [
        model.token_embed.register_forward_hook(keep("bottom")),
        model.norm.register_forward_hook(keep("top")),
    ]
    try:
        loss, _ = sequence_labelling_step(model, (x, y))
        loss.backward()
    finally:
        for h in handles:
            h.remove()
    ratio = (
        store["bottom"].grad.norm().item() / store["top"].grad.norm().item()
    )
    model.zero_grad(set_to_none=True)
    return ratio


def time_train_step(
    model: CausalLM,
    x: Tensor,
    y: Tensor,
    repeats: int = 20,
    clock: str = "wall",
) -> float:
    """Median milliseconds of one forward + backward pass on the batch ``(x, y)``.

    ``clock="cpu"`` counts the process's CPU time instead of elapsed time: on a shared machine other
    programs do not inflate it (for one busy thread the two agree).
    """
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock={clock!r} is unknown; allowed: 'wall', 'cpu'")
    now = time.perf_counter if clock == "wall" else time.process_time
    times = []
    for _ in range(repeats + 2):
        start = now()
        loss, _ = sequence_labelling_step(model, (x, y))
        loss.backward()
        times.append(now() - start)
    model.zero_grad(set_to_none=True)
    times = sorted(times[2:])
    return 1000.0 * times[len(times) // 2]


@torch.no_grad()
def attention_by_offset(model: CausalLM, x: Tensor) -> Tensor:
    """Mean attention weight of each head on the token ``o`` steps back, ``[heads, L]`` for o = 0..L-1."""
    model.eval()
    model(x, need_weights=True)
    a = model.blocks[0].last_attention  # [B, heads, L, L]
    L = a.shape[-1]
    i = torch.arange(L)[:, None]
    j = torch.arange(L)[None, :]
    offset = (i - j).clamp(min=0)  # how far back key j lies from query i
    valid = (j <= i).float()
    out = torch.zeros(a.shape[1], L)
    for o in range(L):
        sel = (offset == o).float() * valid
        out[:, o] = (a * sel).sum((-1, -2)).mean(0) / sel.sum()
    return out
