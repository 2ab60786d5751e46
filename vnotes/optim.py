"""Chapter 1 -- Optimization: optimizers, learning-rate schedules and the experiments of the chapter.

Every optimizer here is written from its update rule and subclasses ``torch.optim.Optimizer``
with the same name and constructor arguments as its ``torch.optim`` counterpart, so the unit
tests can run both side by side and compare parameters step for step.

Notation in the comments: ``g`` gradient, ``p`` parameter, ``t`` step count (from 1),
``lr`` learning rate, ``wd`` weight decay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.optim import Optimizer


def _check(
    name: str,
    value: float,
    low: float = 0.0,
    high: float | None = None,
    inclusive_high: bool = False,
) -> None:
    if value < low or (
        high is not None
        and (value > high if inclusive_high else value >= high)
    ):
        bound = (
            f"[{low}, {high}{']' if inclusive_high else ')'}"
            if high is not None
            else f">= {low}"
        )
        raise ValueError(f"{name}={value} is not allowed; it must be {bound}")


# ============================================================================ optimizers
class SGD(Optimizer):
    """Stochastic gradient descent (Robbins & Monro, 1951) with heavy-ball momentum (Polyak, 1964)
    and Nesterov's variant as formulated by Sutskever et al. (2013).
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ):
        _check("lr", lr)
        _check("momentum", momentum)
        _check("weight_decay", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                f"nesterov=True needs momentum > 0 and dampening = 0 (got momentum={momentum}, "
                f"dampening={dampening})"
            )
        super().__init__(
            params,
            dict(
                lr=lr,
                momentum=momentum,
                dampening=dampening,
                weight_decay=weight_decay,
                nesterov=nesterov,
            ),
        )

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            mu, wd = group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                # g <- g + wd * p   (L2 penalty folded into the gradient)
                g = p.grad.add(p, alpha=wd) if wd else p.grad
                if mu:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        # b_1 = g_1
                        buf = state["momentum_buffer"] = g.clone()
                    else:
                        # b_t = mu * b_{t-1} + (1 - dampening) * g_t
                        buf = state["momentum_buffer"]
                        buf.mul_(mu).add_(g, alpha=1 - group["dampening"])
                    # Nesterov looks ahead: step along g + mu * b_t instead of b_t
                    g = g.add(buf, alpha=mu) if group["nesterov"] else buf
                # p <- p - lr * g
                p.add_(g, alpha=-group["lr"])
        return loss


class Adagrad(Optimizer):
    """AdaGrad (Duchi, Hazan & Singer, 2011): per-parameter steps shrink with the sum of squared gradients."""

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
    ):
        _check("lr", lr)
        _check("lr_decay", lr_decay)
        _check("weight_decay", weight_decay)
        _check("initial_accumulator_value", initial_accumulator_value)
        _check("eps", eps)
        super().__init__(
            params,
            dict(
                lr=lr,
                lr_decay=lr_decay,
                weight_decay=weight_decay,
                initial_accumulator_value=initial_accumulator_value,
                eps=eps,
            ),
        )
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["step"] = torch.tensor(0.0)
                self.state[p]["sum"] = torch.full_like(
                    p, group["initial_accumulator_value"]
                )

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                state["step"] += 1
                t = state["step"].item()
                g = (
                    p.grad.add(p, alpha=group["weight_decay"])
                    if group["weight_decay"]
                    else p.grad
                )
                # lr_t = lr / (1 + (t - 1) * lr_decay)
                clr = group["lr"] / (1 + (t - 1) * group["lr_decay"])
                # G_t = G_{t-1} + g_t^2
                state["sum"].addcmul_(g, g, value=1)
                # p <- p - lr_t * g / (sqrt(G_t) + eps)
                p.addcdiv_(
                    g, state["sum"].sqrt().add_(group["eps"]), value=-clr
                )
        return loss


class RMSprop(Optimizer):
    """RMSProp (Tieleman & Hinton, 2012): divide by a running root-mean-square of recent gradients.

    ``centered=True`` subtracts the running mean of gradients (Graves, 2013) to estimate their variance.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ):
        _check("lr", lr)
        _check("alpha", alpha, 0.0, 1.0, inclusive_high=True)
        _check("eps", eps)
        _check("weight_decay", weight_decay)
        _check("momentum", momentum)
        super().__init__(
            params,
            dict(
                lr=lr,
                alpha=alpha,
                eps=eps,
                weight_decay=weight_decay,
                momentum=momentum,
                centered=centered,
            ),
        )

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            a = group["alpha"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = (
                    p.grad.add(p, alpha=group["weight_decay"])
                    if group["weight_decay"]
                    else p.grad
                )
                state = self.state[p]
                if not state:
                    state["square_avg"] = torch.zeros_like(p)
                    if group["momentum"]:
                        state["momentum_buffer"] = torch.zeros_like(p)
                    if group["centered"]:
                        state["grad_avg"] = torch.zeros_like(p)
                # v_t = alpha * v_{t-1} + (1 - alpha) * g^2
                v = state["square_avg"].mul_(a).addcmul_(g, g, value=1 - a)
                if group["centered"]:
                    # m_t = alpha * m_{t-1} + (1 - alpha) * g;  denominator sqrt(v_t - m_t^2) + eps
                    m = state["grad_avg"].lerp_(g, 1 - a)
                    denom = (
                        v.addcmul(m, m, value=-1).sqrt_().add_(group["eps"])
                    )
                else:
                    denom = v.sqrt().add_(group["eps"])
                if group["momentum"]:
                    # b_t = momentum * b_{t-1} + g / denom;  p <- p - lr * b_t
                    buf = (
                        state["momentum_buffer"]
                        .mul_(group["momentum"])
                        .addcdiv_(g, denom)
                    )
                    p.add_(buf, alpha=-group["lr"])
                else:
                    p.addcdiv_(g, denom, value=-group["lr"])
        return loss


class Adadelta(Optimizer):
    """Adadelta (Zeiler, 2012): the step's units come from a running RMS of past updates, not from ``lr``."""

    def __init__(
        self,
        params,
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
    ):
        _check("lr", lr)
        _check("rho", rho, 0.0, 1.0, inclusive_high=True)
        _check("eps", eps)
        _check("weight_decay", weight_decay)
        super().__init__(
            params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay)
        )

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            rho, eps = group["rho"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = (
                    p.grad.add(p, alpha=group["weight_decay"])
                    if group["weight_decay"]
                    else p.grad
                )
                state = self.state[p]
                if not state:
                    state["square_avg"] = torch.zeros_like(p)
                    state["acc_delta"] = torch.zeros_like(p)
                # E[g^2]_t = rho * E[g^2]_{t-1} + (1 - rho) * g^2
                sq = (
                    state["square_avg"].mul_(rho).addcmul_(g, g, value=1 - rho)
                )
                # delta_t = sqrt(E[dx^2]_{t-1} + eps) / sqrt(E[g^2]_t + eps) * g
                delta = (
                    state["acc_delta"]
                    .add(eps)
                    .sqrt_()
                    .div_(sq.add(eps).sqrt_())
                    .mul_(g)
                )
                # E[dx^2]_t = rho * E[dx^2]_{t-1} + (1 - rho) * delta^2
                state["acc_delta"].mul_(rho).addcmul_(
                    delta, delta, value=1 - rho
                )
                p.add_(delta, alpha=-group["lr"])
        return loss


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2014): momentum on the gradient and on its square, both bias-corrected.

    ``amsgrad=True`` uses the running maximum of the second moment (Reddi, Kale & Kumar, 2018).
    ``weight_decay`` here is the L2 penalty added to the gradient; see :class:`AdamW` for the decoupled form.
    """

    decoupled = False

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ):
        _check("lr", lr)
        _check("betas[0]", betas[0], 0.0, 1.0)
        _check("betas[1]", betas[1], 0.0, 1.0)
        _check("eps", eps)
        _check("weight_decay", weight_decay)
        super().__init__(
            params,
            dict(
                lr=lr,
                betas=tuple(betas),
                eps=eps,
                weight_decay=weight_decay,
                amsgrad=amsgrad,
            ),
        )

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            b1, b2 = group["betas"]
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if wd and self.decoupled:
                    # AdamW: p <- p * (1 - lr * wd), separate from the adaptive step
                    p.mul_(1 - lr * wd)
                elif wd:
                    g = g.add(p, alpha=wd)
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    if group["amsgrad"]:
                        state["max_exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                # m_t = b1 * m_{t-1} + (1 - b1) * g ;  v_t = b2 * v_{t-1} + (1 - b2) * g^2
                m = state["exp_avg"].lerp_(g, 1 - b1)
                v = state["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
                if group["amsgrad"]:
                    v = torch.maximum(
                        state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"]
                    )
                # p <- p - lr * (m_t / (1 - b1^t)) / (sqrt(v_t / (1 - b2^t)) + eps)
                bias1, bias2 = 1 - b1**t, 1 - b2**t
                denom = v.sqrt().div_(math.sqrt(bias2)).add_(group["eps"])
                p.addcdiv_(m, denom, value=-lr / bias1)
        return loss


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter, 2019): Adam with weight decay decoupled from the gradient-based step."""

    decoupled = True

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ):
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
        )


OPTIMIZERS: dict[str, type[Optimizer]] = {
    c.__name__: c for c in (SGD, Adagrad, RMSprop, Adadelta, Adam, AdamW)
}


# ============================================================================ LR schedules
# Each schedule is a function of the step returning a multiplier of the base learning rate;
# `as_scheduler` turns one into a torch LambdaLR so `vnotes.fit` can step it.
@dataclass(frozen=True)
class StepDecay:
    """lr_t = lr * gamma^floor(t / step_size)  (torch: StepLR)."""

    step_size: int
    gamma: float = 0.1

    def __call__(self, t: int) -> float:
        return self.gamma ** (t // self.step_size)


@dataclass(frozen=True)
class ExponentialDecay:
    """lr_t = lr * gamma^t  (torch: ExponentialLR)."""

    gamma: float

    def __call__(self, t: int) -> float:
        return self.gamma**t


@dataclass(frozen=True)
class Cosine:
    """lr_t = min + (1 - min) * (1 + cos(pi * t / T)) / 2, as a fraction of lr (Loshchilov & Hutter, 2017; torch: CosineAnnealingLR)."""

    total: int
    min_factor: float = 0.0

    def __call__(self, t: int) -> float:
        t = min(t, self.total)
        return (
            self.min_factor
            + (1 - self.min_factor)
            * (1 + math.cos(math.pi * t / self.total))
            / 2
        )


@dataclass(frozen=True)
class LinearWarmup:
    """Ramp from ``start_factor`` to 1 over ``warmup`` steps, then hold (Goyal et al., 2017; torch: LinearLR)."""

    warmup: int
    start_factor: float = 0.0

    def __call__(self, t: int) -> float:
        if t >= self.warmup:
            return 1.0
        return self.start_factor + (1 - self.start_factor) * t / self.warmup


@dataclass(frozen=True)
class WarmupCosine:
    """Linear warm-up for ``warmup`` steps, then cosine decay over the remaining ``total - warmup``."""

    warmup: int
    total: int
    start_factor: float = 0.0
    min_factor: float = 0.0

    def __post_init__(self):
        if not 0 <= self.warmup < self.total:
            raise ValueError(
                f"warmup={self.warmup} must lie in [0, total={self.total})"
            )

    def __call__(self, t: int) -> float:
        if t < self.warmup:
            return LinearWarmup(self.warmup, self.start_factor)(t)
        return Cosine(self.total - self.warmup, self.min_factor)(
            t - self.warmup
        )


def as_scheduler(
    optimizer: Optimizer, schedule: Callable[[int], float]
) -> torch.optim.lr_scheduler.LambdaLR:
    """Wrap a schedule (step -> multiplier) as a torch scheduler, stepped once per optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


# ============================================================================ 2-D loss surfaces
def ill_conditioned_quadratic(
    xy: torch.Tensor, a: float = 1.0, b: float = 20.0
) -> torch.Tensor:
    """f(x, y) = (a x^2 + b y^2) / 2 -- condition number b / a; the valley that makes SGD zig-zag."""
    return 0.5 * (a * xy[..., 0] ** 2 + b * xy[..., 1] ** 2)


def rosenbrock(
    xy: torch.Tensor, a: float = 1.0, b: float = 100.0
) -> torch.Tensor:
    """f(x, y) = (a - x)^2 + b (y - x^2)^2 (Rosenbrock, 1960): a curved, flat-bottomed valley, minimum at (a, a^2)."""
    return (a - xy[..., 0]) ** 2 + b * (xy[..., 1] - xy[..., 0] ** 2) ** 2


SURFACES: dict[
    str,
    tuple[
        Callable[[torch.Tensor], torch.Tensor],
        tuple[float, float],
        tuple[float, float, float, float],
    ],
] = {
    # name: (function, start point, plot window x0, x1, y0, y1)
    "quadratic": (
        ill_conditioned_quadratic,
        (-4.5, 1.5),
        (-5.0, 5.0, -2.0, 2.0),
    ),
    "rosenbrock": (rosenbrock, (-1.5, 2.0), (-2.0, 2.0, -1.0, 3.0)),
}


def trajectory(
    surface: str,
    optimizer: str,
    steps: int = 100,
    start: tuple[float, float] | None = None,
    **hyper,
) -> np.ndarray:
    """Points [steps + 1, 2] visited by ``optimizer`` (a name in OPTIMIZERS) minimising a 2-D surface."""
    if surface not in SURFACES:
        raise ValueError(
            f"surface={surface!r} is unknown; allowed: {sorted(SURFACES)}"
        )
    if optimizer not in OPTIMIZERS:
        raise ValueError(
            f"optimizer={optimizer!r} is unknown; allowed: {sorted(OPTIMIZERS)}"
        )
    f, default_start, _ = SURFACES[surface]
    xy = torch.tensor(
        start or default_start, dtype=torch.float64, requires_grad=True
    )
    opt = OPTIMIZERS[optimizer]([xy], **hyper)
    points = [xy.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        f(xy).backward()
        opt.step()
        points.append(xy.detach().clone())
    return torch.stack(points).numpy()


def plot_surface(surface: str, ax, levels: int = 30):
    """Contour lines of a surface (log-spaced levels) on ``ax``, with the minimum marked."""
    f, _, (x0, x1, y0, y1) = SURFACES[surface]
    xs, ys = torch.meshgrid(
        torch.linspace(x0, x1, 200), torch.linspace(y0, y1, 200), indexing="xy"
    )
    z = f(torch.stack([xs, ys], -1)).numpy()
    ax.contour(
        xs.numpy(),
        ys.numpy(),
        z,
        levels=np.geomspace(z.min() + 1e-3, z.max(), levels),
        cmap="Greys",
        linewidths=0.6,
    )
    ax.plot(
        *((0, 0) if surface == "quadratic" else (1, 1)),
        marker="*",
        color="k",
        markersize=10,
    )
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    return ax


# ============================================================================ networks for the experiments
def mlp(
    in_features: int = 64,
    hidden: int = 128,
    num_classes: int = 10,
    depth: int = 2,
    activation: str = "relu",
    batchnorm: bool = False,
    init: str = "default",
) -> nn.Sequential:
    """A plain multilayer perceptron; ``init`` is ``default`` (PyTorch's), ``xavier`` (Glorot & Bengio, 2010),
    ``kaiming`` (He et al., 2015) or ``small`` (N(0, 0.01^2), the classic recipe that makes deep nets vanish)."""
    acts = {
        "relu": nn.ReLU,
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "leaky_relu": nn.LeakyReLU,
    }
    if activation not in acts:
        raise ValueError(
            f"activation={activation!r} is unknown; allowed: {sorted(acts)}"
        )
    if depth < 1:
        raise ValueError(f"depth={depth} must be at least 1")
    layers: list[nn.Module] = []
    width = in_features
    for _ in range(depth):
        layers.append(nn.Linear(width, hidden))
        if batchnorm:
            layers.append(nn.BatchNorm1d(hidden))
        layers.append(acts[activation]())
        width = hidden
    layers.append(nn.Linear(width, num_classes))
    net = nn.Sequential(nn.Flatten(), *layers)
    init_weights(net, init, activation)
    return net


def init_weights(net: nn.Module, init: str, activation: str = "relu") -> None:
    """Re-initialise every Linear layer of ``net`` by one of the schemes named in :func:`mlp`."""
    if init not in ("default", "xavier", "kaiming", "small"):
        raise ValueError(
            f"init={init!r} is unknown; allowed: default, xavier, kaiming, small"
        )
    for m in net.modules():
        if isinstance(m, nn.Linear) and init != "default":
            if init == "xavier":
                nn.init.xavier_normal_(m.weight)
            elif init == "kaiming":
                nn.init.kaiming_normal_(
                    m.weight,
                    nonlinearity="relu"
                    if activation == "relu"
                    else "leaky_relu",
                )
            else:
                nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)


class ResidualMLP(nn.Module):
    """A deep MLP whose hidden layers add their input back, x + f(x) (He et al., 2016), to carry gradients."""

    def __init__(
        self,
        in_features: int = 64,
        hidden: int = 64,
        num_classes: int = 10,
        depth: int = 20,
        activation: str = "sigmoid",
    ):
        super().__init__()
        acts = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
        self.stem = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden))
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden, hidden), acts[activation]())
            for _ in range(depth)
        )
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for block in self.blocks:
            h = h + block(
                h
            )  # the identity path: dL/dh_l = dL/dh_{l+1} (I + df/dh)
        return self.head(h)


def gradient_norms(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> list[float]:
    """Gradient norm of each Linear layer's weight (input side first) after one backward pass."""
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    return [
        m.weight.grad.norm().item()
        for m in model.modules()
        if isinstance(m, nn.Linear)
    ]


def activation_stds(model: nn.Module, x: torch.Tensor) -> list[float]:
    """Standard deviation of each hidden activation (outputs of the non-linearities) for a batch ``x``."""
    stds: list[float] = []
    hooks = [
        m.register_forward_hook(
            lambda _m, _i, out: stds.append(out.std().item())
        )
        for m in model.modules()
        if isinstance(m, (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.LeakyReLU))
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return stds


def compare_with_torch(steps: int = 50, seed: int = 0) -> dict[str, float]:
    """Largest |difference| between each from-scratch optimizer and torch.optim after ``steps`` steps
    on the same small regression problem (float64), keyed by optimizer name and settings."""
    settings: list[tuple[str, dict]] = [
        ("SGD", dict(lr=0.05)),
        ("SGD", dict(lr=0.05, momentum=0.9)),
        ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
        ("Adagrad", dict(lr=0.1, lr_decay=0.01)),
        ("RMSprop", dict(lr=0.01)),
        ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True)),
        ("Adadelta", dict(lr=1.0)),
        ("Adam", dict(lr=0.01)),
        ("Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
        ("AdamW", dict(lr=0.01, weight_decay=0.1)),
    ]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 5, generator=g, dtype=torch.float64)
    y = x @ torch.randn(
        5, 1, generator=g, dtype=torch.float64
    ) + 0.1 * torch.randn(64, 1, generator=g, dtype=torch.float64)
    results: dict[str, float] = {}
    for name, kw in settings:
        nets = []
        for cls in (OPTIMIZERS[name], getattr(torch.optim, name)):
            torch.manual_seed(seed)
            net = nn.Sequential(
                nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1)
            ).double()
            opt = cls(net.parameters(), **kw)
            for _ in range(steps):
                opt.zero_grad()
                nn.functional.mse_loss(net(x), y).backward()
                opt.step()
            nets.append(net)
        diff = max(
            (p - q).abs().max().item()
            for p, q in zip(nets[0].parameters(), nets[1].parameters())
        )
        results[f"{name}({', '.join(f'{k}={v}' for k, v in kw.items())})"] = (
            diff
        )
    return results


# ============================================================================ experiments on the digits
#: Settings compared in the chapter: (label, optimizer name, hyper-parameters). The learning rates are
#: each method's usual starting point for a small network, not tuned on the test set.
OPTIMIZER_SETTINGS: list[tuple[str, str, dict]] = [
    ("SGD", "SGD", dict(lr=0.1)),
    ("SGD+momentum", "SGD", dict(lr=0.05, momentum=0.9)),
    ("Nesterov", "SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("Adagrad", "Adagrad", dict(lr=0.05)),
    ("RMSprop", "RMSprop", dict(lr=1e-3)),
    ("Adadelta", "Adadelta", dict(lr=1.0)),
    ("Adam", "Adam", dict(lr=1e-3)),
    ("AdamW", "AdamW", dict(lr=1e-3, weight_decay=1e-2)),
]


def digits_loaders(
    batch_size: int = 64, seed: int = 0, device: torch.device | str = "cpu"
):
    """Train / val / test loaders over scikit-learn's 8x8 digits, flattened to 64 features."""
    from .data import TensorLoader, load_digits

    splits = [load_digits(s) for s in ("train", "val", "test")]
    return tuple(
        TensorLoader(
            d.flat(),
            d.labels,
            batch_size=batch_size if i == 0 else 512,
            shuffle=i == 0,
            seed=seed,
            device=device,
        )
        for i, d in enumerate(splits)
    )


def train_with(
    optimizer: str,
    hyper: dict,
    *,
    epochs: int,
    seed: int = 0,
    model_fn: Callable[[], nn.Module] | None = None,
    schedule: Callable[[int], float] | None = None,
    clip_grad_norm: float | None = None,
    then: tuple[str, dict, int] | None = None,
    device: torch.device | str = "cpu",
    desc: str | None = None,
):
    """Train a fresh network on the digits with one optimizer; returns ``(model, history, test_accuracy)``.

    ``then=(name, hyper, epoch)`` switches to a second optimizer from ``epoch`` on
    (the notes' "Adam to explore fast, then SGD to fine-tune").
    """
    from .runtime import seed_everything
    from .train import History, evaluate, fit

    for name in (optimizer, *([then[0]] if then else [])):
        if name not in OPTIMIZERS:
            raise ValueError(
                f"optimizer {name!r} is unknown; allowed: {', '.join(OPTIMIZERS)}"
            )
    if then and not 0 <= then[2] <= epochs:
        raise ValueError(
            f"then switches at epoch {then[2]}, outside the run of epochs={epochs} (allowed: 0 to {epochs})"
        )
    seed_everything(seed)
    model = (model_fn or mlp)()
    train, val, test = digits_loaders(seed=seed, device=device)
    first_epochs = then[2] if then else epochs
    opt = OPTIMIZERS[optimizer](model.parameters(), **hyper)
    steps = len(train) * first_epochs
    sched = as_scheduler(opt, schedule) if schedule is not None else None
    hist = fit(
        model,
        train,
        optimizer=opt,
        epochs=first_epochs,
        val_loader=val,
        scheduler=sched,
        clip_grad_norm=clip_grad_norm,
        device=device,
        precision="fp32",
        verbose=False,
        desc=desc or optimizer,
    )
    if then:
        opt2 = OPTIMIZERS[then[0]](model.parameters(), **then[1])
        hist2 = fit(
            model,
            train,
            optimizer=opt2,
            epochs=epochs - first_epochs,
            val_loader=val,
            device=device,
            precision="fp32",
            verbose=False,
            desc=desc or then[0],
        )
        hist = History(
            step={k: hist.step[k] + hist2.step.get(k, []) for k in hist.step},
            epoch={
                k: hist.epoch[k] + hist2.epoch.get(k, []) for k in hist.epoch
            },
        )
    del steps
    return (
        model,
        hist,
        evaluate(model, test, device=torch.device(device))["acc"],
    )
