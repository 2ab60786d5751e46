"""vnotes.optim against torch.optim and torch.optim.lr_scheduler, step for step."""

import math

import pytest
import torch
from torch import nn

from vnotes import optim as vo

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adagrad", dict(lr=0.1)),
    (
        "Adagrad",
        dict(
            lr=0.1,
            lr_decay=0.01,
            weight_decay=0.01,
            initial_accumulator_value=0.1,
        ),
    ),
    ("RMSprop", dict(lr=0.01)),
    (
        "RMSprop",
        dict(
            lr=0.01, alpha=0.9, momentum=0.9, centered=True, weight_decay=0.01
        ),
    ),
    ("Adadelta", dict()),
    ("Adadelta", dict(lr=0.5, rho=0.8, weight_decay=0.01)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.5, amsgrad=True)),
]


def _run(cls, kw, dtype, steps=100, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(32, 6, generator=g, dtype=dtype)
    y = torch.randint(0, 3, (32,), generator=g)
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).to(
        dtype
    )
    opt = cls(net.parameters(), **kw)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return list(net.parameters())


@pytest.mark.parametrize(
    "name,kw", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)]
)
def test_matches_torch_optim_float64(name, kw):
    ours = _run(getattr(vo, name), kw, torch.float64)
    ref = _run(getattr(torch.optim, name), kw, torch.float64)
    for p, q in zip(ours, ref):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name,kw", CASES[::3], ids=[n for n, _ in CASES[::3]])
def test_matches_torch_optim_float32(name, kw):
    ours = _run(getattr(vo, name), kw, torch.float32)
    ref = _run(getattr(torch.optim, name), kw, torch.float32)
    for p, q in zip(ours, ref):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_state_dict_round_trip():
    net = nn.Linear(3, 1)
    opt = vo.Adam(net.parameters(), lr=0.1)
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    opt2 = vo.Adam(net.parameters(), lr=0.1)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.state[net.weight]["step"] == 1


def test_bad_arguments_are_named():
    p = [nn.Parameter(torch.zeros(1))]
    with pytest.raises(ValueError, match="lr=-0.1"):
        vo.SGD(p, lr=-0.1)
    with pytest.raises(ValueError, match="nesterov=True needs momentum"):
        vo.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"betas\[1\]=1.0"):
        vo.Adam(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="surface='sphere'"):
        vo.trajectory("sphere", "SGD")


def test_train_with_names_bad_optimizer_and_switch():
    with pytest.raises(ValueError, match="optimizer 'Lion' is unknown.*AdamW"):
        vo.train_with("Lion", dict(lr=1e-3), epochs=2)
    with pytest.raises(ValueError, match="optimizer 'sgd' is unknown.*SGD"):
        vo.train_with("Adam", {}, epochs=2, then=("sgd", {}, 1))
    with pytest.raises(ValueError, match="epoch 5, outside.*epochs=3"):
        vo.train_with("Adam", {}, epochs=3, then=("SGD", dict(lr=0.1), 5))
    with pytest.raises(ValueError, match="epoch -1"):
        vo.train_with("Adam", {}, epochs=3, then=("SGD", dict(lr=0.1), -1))


def _torch_lrs(make_sched, steps, base=1.0):
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base)
    sched = make_sched(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


SCHEDULES = [
    (
        vo.StepDecay(10, 0.5),
        lambda o: torch.optim.lr_scheduler.StepLR(o, 10, 0.5),
    ),
    (
        vo.ExponentialDecay(0.95),
        lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.95),
    ),
    (
        vo.Cosine(40, 0.1),
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(
            o, 40, eta_min=0.1
        ),
    ),
    (
        vo.LinearWarmup(10, 0.1),
        lambda o: torch.optim.lr_scheduler.LinearLR(
            o, 0.1, 1.0, total_iters=10
        ),
    ),
    (
        vo.WarmupCosine(10, 50, 0.1, 0.0),
        lambda o: torch.optim.lr_scheduler.SequentialLR(
            o,
            [
                torch.optim.lr_scheduler.LinearLR(o, 0.1, 1.0, total_iters=10),
                torch.optim.lr_scheduler.CosineAnnealingLR(o, 40),
            ],
            milestones=[10],
        ),
    ),
]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    "schedule,torch_sched",
    SCHEDULES,
    ids=[type(s).__name__ for s, _ in SCHEDULES],
)
def test_schedules_match_torch(schedule, torch_sched):
    steps = 41  # torch's CosineAnnealingLR turns back up after T_max; compare up to it
    ours = [schedule(t) for t in range(steps)]
    assert ours == pytest.approx(_torch_lrs(torch_sched, steps), abs=1e-9)
    wrapped = _torch_lrs(lambda o: vo.as_scheduler(o, schedule), steps)
    assert wrapped == pytest.approx(ours, abs=1e-12)


def test_cosine_closed_form_endpoints():
    c = vo.Cosine(100, 0.2)
    assert (
        c(0) == 1.0
        and c(100) == pytest.approx(0.2)
        and c(50) == pytest.approx(0.6)
    )
    with pytest.raises(ValueError, match="warmup=60"):
        vo.WarmupCosine(60, 50)


def test_trajectory_converges_on_quadratic():
    pts = vo.trajectory("quadratic", "SGD", steps=200, lr=0.05, momentum=0.9)
    assert pts.shape == (201, 2)
    assert math.hypot(*pts[-1]) < 1e-3
    pts = vo.trajectory("rosenbrock", "Adam", steps=2000, lr=0.02)
    assert math.hypot(pts[-1][0] - 1, pts[-1][1] - 1) < 0.05


def test_compare_with_torch_helper_is_tiny():
    diffs = vo.compare_with_torch(steps=20)
    assert len(diffs) == 10 and max(diffs.values()) < 1e-10


def test_vanishing_gradients_measured():
    x = torch.randn(64, 64)
    y = torch.randint(0, 10, (64,))
    torch.manual_seed(0)
    deep_sigmoid = vo.mlp(
        depth=20, hidden=64, activation="sigmoid", init="xavier"
    )
    norms = vo.gradient_norms(deep_sigmoid, x, y)
    assert norms[0] < 1e-6 * norms[-1], (
        "a deep sigmoid net's first layer gets a vanishing gradient"
    )
    torch.manual_seed(0)
    residual = vo.ResidualMLP(depth=20, activation="sigmoid")
    rn = vo.gradient_norms(residual, x, y)  # stem, 20 blocks, head
    assert rn[0] > 1e-2 * rn[-2], (
        "the identity path keeps the first layer's gradient within 100x of the last block's"
    )
