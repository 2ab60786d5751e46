"""Recurrent networks, the road to attention: the code of chapter 3½ (``chapters/04_recurrent``).

* :func:`rnn_cell`, :func:`lstm_cell`, :func:`gru_cell` -- one time step of each cell, from its equations
* :class:`RNN`, :class:`LSTM`, :class:`GRU` -- stacks of those cells with PyTorch's constructor arguments
  and parameter names (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...), so ``load_state_dict`` from
  ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` works and the outputs agree
* :func:`input_gradient_by_lag` -- backpropagation through time made visible
* :func:`lstm_forget_bias_` -- the LSTM's forget gate started open
* :func:`adding_problem`, :class:`LastStateRegressor`, :func:`scaled_identity_` -- exploding
  gradients and clipping
* :func:`object_rows_task`, :class:`LengthBatches` -- the sequence-to-sequence task on toy-world objects
* :class:`AdditiveAttention` (Bahdanau et al., 2015) and :class:`Seq2Seq` -- encoder-decoders with a
  fixed-size bridge or with attention; :func:`seq2seq_step`, :func:`greedy_accuracy`,
  :func:`accuracy_by_length`
* :func:`prefix_lm_pairs`, :func:`prefix_lm_prompts` -- the same task laid out for a decoder-only
  Transformer (used again by ``04a_attention``)

All layers work on ``[T, B, features]`` (or ``[B, T, features]`` with ``batch_first=True``), as
PyTorch's do. Nothing here calls ``nn.LSTMCell``, ``nn.GRUCell`` or a fused recurrent kernel: every
gate is a line of this file.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data.toyworld import COLOURS, SHAPES, SPLITS, Scenes
from .record import atomic_write_text, scale_dir
from .scales import dry_iter


# --------------------------------------------------------------------------- one time step
# Each cell takes ``gx``, the input's contribution W_ih x_t + b_ih (computed for all time steps
# at once, as one matrix product, before the loop), the previous state, and the recurrent weights.
def rnn_cell(
    gx: Tensor,
    h: Tensor,
    w_hh: Tensor,
    b_hh: Tensor | None,
    nonlinearity: str = "tanh",
) -> Tensor:
    """One step of the Elman (1990) RNN: h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)."""
    pre = gx + F.linear(h, w_hh, b_hh)  # [B, H]
    return torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre)


def lstm_cell(
    gx: Tensor,
    state: tuple[Tensor, Tensor],
    w_hh: Tensor,
    b_hh: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """One step of the LSTM (Hochreiter & Schmidhuber, 1997), with the forget gate of Gers et al. (2000).

    Gates in PyTorch's order: input i, forget f, cell candidate g, output o.
    """
    h, c = state  # [B, H] each
    gates = gx + F.linear(h, w_hh, b_hh)  # [B, 4H]
    i, f, g, o = gates.chunk(4, dim=-1)
    i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
    g = torch.tanh(g)
    # c_t = f ⊙ c_{t-1} + i ⊙ g: an additive path, ∂c_t/∂c_{t-1} = diag(f)
    c = f * c + i * g
    # h_t = o ⊙ tanh(c_t)
    h = o * torch.tanh(c)
    return h, c


def gru_cell(
    gx: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None
) -> Tensor:
    """One step of the GRU (Cho et al., 2014), gates in PyTorch's order: reset r, update z, candidate n.

    As in PyTorch (and cuDNN) the reset gate multiplies W_hn h + b_hn *after* the matrix product;
    the paper writes W_hn (r ⊙ h). Both are GRUs; this one matches ``nn.GRU``.
    """
    gh = F.linear(h, w_hh, b_hh)  # [B, 3H]
    x_r, x_z, x_n = gx.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)  # r_t = σ(W_ir x + b_ir + W_hr h + b_hr)
    z = torch.sigmoid(x_z + h_z)  # z_t = σ(W_iz x + b_iz + W_hz h + b_hz)
    n = torch.tanh(
        x_n + r * h_n
    )  # n_t = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
    # h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}: z near 1 copies the old state (the GRU's memory path)
    return n + z * (h - n)


# --------------------------------------------------------------------------- layers
class _Recurrent(nn.Module):
    """What RNN, LSTM and GRU share: PyTorch's parameters and the loop over layers, directions and time."""

    gates = 1  # rows of W_ih per hidden unit: 1 (RNN), 4 (LSTM), 3 (GRU)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        for name, value in (
            ("input_size", input_size),
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"{name}={value!r} must be a positive integer"
                )
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout={dropout} must lie in [0, 1]")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.num_layers, self.bias = num_layers, bias
        self.batch_first, self.dropout = batch_first, float(dropout)
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        kw = {"device": device, "dtype": dtype}
        rows = self.gates * hidden_size
        # the same names, shapes and order as nn.RNN / nn.LSTM / nn.GRU
        for layer in range(num_layers):
            width = (
                input_size if layer == 0 else hidden_size * self.num_directions
            )
            for suffix in ("", "_reverse")[: self.num_directions]:
                p = f"l{layer}{suffix}"
                self.register_parameter(
                    f"weight_ih_{p}",
                    nn.Parameter(torch.empty(rows, width, **kw)),
                )
                self.register_parameter(
                    f"weight_hh_{p}",
                    nn.Parameter(torch.empty(rows, hidden_size, **kw)),
                )
                if bias:
                    self.register_parameter(
                        f"bias_ih_{p}", nn.Parameter(torch.empty(rows, **kw))
                    )
                    self.register_parameter(
                        f"bias_hh_{p}", nn.Parameter(torch.empty(rows, **kw))
                    )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's initialisation: every weight and bias uniform in ±1/√hidden_size."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def weights(
        self, layer: int, direction: int = 0
    ) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """``(W_ih, W_hh, b_ih, b_hh)`` of one layer and direction (1 = ``_reverse``)."""
        p = f"l{layer}{'_reverse' if direction else ''}"
        get = lambda name: getattr(self, f"{name}_{p}", None)  # noqa: E731
        return (
            get("weight_ih"),
            get("weight_hh"),
            get("bias_ih"),
            get("bias_hh"),
        )

    # subclasses define the step and the shape of the state
    def cell(self, gx: Tensor, state, w_hh: Tensor, b_hh: Tensor | None):
        raise NotImplementedError

    def _zero_state(self, x: Tensor):
        B = x.shape[1]
        return x.new_zeros(
            self.num_layers * self.num_directions, B, self.hidden_size
        )

    def _split_state(self, hx, index: int):
        return hx[index]

    def _stack_states(self, states: list):
        return torch.stack(states)

    def run_direction(
        self,
        x: Tensor,
        state,
        w_ih: Tensor,
        w_hh: Tensor,
        b_ih: Tensor | None,
        b_hh: Tensor | None,
    ):
        """Unroll one cell over ``x`` ``[T, B, I]`` from ``state``: outputs ``[T, B, H]`` and the last state."""
        gx = F.linear(
            x, w_ih, b_ih
        )  # [T, B, gates*H]: every W_ih x_t in one product
        outputs = []
        for gx_t in gx.unbind(
            0
        ):  # unbind, not gx[t]: its backward is one stack, not T zero-filled copies
            state = self.cell(gx_t, state, w_hh, b_hh)
            outputs.append(state[0] if isinstance(state, tuple) else state)
        return torch.stack(outputs), state

    def forward(self, input: Tensor, hx=None):
        """``output, h_n`` (for the LSTM ``output, (h_n, c_n)``), shaped as PyTorch's.

        ``input``: ``[T, B, input_size]`` (``[B, T, input_size]`` with ``batch_first``) or unbatched
        ``[T, input_size]``; ``output``: the last layer's states at every step, both directions
        concatenated; ``h_n``: ``[num_layers * num_directions, B, hidden_size]``, layer by layer,
        forward before reverse.
        """
        if input.dim() not in (2, 3):
            raise ValueError(
                f"input must be [T, B, {self.input_size}] or [T, {self.input_size}], got shape {tuple(input.shape)}"
            )
        if input.shape[-1] != self.input_size:
            raise ValueError(
                f"input has {input.shape[-1]} features, the layer was built for input_size={self.input_size}"
            )
        batched = input.dim() == 3
        x = input if batched else input.unsqueeze(1)
        if batched and self.batch_first:
            x = x.transpose(0, 1)  # [T, B, I]
        if hx is None:
            hx = self._zero_state(x)
        elif not batched:
            hx = self._unsqueeze_state(hx)
        last = []
        for layer in range(self.num_layers):
            outs = []
            for d in range(self.num_directions):
                index = layer * self.num_directions + d
                seq = (
                    x if d == 0 else x.flip(0)
                )  # the reverse direction reads back to front
                y, state = self.run_direction(
                    seq, self._split_state(hx, index), *self.weights(layer, d)
                )
                outs.append(y if d == 0 else y.flip(0))
                last.append(state)
            x = torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
        h_n = self._stack_states(last)
        if batched and self.batch_first:
            x = x.transpose(0, 1)
        if not batched:
            x, h_n = x.squeeze(1), self._squeeze_state(h_n)
        return x, h_n

    def _unsqueeze_state(self, hx):
        return hx.unsqueeze(1)

    def _squeeze_state(self, h_n):
        return h_n.squeeze(1)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for name, default in (
            ("bias", True),
            ("batch_first", False),
            ("dropout", 0.0),
            ("bidirectional", False),
        ):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s


class RNN(_Recurrent):
    """The Elman (1990) recurrent network, h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), as ``nn.RNN``.

    Arguments as ``nn.RNN(input_size, hidden_size, num_layers, nonlinearity, bias, batch_first,
    dropout, bidirectional)``; ``nonlinearity="relu"`` replaces tanh with ReLU.
    """

    gates = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"nonlinearity={nonlinearity!r} is unknown; allowed: 'tanh', 'relu'"
            )
        self.nonlinearity = nonlinearity
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            device,
            dtype,
        )

    def cell(self, gx, state, w_hh, b_hh):
        return rnn_cell(gx, state, w_hh, b_hh, self.nonlinearity)


class LSTM(_Recurrent):
    """Long short-term memory (Hochreiter & Schmidhuber, 1997; forget gate: Gers et al., 2000), as ``nn.LSTM``.

    Arguments as ``nn.LSTM(input_size, hidden_size, num_layers, bias, batch_first, dropout,
    bidirectional)`` (no ``proj_size``). The state is a pair ``(h, c)``; ``forward`` returns
    ``output, (h_n, c_n)``.
    """

    gates = 4

    def cell(self, gx, state, w_hh, b_hh):
        return lstm_cell(gx, state, w_hh, b_hh)

    def _zero_state(self, x):
        h = super()._zero_state(x)
        return h, torch.zeros_like(h)

    def _split_state(self, hx, index):
        h, c = hx
        return h[index], c[index]

    def _stack_states(self, states):
        return torch.stack([s[0] for s in states]), torch.stack(
            [s[1] for s in states]
        )

    def _unsqueeze_state(self, hx):
        return hx[0].unsqueeze(1), hx[1].unsqueeze(1)

    def _squeeze_state(self, h_n):
        return h_n[0].squeeze(1), h_n[1].squeeze(1)


class GRU(_Recurrent):
    """The gated recurrent unit (Cho et al., 2014), as ``nn.GRU``.

    Arguments as ``nn.GRU(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)``.
    """

    gates = 3

    def cell(self, gx, state, w_hh, b_hh):
        return gru_cell(gx, state, w_hh, b_hh)


RECURRENT_LAYERS: dict[str, type[_Recurrent]] = {
    "RNN": RNN,
    "LSTM": LSTM,
    "GRU": GRU,
}


def max_abs_diff_vs_torch(
    kind: str,
    *,
    num_layers: int = 2,
    bidirectional: bool = True,
    batch_first: bool = False,
    input_size: int = 5,
    hidden_size: int = 7,
    length: int = 6,
    batch: int = 3,
    seed: int = 0,
    **kw,
) -> dict[str, float]:
    """Copy a random ``nn.<kind>`` into ours and compare outputs, final states and all gradients.

    Returns the largest absolute differences: ``output``, ``state`` (h_n, and c_n for the LSTM),
    ``grad`` (every parameter's gradient and the input's, after the same loss on both).
    """
    if kind not in RECURRENT_LAYERS:
        raise ValueError(
            f"kind={kind!r} is unknown; allowed: {list(RECURRENT_LAYERS)}"
        )
    torch.manual_seed(seed)
    args = dict(
        num_layers=num_layers,
        bidirectional=bidirectional,
        batch_first=batch_first,
        **kw,
    )
    ref = getattr(nn, kind)(input_size, hidden_size, **args)
    ours = RECURRENT_LAYERS[kind](input_size, hidden_size, **args)
    ours.load_state_dict(ref.state_dict())
    shape = (batch, length) if batch_first else (length, batch)
    x = torch.randn(*shape, input_size)
    D = 2 if bidirectional else 1
    h0 = torch.randn(num_layers * D, batch, hidden_size)
    hx = (h0, torch.randn_like(h0)) if kind == "LSTM" else h0
    results = []
    for model in (ref, ours):
        xi = x.clone().requires_grad_(True)
        out, state = model(xi, hx)
        states = state if isinstance(state, tuple) else (state,)
        # a loss that touches every output and every final state
        loss = (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum()
        loss = loss + sum((s**2).sum() for s in states)
        grads = torch.autograd.grad(loss, [xi, *model.parameters()])
        results.append((out, states, grads))
    (o1, s1, g1), (o2, s2, g2) = results
    diff = lambda a, b: (a - b).abs().max().item()  # noqa: E731
    return {
        "output": diff(o1, o2),
        "state": max(diff(a, b) for a, b in zip(s1, s2)),
        "grad": max(diff(a, b) for a, b in zip(g1, g2)),
    }


# --------------------------------------------------------------------------- backpropagation through time
def input_gradient_by_lag(
    layer: _Recurrent,
    x: Tensor,
    readout: Tensor | None = None,
) -> Tensor:
    """How much of a loss at the last step reaches each earlier input: ``‖∂L/∂x_t‖`` by lag, relative to lag 0.

    ``x``: ``[T, B, input_size]`` (time first); the loss is L = w·h_T, summed over the batch, for a
    fixed unit vector w (``readout``, random if not given). Returns ``[T]``: entry k is
    mean_b ‖∂L/∂x_{T-1-k}‖ / mean_b ‖∂L/∂x_{T-1}‖, i.e. the gradient k steps back from the loss,
    with the step next to the loss as 1.
    """
    x = x.detach().clone().requires_grad_(True)
    out, _ = layer(x.transpose(0, 1) if layer.batch_first else x)
    if layer.batch_first:
        out = out.transpose(0, 1)
    h_last = out[-1]  # [B, H * directions]
    if readout is None:
        g = torch.Generator().manual_seed(0)
        readout = torch.randn(h_last.shape[-1], generator=g).to(h_last)
    readout = readout.to(h_last) / readout.norm()
    (h_last @ readout).sum().backward()
    norms = x.grad.norm(dim=-1).mean(dim=1)  # [T]
    norms = norms.flip(0)  # index = lag
    return norms / norms[0]


def scaled_identity_(layer: _Recurrent, scale: float) -> _Recurrent:
    """Set every W_hh to ``scale`` · I (and its biases to 0), as in the IRNN of Le et al. (2015); returns the layer.

    With ReLU units, scale > 1 makes the states and the gradients grow like scale^lag: the
    exploding case.
    """
    H = layer.hidden_size
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.startswith("weight_hh"):
                p.copy_(scale * torch.eye(H).repeat(layer.gates, 1))
            elif name.startswith("bias"):
                p.zero_()
    return layer


def lstm_forget_bias_(layer: LSTM, value: float = 1.0) -> LSTM:
    """Start every forget gate open: b_if = ``value``, b_hf = 0 (Gers et al., 2000; Jozefowicz et al., 2015); returns the layer.

    With f = σ(value) near 1 at the start, c_t = f ⊙ c_{t-1} + ... passes the cell state (and its
    gradient) on almost unchanged, instead of halving it every step as f = σ(0) = 1/2 does.
    """
    if not isinstance(layer, LSTM):
        raise TypeError(
            f"lstm_forget_bias_ needs an LSTM, got {type(layer).__name__}"
        )
    H = layer.hidden_size
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.startswith("bias_ih"):
                p[H : 2 * H] = value  # rows i, f, g, o: the second block is f
            elif name.startswith("bias_hh"):
                p[H : 2 * H] = 0.0
    return layer


def adding_problem(
    n: int, length: int, *, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """The adding problem of Hochreiter & Schmidhuber (1997): sum the two marked numbers of a sequence.

    Returns ``x`` ``[n, length, 2]`` (a value in [0, 1) and a 0/1 marker; one marker in each half)
    and ``y`` ``[n]``. Predicting the mean, 1, scores a mean squared error of 1/6 ≈ 0.167.
    """
    if length < 2:
        raise ValueError(f"length={length} must be at least 2")
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(n, length, generator=g)
    half = length // 2
    first = torch.randint(0, half, (n,), generator=g)
    second = torch.randint(half, length, (n,), generator=g)
    marks = torch.zeros(n, length)
    marks[torch.arange(n), first] = 1.0
    marks[torch.arange(n), second] = 1.0
    y = (values * marks).sum(1)
    return torch.stack([values, marks], dim=-1), y


class LastStateRegressor(nn.Module):
    """A recurrent layer read out by a linear map from its last state: ``y = w·h_T + b`` (for the adding problem)."""

    def __init__(self, recurrent: _Recurrent):
        super().__init__()
        if not recurrent.batch_first:
            raise ValueError(
                "LastStateRegressor reads [B, T, features]: build the layer with batch_first=True"
            )
        self.recurrent = recurrent
        self.head = nn.Linear(
            recurrent.hidden_size * recurrent.num_directions, 1
        )

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.recurrent(x)  # [B, T, H]
        return self.head(out[:, -1]).squeeze(-1)  # [B]


# --------------------------------------------------------------------------- the sequence-to-sequence task
PAD, BOS = 0, 1
OBJECTS: tuple[str, ...] = tuple(Scenes.class_names("colour_shape"))
"""The 36 toy-world objects ("red circle", ...), one token each: ids 2..37."""
VOCAB: tuple[str, ...] = ("[PAD]", "[BOS]", *OBJECTS)


@dataclass
class SequencePairs:
    """Source and target token rows ``[n, max_len]`` (padded with ``PAD``) and each row's ``lengths`` ``[n]``."""

    src: Tensor
    tgt: Tensor
    lengths: Tensor

    def __len__(self) -> int:
        return self.src.shape[0]

    def decode(self, ids) -> str:
        """Token ids as words, e.g. ``'red circle | blue star'``, padding dropped."""
        return " | ".join(VOCAB[int(i)] for i in ids if int(i) != PAD)


def negative_colour(colour: str) -> str:
    """The toy-world colour nearest to the photographic negative (1 - r, 1 - g, 1 - b) of ``colour``."""
    rgb = np.array(COLOURS[colour])
    names = list(COLOURS)
    dist = [np.linalg.norm(1.0 - rgb - np.array(COLOURS[c])) for c in names]
    return names[int(np.argmin(dist))]


TRANSFORMS: tuple[str, ...] = ("negative", "copy", "reverse")


def object_rows_task(
    n: int,
    *,
    transform: str = "negative",
    min_len: int = 5,
    max_len: int = 40,
    seed: int = 0,
    split: str = "train",
) -> SequencePairs:
    """Rows of toy-world objects, one token each, to be read and said back transformed.

    ``transform``: ``"negative"`` (the default: the same row, every object in the colour of its
    photographic negative, red circle -> cyan circle; the output at step t depends on input t),
    ``"copy"`` or ``"reverse"`` (right to left). Lengths run over ``min_len..max_len`` in equal
    shares, the same mix in every split; objects are drawn uniformly from the 36 colour-shape pairs
    of :mod:`vnotes.data.toyworld`. ``split`` and ``seed`` pick independent random streams.
    """
    if transform not in TRANSFORMS:
        raise ValueError(
            f"transform={transform!r} is unknown; allowed: {TRANSFORMS}"
        )
    if split not in SPLITS:
        raise ValueError(
            f"split={split!r} is unknown; allowed: {tuple(SPLITS)}"
        )
    if not 1 <= min_len <= max_len:
        raise ValueError(
            f"need 1 <= min_len <= max_len, got {min_len}, {max_len}"
        )
    n_lengths = max_len - min_len + 1
    if n < n_lengths:
        raise ValueError(
            f"n={n} is fewer than the {n_lengths} lengths {min_len}..{max_len}"
        )
    rng = np.random.default_rng([int(seed), SPLITS[split], 24])
    lengths = rng.permutation(
        min_len + np.arange(n) % n_lengths
    )  # equal shares
    tokens = rng.integers(2, len(VOCAB), size=(n, max_len))
    keep = np.arange(max_len)[None, :] < lengths[:, None]
    src = np.where(keep, tokens, PAD)
    if transform == "negative":
        colours, n_shapes = list(COLOURS), len(SHAPES)
        flip = np.array(
            [colours.index(negative_colour(c)) for c in colours]
        )  # colour index -> its negative's index
        colour, shape = (tokens - 2) // n_shapes, (tokens - 2) % n_shapes
        tgt = np.where(keep, 2 + flip[colour] * n_shapes + shape, PAD)
    elif transform == "copy":
        tgt = src.copy()
    else:
        tgt = np.full_like(src, PAD)
        for i, L in enumerate(lengths):
            tgt[i, :L] = src[i, :L][::-1]
    return SequencePairs(
        torch.from_numpy(src).long(),
        torch.from_numpy(tgt).long(),
        torch.from_numpy(lengths).long(),
    )


class LengthBatches:
    """Mini-batches of equally long rows (``(src [b, L], tgt [b, L])``), so no step computes on padding.

    Rows are grouped by length and cut into batches of at most ``batch_size``; with ``shuffle`` the
    rows within a length and the order of the batches change every epoch (reproducibly, from
    ``seed``; :func:`vnotes.fit` calls :meth:`set_epoch`).
    """

    def __init__(
        self,
        pairs: SequencePairs,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1")
        self.pairs, self.batch_size = pairs, batch_size
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.by_length = {
            int(L): torch.nonzero(pairs.lengths == L).flatten()
            for L in torch.unique(pairs.lengths)
        }

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(
            -(-len(i) // self.batch_size) for i in self.by_length.values()
        )

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        g = torch.Generator().manual_seed(self.seed + 10_007 * self.epoch)
        batches = []
        for L, idx in self.by_length.items():
            if self.shuffle:
                idx = idx[torch.randperm(len(idx), generator=g)]
            for start in range(0, len(idx), self.batch_size):
                batches.append((L, idx[start : start + self.batch_size]))
        order = (
            torch.randperm(len(batches), generator=g).tolist()
            if self.shuffle
            else range(len(batches))
        )
        for k in order:
            L, sel = batches[k]
            yield self.pairs.src[sel, :L], self.pairs.tgt[sel, :L]


# --------------------------------------------------------------------------- encoder-decoders
class AdditiveAttention(nn.Module):
    """Additive attention (Bahdanau et al., 2015): score each encoder state h_j against the decoder state s.

    e_j = vᵀ tanh(W s + U h_j),  α = softmax_j(e),  c = Σ_j α_j h_j.
    """

    def __init__(self, query_size: int, key_size: int, attention_size: int):
        super().__init__()
        self.query_proj = nn.Linear(
            query_size, attention_size, bias=False
        )  # W
        self.key_proj = nn.Linear(key_size, attention_size, bias=False)  # U
        self.score = nn.Linear(attention_size, 1, bias=False)  # v

    def forward(
        self, query: Tensor, keys: Tensor, projected_keys: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``query`` ``[B, Q]``, ``keys`` ``[B, S, K]`` -> context ``[B, K]`` and weights ``[B, S]``.

        ``projected_keys`` = ``key_proj(keys)`` may be passed in: it does not change while decoding.
        """
        if projected_keys is None:
            projected_keys = self.key_proj(keys)  # [B, S, A]
        # e_j = vᵀ tanh(W s + U h_j)
        e = self.score(
            torch.tanh(self.query_proj(query)[:, None, :] + projected_keys)
        ).squeeze(-1)  # [B, S]
        alpha = torch.softmax(e, dim=-1)  # [B, S]
        context = torch.bmm(alpha[:, None, :], keys).squeeze(1)  # [B, K]
        return context, alpha


class Seq2Seq(nn.Module):
    """A GRU encoder-decoder; with ``attention=False`` the encoder's last state is the only bridge.

    Without attention it is the RNN encoder-decoder of Cho et al. (2014): the encoder's last state
    h_T starts the decoder and is fed, as a fixed context c, to every decoder step. With
    ``attention=True`` it is the model of Bahdanau et al. (2015): the same decoder, with the fixed
    c replaced at step t by c_t, an :class:`AdditiveAttention` average of all encoder states, read
    with the previous decoder state. Everything else (sizes, the output layer on [s_t; c_t; E y_{t-1}])
    is the same, so the two differ only by attention.
    """

    def __init__(
        self,
        vocab_size: int = len(VOCAB),
        embed_dim: int = 32,
        hidden_size: int = 64,
        attention: bool = False,
        attention_size: int | None = None,
    ):
        super().__init__()
        self.vocab_size, self.hidden_size = vocab_size, hidden_size
        H = hidden_size
        self.src_embed = nn.Embedding(vocab_size, embed_dim)
        self.tgt_embed = nn.Embedding(vocab_size, embed_dim)
        self.encoder = GRU(embed_dim, H, batch_first=True)
        # the decoder's input at step t is [E y_{t-1}; c_t]; it runs one gru_cell per step
        self.decoder = GRU(embed_dim + H, H)
        self.attention = (
            AdditiveAttention(H, H, attention_size or H) if attention else None
        )
        self.out = nn.Linear(2 * H + embed_dim, vocab_size)
        self.last_attention: Tensor | None = (
            None  # [B, T_out, T_src], kept for plots
        )

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """Encoder states h_1..h_S ``[B, S, H]`` and the last one, h_S ``[B, H]``."""
        states, h_n = self.encoder(self.src_embed(src))
        return states, h_n[-1]

    def _decoder_weights(
        self,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The decoder GRU's W_ih split by linearity into its token part and its context part."""
        w_ih, w_hh, b_ih, b_hh = self.decoder.weights(0)
        E = self.tgt_embed.embedding_dim
        return w_ih[:, :E], w_ih[:, E:], w_hh, b_ih, b_hh

    def _decode(
        self, src: Tensor, steps: int, tgt_in: Tensor | None
    ) -> Tensor:
        """Run the decoder for ``steps``; with ``tgt_in`` (teacher forcing) return logits ``[B, T, V]``,
        without it (free running, each step fed its own most likely token) the tokens ``[B, T]``."""
        states, last = self.encode(src)  # [B, S, H], [B, H]
        w_y, w_c, w_hh, b_ih, b_hh = self._decoder_weights()
        attn = self.attention
        projected = (
            attn.key_proj(states) if attn is not None else None
        )  # U h_j, once
        fixed = (
            F.linear(last, w_c) if attn is None else None
        )  # the bridge's share of every step
        s = last  # s_0 = h_S
        y = torch.full(
            (src.shape[0],), BOS, dtype=torch.long, device=src.device
        )
        if (
            tgt_in is not None
        ):  # all inputs known: embed and project them at once
            e_all = self.tgt_embed(tgt_in)  # [B, T, E]
            gx_all = F.linear(e_all, w_y, b_ih).unbind(1)  # T x [B, 3H]
        outs, contexts, weights = [], [], []
        for t in range(steps):
            if tgt_in is not None:
                gx = gx_all[t]
            else:
                e = self.tgt_embed(y)
                gx = F.linear(e, w_y, b_ih)
            if attn is not None:
                c, alpha = attn(
                    s, states, projected
                )  # c_t from s_{t-1} (Bahdanau et al., 2015)
                gx = gx + F.linear(c, w_c)
                weights.append(alpha.detach())
            else:
                c, gx = (
                    last,
                    gx + fixed,
                )  # the same c = h_T at every step (Cho et al., 2014)
            s = gru_cell(gx, s, w_hh, b_hh)  # s_t
            outs.append(s)
            contexts.append(c)
            if (
                tgt_in is None
            ):  # greedy: this step's best token is the next input
                logits = self.out(torch.cat([s, c, e], -1))
                y = logits.argmax(-1)
                outs[-1] = y
        self.last_attention = torch.stack(weights, 1) if weights else None
        if tgt_in is None:
            return torch.stack(outs, 1)
        # p(y_t | y_<t, x) from [s_t; c_t; E y_{t-1}], all steps in one product
        S, C = torch.stack(outs, 1), torch.stack(contexts, 1)
        return self.out(torch.cat([S, C, e_all], -1))  # [B, T, V]

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing: logits ``[B, T, V]`` for every target step, given the true previous tokens ``tgt_in``."""
        return self._decode(src, tgt_in.shape[1], tgt_in)

    @torch.no_grad()
    def greedy_decode(self, src: Tensor, steps: int | None = None) -> Tensor:
        """Free-running decoding: each step's most likely token is the next step's input. ``[B, steps]``."""
        return self._decode(
            src, src.shape[1] if steps is None else steps, None
        )


def shift_right(tgt: Tensor) -> Tensor:
    """The decoder's inputs under teacher forcing: ``[BOS, y_0, ..., y_{T-2}]``."""
    return torch.cat([torch.full_like(tgt[:, :1], BOS), tgt[:, :-1]], 1)


def seq2seq_step(
    model: Seq2Seq, batch: tuple[Tensor, Tensor]
) -> tuple[Tensor, dict[str, Tensor]]:
    """A :func:`vnotes.fit` step with teacher forcing: cross-entropy of every target token given the true previous ones."""
    src, tgt = batch
    logits = model(src, shift_right(tgt))  # [B, T, V]
    loss = F.cross_entropy(logits.flatten(0, 1), tgt.flatten())
    acc = (logits.argmax(-1) == tgt).float().mean()
    return loss, {"acc": acc.detach()}


def accuracy_by_length(
    decode: Callable[[Tensor], Tensor],
    pairs: SequencePairs,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> dict[int, float]:
    """Share of target tokens right, per source length, when ``decode(src [B, L]) -> [B, L]`` runs free.

    ``src`` is moved to ``device`` (if given) before decoding.
    """
    right: dict[int, int] = {}
    total: dict[int, int] = {}
    for src, tgt in LengthBatches(pairs, batch_size):
        L = src.shape[1]
        pred = decode(src if device is None else src.to(device)).cpu()
        right[L] = right.get(L, 0) + int((pred == tgt).sum())
        total[L] = total.get(L, 0) + tgt.numel()
    return {L: right[L] / total[L] for L in sorted(total)}


def mean_over(by_length: dict[int, float], low: int, high: int) -> float:
    """Mean of an accuracy-by-length curve over lengths ``low..high`` (inclusive)."""
    values = [a for L, a in by_length.items() if low <= L <= high]
    if not values:
        raise ValueError(
            f"no length in {low}..{high}; lengths: {sorted(by_length)}"
        )
    return float(np.mean(values))


@torch.no_grad()
def greedy_accuracy(model: Seq2Seq, loader: LengthBatches) -> dict[str, float]:
    """:func:`vnotes.fit`'s ``eval_fn``: token accuracy of free-running decoding over ``loader``."""
    right = total = 0
    device = next(model.parameters()).device
    for src, tgt in dry_iter(loader):
        right += int((model.greedy_decode(src.to(device)).cpu() == tgt).sum())
        total += tgt.numel()
    return {"acc": right / max(total, 1)}


# --------------------------------------------------------------------------- the same task for a Transformer
def prefix_lm_prompts(src: Tensor, max_len: int = 40) -> Tensor:
    """``[x_0 .. x_{L-1}, PAD ... PAD, BOS]`` ``[B, max_len + 1]``: sources padded to ``max_len``, then the separator.

    The padding puts the separator (``BOS``) at position ``max_len`` in every row, so target token t
    always sits ``max_len + 1`` positions after source token t, whatever the length.
    """
    if src.shape[1] > max_len:
        raise ValueError(
            f"sources of {src.shape[1]} tokens exceed max_len={max_len}"
        )
    padded = F.pad(src, (0, max_len - src.shape[1]), value=PAD)
    return torch.cat([padded, torch.full_like(src[:, :1], BOS)], 1)


def prefix_lm_pairs(pairs: SequencePairs) -> tuple[Tensor, Tensor]:
    """The task as next-token prediction for a decoder-only model: ``(inputs, labels)`` ``[n, 2 max_len]``.

    A row is the prompt (:func:`prefix_lm_prompts`) followed by the target; labels are the next
    tokens at the target positions and -100 (ignored) elsewhere: teacher forcing on the target only.
    """
    max_len = pairs.src.shape[1]
    rows = torch.cat(
        [prefix_lm_prompts(pairs.src, max_len), pairs.tgt], 1
    )  # [n, 2 max_len + 1]
    inputs, labels = rows[:, :-1], rows[:, 1:].clone()
    t = (
        torch.arange(2 * max_len)[None, :] - max_len
    )  # which target token a label is
    labels[(t < 0) | (t >= pairs.lengths[:, None])] = -100
    return inputs, labels


# --------------------------------------------------------------------------- timing and curves shared with 04a
def time_call(
    fn: Callable[[], object], repeats: int = 3, clock: str = "cpu"
) -> float:
    """Best-of-``repeats`` seconds for ``fn()``; ``clock="cpu"`` counts this process's CPU time only."""
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock={clock!r} is unknown; allowed: 'wall', 'cpu'")
    now = time.perf_counter if clock == "wall" else time.process_time
    best = float("inf")
    for _ in range(repeats):
        start = now()
        fn()
        best = min(best, now() - start)
    return best


def save_length_curves(
    notebook: str, scale: str, curves: dict[str, dict[int, float]]
) -> None:
    """Write accuracy-by-length curves beside the notebook's metrics (``<metrics>/<scale>/<notebook>.curves.json``)."""
    path = scale_dir(scale) / f"{notebook}.curves.json"
    payload = {
        name: {str(L): a for L, a in c.items()} for name, c in curves.items()
    }
    atomic_write_text(path, json.dumps(payload, indent=1))


def load_length_curves(
    notebook: str, scale: str
) -> dict[str, dict[int, float]] | None:
    """The curves :func:`save_length_curves` wrote, or None if that page has not run at this scale."""
    path = scale_dir(scale) / f"{notebook}.curves.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return {
        name: {int(L): a for L, a in c.items()} for name, c in data.items()
    }
