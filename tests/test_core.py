"""The shared core: scales, runtime, recording, checkpoints, the training loop."""

import json

import pytest
import torch
from torch import nn

from vnotes.checkpoint import (
    cache_key,
    cached_model,
    load_checkpoint,
    save_checkpoint,
)
from vnotes.data import TensorLoader
from vnotes.record import Recorder
from vnotes.runtime import resolve_precision
from vnotes.scales import by_scale, resolve_scale
from vnotes.train import (
    EMA,
    EarlyStopping,
    correct_flags,
    ema_update,
    fit,
    keep_best,
)


def test_scales(monkeypatch):
    assert resolve_scale("smoke") == "smoke"
    monkeypatch.setenv("VNOTES_SCALE", "full")
    assert resolve_scale() == "full"
    with pytest.raises(ValueError, match="scale='huge'.*smoke, default, full"):
        resolve_scale("huge")
    assert by_scale("default", smoke=1, default=2, full=3) == 2
    with pytest.raises(ValueError, match="no value given"):
        by_scale("full", smoke=1, default=2)


def test_precision_auto():
    conv = nn.Conv2d(3, 4, 3)
    mlp = nn.Linear(3, 4)
    assert resolve_precision("auto", torch.device("cpu"), mlp) == "fp32"
    assert resolve_precision("fp32", torch.device("cpu"), conv) == "fp32"
    with pytest.raises(ValueError, match="precision='fp8'"):
        resolve_precision("fp8", torch.device("cpu"))


@pytest.mark.parametrize(
    "capability, expected",
    [((7, 5), "fp16"), ((7, 0), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")],
)
def test_precision_auto_on_gpus_follows_the_compute_capability(
    monkeypatch, capability, expected
):
    """A T4 (7.5) says bf16 is supported but has no bf16 tensor cores: it gets fp16 (and a scaler)."""
    monkeypatch.setattr(
        torch.cuda, "get_device_capability", lambda d=None: capability
    )
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    cuda = torch.device("cuda")
    assert resolve_precision("auto", cuda, nn.Linear(2, 2)) == expected
    assert resolve_precision("fp32", cuda, nn.Linear(2, 2)) == "fp32"


def test_fit_in_fp16_scales_the_loss_and_still_learns(monkeypatch):
    """The fp16 path (what a T4 gets): loss scaling, unscaled clipping, skipped overflow steps."""
    scaled = []

    class CountingScaler(torch.amp.GradScaler):
        def scale(self, outputs):
            scaled.append(outputs.dtype)
            return super().scale(outputs)

    monkeypatch.setattr(torch.amp, "GradScaler", CountingScaler)
    x, y = _blobs()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    hist = fit(
        model,
        TensorLoader(x, y, batch_size=32, shuffle=True, seed=0),
        optimizer=opt,
        epochs=3,
        device="cpu",
        precision="fp16",
        clip_grad_norm=1.0,
        verbose=False,
        progress=False,
    )
    assert hist.last("train_loss") < hist.epoch["train_loss"][0]
    # clipping saw the true (unscaled) norm: bounded by the threshold after clipping, never 65536x it
    assert max(hist.step["grad_norm"]) < 1e3
    assert model[0].weight.dtype == torch.float32  # master weights stay fp32
    assert len(scaled) == 3 * (
        len(x) // 32
    )  # every step's loss went through the scaler
    fit(
        model,
        TensorLoader(x, y, batch_size=32),
        optimizer=opt,
        epochs=1,
        device="cpu",
        precision="fp32",
        verbose=False,
        progress=False,
    )
    assert len(scaled) == 3 * (len(x) // 32)  # fp32 (and bf16) need no scaler


def test_recorder_writes_per_scale(tmp_path):
    rec = Recorder("99_demo", "smoke", directory=tmp_path)
    assert rec("acc", torch.tensor(0.5)) == 0.5
    data = json.loads((tmp_path / "smoke" / "99_demo.json").read_text())
    assert data["metrics"] == {"acc": 0.5} and data["scale"] == "smoke"
    with pytest.raises(ValueError, match="nan"):
        rec("bad", float("nan"))
    with pytest.raises(TypeError, match="must be a number"):
        rec("bad", "high")
    with pytest.raises(ValueError, match="scale='Default'.*smoke, default"):
        Recorder("99_demo", "Default", directory=tmp_path)
    assert not (tmp_path / "Default").exists()
    Recorder(
        "99_demo", "smoke", directory=tmp_path
    )  # a new run starts the file afresh
    assert (
        json.loads((tmp_path / "smoke" / "99_demo.json").read_text())[
            "metrics"
        ]
        == {}
    )


def test_checkpoint_atomic_and_safe(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, {"w": torch.ones(3), "epoch": 2})
    assert load_checkpoint(path)["epoch"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"], (
        "no temporary file is left behind"
    )

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint(path, {"w": Unpicklable()})
    assert load_checkpoint(path)["epoch"] == 2, (
        "a failed save leaves the old checkpoint intact"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_cached_model(tmp_path, monkeypatch):
    monkeypatch.setenv("VNOTES_CACHE_DIR", str(tmp_path))
    calls = []

    def train(m):
        calls.append(1)
        nn.init.constant_(m.weight, 3.0)

    key = cache_key("lin", width=2)
    a = cached_model(nn.Linear(2, 2), key, train)
    b = cached_model(nn.Linear(2, 2), key, train)
    assert calls == [1] and not a.loaded_from_cache and b.loaded_from_cache
    assert torch.equal(a.weight, b.weight)
    assert cache_key("lin", width=2) != cache_key("lin", width=3)


def test_cache_key_changes_with_the_code_and_torch(tmp_path, monkeypatch):
    """A model cached by older code (or another torch) is never served: the key covers both."""
    import shutil

    from vnotes import checkpoint

    copy = tmp_path / "vnotes"
    shutil.copytree(
        checkpoint.PACKAGE_DIR,
        copy,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    monkeypatch.setattr(checkpoint, "PACKAGE_DIR", copy)
    before = cache_key("clip", width=2)
    assert cache_key("clip", width=2) == before, "the key is deterministic"
    train_code = copy / "train.py"
    train_code.write_text(
        train_code.read_text() + "\n# a changed training loop\n"
    )
    after_edit = cache_key("clip", width=2)
    assert after_edit != before, (
        "editing vnotes/train.py must change every cache key"
    )
    (copy / "multimodal" / "new_tower.py").write_text("X = 1\n")
    assert cache_key("clip", width=2) != after_edit, (
        "a new module in a subpackage changes the key too"
    )
    monkeypatch.setattr(torch, "__version__", "0.0.1")
    assert cache_key("clip", width=2) not in (before, after_edit), (
        "another torch version changes the key"
    )


def test_exercise_packages_are_model_free_and_outside_the_model_key(
    tmp_path, monkeypatch
):
    """Editing an exercise never retrains a shared model: no model code imports the exercise packages, so
    the model cache key leaves them out (the book build's page key keeps them: pages show them)."""
    import ast
    import shutil

    from vnotes import checkpoint

    for path in checkpoint.PACKAGE_DIR.rglob("*.py"):
        relative = path.relative_to(checkpoint.PACKAGE_DIR)
        if relative.parts[0] in checkpoint.MODEL_FREE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                assert not any(
                    part in checkpoint.MODEL_FREE for part in name.split(".")
                ), (
                    f"{relative} imports {name}: model code must not depend on the exercises"
                )
    copy = tmp_path / "vnotes"
    shutil.copytree(
        checkpoint.PACKAGE_DIR,
        copy,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    monkeypatch.setattr(checkpoint, "PACKAGE_DIR", copy)
    before, whole = cache_key("clip", width=2), checkpoint.code_digest(skip=())
    (copy / "exercises" / "ch9.py").write_text("__all__ = []\n")
    assert cache_key("clip", width=2) == before
    assert checkpoint.code_digest(skip=()) != whole, (
        "the page key still sees the change"
    )


def test_tensor_loader():
    x = torch.arange(10).float()
    loader = TensorLoader(x, x * 2, batch_size=4, shuffle=True, seed=1)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    assert sorted(torch.cat([b[0] for b in batches]).tolist()) == list(
        range(10)
    )
    assert all(torch.equal(b[1], b[0] * 2) for b in batches)
    loader.set_epoch(1)
    assert not torch.equal(
        torch.cat([b[0] for b in loader]), torch.cat([b[0] for b in batches])
    )
    assert len(TensorLoader(x, batch_size=4, drop_last=True)) == 2
    sharded = [
        torch.cat(
            [b[0] for b in TensorLoader(x, batch_size=2, rank=r, world_size=2)]
        )
        for r in (0, 1)
    ]
    assert sorted(torch.cat(sharded).tolist()) == list(range(10))
    with pytest.raises(ValueError, match="same first dimension"):
        TensorLoader(x, x[:3], batch_size=2)


def _blobs(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 2, generator=g) + 3 * y[:, None].float()
    return x, y


def test_fit_learns_and_matches_a_hand_written_loop():
    x, y = _blobs()

    def make():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))

    model = make()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    hist = fit(
        model,
        TensorLoader(x, y, batch_size=32),
        optimizer=opt,
        epochs=3,
        val_loader=TensorLoader(x, y, batch_size=64),
        device="cpu",
        verbose=False,
    )
    ref = make()
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    losses = []
    for _ in range(3):
        for i in range(0, 256, 32):
            loss = nn.functional.cross_entropy(
                ref(x[i : i + 32]), y[i : i + 32]
            )
            ref_opt.zero_grad()
            loss.backward()
            ref_opt.step()
            losses.append(loss.item())
    assert hist.step["loss"] == pytest.approx(losses, abs=1e-6)
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q)
    assert hist.epochs_run == 3 and hist.last("val_acc") > 0.9
    assert len(hist.step["lr"]) == 24


def test_fit_schedule_clipping_ema_and_checkpoint_resume(tmp_path):
    x, y = _blobs()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=8, gamma=0.5)
    ema = EMA(model, decay=0.9)
    ckpt = tmp_path / "run.pt"
    hist = fit(
        model,
        TensorLoader(x, y, batch_size=32),
        optimizer=opt,
        epochs=2,
        scheduler=sched,
        clip_grad_norm=0.1,
        ema=ema,
        checkpoint_path=ckpt,
        device="cpu",
        verbose=False,
        val_loader=TensorLoader(x, y, batch_size=64),
    )
    assert hist.step["lr"][:9] == [0.5] * 8 + [0.25]
    assert len(hist.step["grad_norm"]) == 16
    assert not torch.equal(ema.model[0].weight, model[0].weight)
    state = load_checkpoint(ckpt)
    assert state["epoch"] == 1
    # resume to 4 epochs: continues from epoch 2 with the saved history
    hist2 = fit(
        model,
        TensorLoader(x, y, batch_size=32),
        optimizer=opt,
        epochs=4,
        scheduler=sched,
        checkpoint_path=ckpt,
        resume=True,
        device="cpu",
        verbose=False,
    )
    assert (
        hist2.epochs_run == 4
        and hist2.epoch["train_loss"][:2] == hist.epoch["train_loss"]
    )


def test_early_stopping_restores_best():
    model = nn.Linear(1, 1)
    es = EarlyStopping(monitor="val_loss", patience=2)
    for epoch, v in enumerate([3.0, 1.0, 2.0, 2.5]):
        with torch.no_grad():
            model.weight.fill_(v)
        stop = es.update(epoch, {"val_loss": v}, model)
    assert stop and es.best_epoch == 1
    es.restore(model)
    assert model.weight.item() == 1.0
    with pytest.raises(KeyError, match="val_acc"):
        EarlyStopping(monitor="val_acc").update(0, {"val_loss": 1.0}, model)


def test_keep_best_never_stops_and_keeps_the_best_epoch():
    model = nn.Linear(1, 1)
    es = keep_best(4)
    for epoch, v in enumerate(
        [0.2, 0.9, 0.5, 0.4]
    ):  # three bad epochs after the best
        with torch.no_grad():
            model.weight.fill_(v)
        assert not es.update(epoch, {"val_acc": v}, model)
    es.restore(model)
    assert es.best_epoch == 1 and model.weight.item() == pytest.approx(0.9)
    with pytest.raises(ValueError, match="epochs=0"):
        keep_best(0)


def test_correct_flags_mark_each_example_and_restore_the_mode():
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))  # predicts the larger coordinate
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]])
    y = torch.tensor([0, 0, 0])
    model.train()
    flags = correct_flags(model, TensorLoader(x, y, batch_size=2))
    assert flags.tolist() == [True, False, True] and model.training
    with pytest.raises(ValueError, match="empty loader"):
        correct_flags(model, [])


def test_ema_update_formula():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    expected = 0.9 * a.weight.detach().clone() + 0.1 * b.weight.detach()
    ema_update(a, b, 0.9)
    torch.testing.assert_close(a.weight.detach(), expected)


def test_fit_rejects_bad_arguments():
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = TensorLoader(
        torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), batch_size=2
    )
    with pytest.raises(ValueError, match="epochs=-1"):
        fit(model, loader, optimizer=opt, epochs=-1)
    with pytest.raises(ValueError, match="clip_grad_norm=0"):
        fit(model, loader, optimizer=opt, epochs=1, clip_grad_norm=0)


def test_fit_stops_on_divergence():
    x, y = _blobs()
    model = nn.Sequential(nn.Linear(2, 8), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=1e6)
    hist = fit(
        model,
        TensorLoader(x * 100, y, batch_size=32),
        optimizer=opt,
        epochs=5,
        device="cpu",
        verbose=False,
    )
    assert hist.epochs_run < 5


def test_show_table_displays_once_and_keeps_bars_inside_cells(capsys):
    from vnotes.plot import show_table, table_markdown

    md = table_markdown([{"max |a - b|": 0.5, "norm": "|x|"}], title="t")
    assert md.splitlines() == [
        "**t**",
        "",
        "| max \\|a - b\\| | norm |",
        "|---|---|",
        "| 0.500 | \\|x\\| |",
    ]
    # returns nothing: a cell that ends with show_table(...) must not print the Markdown a second time
    assert show_table([{"a": 1}]) is None
    with pytest.raises(ValueError, match="no rows"):
        table_markdown([])
    # one row of many settings turns on its side; several rows never do
    wide = {f"s{i}": i for i in range(6)}
    side = table_markdown([wide]).splitlines()
    assert side[0] == "| setting | value |" and side[2:4] == [
        "| s0 | 0 |",
        "| s1 | 1 |",
    ]
    assert len(side) == 2 + 6
    assert len(table_markdown([wide, wide]).splitlines()) == 4


def test_titled_image_grids_stay_legible():
    import matplotlib.pyplot as plt

    from vnotes.plot import (
        TITLE_POINTS,
        TITLED_COLUMNS,
        show_images,
        wrap_words,
    )

    assert (
        wrap_words("a large red circle on the left", 10)
        == "a large\nred circle\non the\nleft"
    )
    assert wrap_words("two\nlines", 40) == "two\nlines"
    images = torch.rand(16, 3, 8, 8)
    axes = show_images(
        images,
        ncols=16,
        titles=[f"a very long caption {i}" for i in range(16)],
    )
    fig = axes[0].figure
    assert (
        len(axes) == 16
        and fig.axes[TITLED_COLUMNS].get_position().y0
        < fig.axes[0].get_position().y0
    )
    assert axes[0].title.get_fontsize() >= TITLE_POINTS
    plt.close(fig)
    untitled = show_images(
        images, ncols=16
    )  # samples without titles keep their one row
    assert untitled[15].get_subplotspec().rowspan.start == 0
    plt.close(untitled[0].figure)
    labelled = show_images(
        images, ncols=16, titles=["AE"] + [""] * 15
    )  # a row label
    assert labelled[15].get_subplotspec().rowspan.start == 0
    assert labelled[0].get_title(loc="left") == "AE"
    plt.close(labelled[0].figure)
    with pytest.raises(ValueError, match="3 titles for 16 images"):
        show_images(images, titles=["a", "b", "c"])


def test_recorded_value_is_a_float_that_displays_nothing(tmp_path):
    """A cell ending in rec(...) shows no bare number; a cell ending in rec shows the recorded table."""
    rec = Recorder("99_demo", "smoke", directory=tmp_path)
    value = rec("acc", 0.25)
    assert isinstance(value, float) and value == 0.25 and value * 2 == 0.5
    assert f"{value:.2f}" == "0.25"
    assert value._ipython_display_() is None
    rec("loss", 1.5)
    table = rec._repr_markdown_()
    assert "| `acc` | 0.25 |" in table and "| `loss` | 1.5 |" in table
    assert "tests/thresholds/99_demo.toml" in table
    assert str(tmp_path) not in table  # no local path on the page


def test_dry_run_switch_caps_loops_and_keeps_its_numbers_apart(
    tmp_path, monkeypatch
):
    """VNOTES_DRY_RUN=n: fit runs at most n epochs of n batches, evaluation n batches; metrics go to
    <scale>-dry and the model cache is a private folder (a dry model is never reused)."""
    from vnotes.checkpoint import cache_dir
    from vnotes.scales import dry_cap, dry_iter, dry_run_steps

    monkeypatch.delenv("VNOTES_DRY_RUN", raising=False)
    real_cache = cache_dir()
    assert dry_run_steps() is None and dry_cap(50) == 50
    monkeypatch.setenv("VNOTES_DRY_RUN", "2")
    assert (
        dry_run_steps() == 2
        and dry_cap(50) == 2
        and list(dry_iter(range(9))) == [0, 1]
    )
    assert cache_dir() != real_cache and "vnotes-dry-cache" in cache_dir().name
    x, y = _blobs()
    model = nn.Linear(2, 2)
    hist = fit(
        model,
        TensorLoader(x, y, batch_size=16),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        epochs=5,
        val_loader=TensorLoader(x, y, batch_size=16),
        device="cpu",
        verbose=False,
        progress=False,
    )
    assert hist.epochs_run == 2 and len(hist.step["loss"]) == 4
    assert len(correct_flags(model, TensorLoader(x, y, batch_size=16))) == 32
    rec = Recorder("99_demo", "full", directory=tmp_path)
    rec("acc", 0.5)
    assert (tmp_path / "full-dry" / "99_demo.json").exists()
    assert not (tmp_path / "full").exists()
    for bad in ("-1", "two"):
        monkeypatch.setenv("VNOTES_DRY_RUN", bad)
        with pytest.raises(ValueError, match="VNOTES_DRY_RUN"):
            dry_run_steps()


def test_adamw_one_cycle_matches_torch_and_checks_its_input():
    from vnotes.train import adamw_one_cycle

    model = nn.Linear(3, 2)
    model.bias.requires_grad_(False)  # frozen parameters are left out
    opt, sched = adamw_one_cycle(
        model, lr=0.1, total_steps=10, weight_decay=0.02, warmup=0.2
    )
    assert [p for g in opt.param_groups for p in g["params"]] == [model.weight]
    ref_opt = torch.optim.AdamW([model.weight], lr=0.1, weight_decay=0.02)
    ref = torch.optim.lr_scheduler.OneCycleLR(
        ref_opt, max_lr=0.1, total_steps=10, pct_start=0.2
    )
    for _ in range(9):
        assert opt.param_groups[0]["lr"] == pytest.approx(
            ref_opt.param_groups[0]["lr"]
        )
        opt.step(), sched.step(), ref_opt.step(), ref.step()
    with pytest.raises(ValueError, match="warmup"):
        adamw_one_cycle(
            model, lr=0.1, total_steps=10, weight_decay=0, warmup=1.0
        )


def test_dry_run_notes_the_cost_of_a_full_training_run(tmp_path, monkeypatch):
    monkeypatch.setenv("VNOTES_DRY_RUN", "2")
    Recorder("zz_costs", "full", directory=tmp_path)
    model = nn.Linear(100, 10)
    x, y = torch.randn(64, 100), torch.randint(0, 10, (64,))
    fit(
        model,
        TensorLoader(x, y, batch_size=16),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        epochs=5,
        progress=False,
    )
    runs = json.loads(
        (tmp_path / "full-dry" / "zz_costs.costs.json").read_text()
    )["runs"]
    assert len(runs) == 1
    run = runs[0]
    assert (
        run["full_steps"] == 5 * 4
    )  # the steps of the real run, not of the dry one
    assert run["parameters"] == 100 * 10 + 10
    # forward x @ W.T (2*B*in*out) and the weight gradient (the same again); no input gradient
    assert run["flops_per_step"] == 2 * (2 * 16 * 100 * 10)
    weights_and_batch = 4 * (
        1010 + 64 * 100 // 4 + 16
    )  # fp32 weights, one batch of x and int64 y
    assert run["peak_bytes"] >= weights_and_batch + 4 * 1010  # + the gradients


def test_peak_memory_counts_new_storages_and_their_release():
    from vnotes.costs import PeakMemory

    base = torch.zeros(1000)
    with PeakMemory() as meter:
        a = torch.ones(1000)  # 4,000 new bytes
        base.add_(1)  # in place: nothing new
        view = a[:10]  # a view: nothing new
        del a, view
        b = torch.ones(250)  # after a is freed: live 1,000 bytes
    assert meter.peak == 4000
    assert meter.live == 1000
    del b


def test_budget_columns_and_marks_name_the_rows_that_differ():
    from vnotes.plot import budget_columns, mark_budgets

    b = budget_columns(steps=100, batch_size=64, parameters=1234)
    assert b == {
        "training steps": 100,
        "images seen": 6400,
        "parameters": 1234,
    }
    rows = [
        {"model": "real data"},
        {"model": "a", **budget_columns(steps=100, batch_size=64)},
        {"model": "b", **budget_columns(steps=100, batch_size=64)},
        {"model": "c", **budget_columns(steps=250, batch_size=32)},
    ]
    marked = mark_budgets(rows)
    assert "equal budget" not in marked[0]
    assert [r["equal budget"] for r in marked[1:3]] == ["yes", "yes"]
    assert marked[3]["equal budget"] == "no: 2.5× steps, 1.2× images"
    assert "equal budget" not in rows[1], "the rows passed in are not changed"
    with pytest.raises(ValueError, match="batch_size=0"):
        budget_columns(steps=1, batch_size=0)
    with pytest.raises(ValueError, match="no row has the budget columns"):
        mark_budgets([{"model": "x"}])


def test_show_table_marks_rows_that_state_a_budget(monkeypatch):
    import IPython.display

    from vnotes.plot import budget_columns, show_table

    shown = []
    monkeypatch.setattr(
        IPython.display, "display", lambda obj: shown.append(obj.data)
    )
    show_table(
        [
            {"model": "a", **budget_columns(steps=10, batch_size=4)},
            {"model": "b", **budget_columns(steps=20, batch_size=4)},
            {"model": "c", **budget_columns(steps=10, batch_size=4)},
        ]
    )
    assert "| equal budget |" in shown[0] and "no: 2× steps" in shown[0]
    show_table([{"model": "a", "accuracy": 0.5}])  # no budget: no mark
    assert "equal budget" not in shown[1]


def test_regularization_summary_states_the_mean_budget_over_seeds():
    from vnotes.regularization import RunResult, summarize
    from vnotes.train import History

    def run(steps, epochs):
        h = History()
        h.log_steps(loss=[1.0] * steps)
        for _ in range(epochs):
            h.log_epoch(train_loss=1.0, val_loss=1.0)
        return RunResult(None, 0, None, h, 1.0, 0.9, 0.9, 0.3, n_train=100)

    row = summarize([run(30, 3), run(50, 5)], name="x")
    assert row["training steps"] == 40 and row["images seen"] == 400


def test_fit_in_channels_last_layout_on_the_cpu_matches_the_plain_layout():
    # chapter 5's ResNets and CLIP's image tower train in channels-last layout on the CPU too (faster there):
    # the numbers are those of the plain layout up to rounding. Left at "auto", a CPU keeps the plain layout.
    torch.manual_seed(0)
    x, y = torch.rand(64, 3, 12, 12), torch.randint(0, 3, (64,))

    def cnn():
        torch.manual_seed(1)
        return nn.Sequential(
            # no bias before the BatchNorm: its gradient is zero up to rounding, which Adam would magnify
            nn.Conv2d(3, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 3),
        )

    runs = {}
    for layout in (True, "auto"):
        model = cnn()
        hist = fit(
            model,
            TensorLoader(x, y, batch_size=16),
            optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
            epochs=2,
            device="cpu",
            # fp32: "auto" is bf16 on a CPU with native bf16 (AVX-512), whose rounding differs by layout far
            # more than fp32's (parameters 1e-3 apart after 8 steps on the AVX-512 EPYC)
            precision="fp32",
            channels_last=layout,
            verbose=False,
        )
        runs[layout] = (model, hist)
    cl_model, cl_hist = runs[True]
    plain_model, plain_hist = runs["auto"]
    assert cl_model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not cl_model[0].weight.is_contiguous()
    assert plain_model[0].weight.is_contiguous()
    assert cl_hist.step["loss"] == pytest.approx(
        plain_hist.step["loss"], rel=1e-4
    )
    for p, q in zip(cl_model.parameters(), plain_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
