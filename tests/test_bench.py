"""The benchmark script's code paths, on a CPU at toy size: a GPU session must not be the first to run them."""

import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    """The module of the script ``benchmarks/<name>.py`` (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(
        name, ROOT / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _script("run")


@pytest.mark.parametrize("workload", sorted(bench.WORKLOADS))
def test_each_workload_runs_in_both_loops(workload):
    r = bench.loop_overhead(
        torch.device("cpu"), n=64, batch=32, epochs=1, workload=workload
    )
    for kind in ("hand-written", "vnotes.fit"):
        assert r[kind]["images_per_second"] > 0
        assert r[kind]["train_gflop_per_image"] > 0
    assert r["workload"] == workload and r["parameters"] > 0


def test_flop_count_of_a_linear_layer_is_exact():
    model = torch.nn.Linear(10, 3, bias=False)
    step = lambda m, b: m(b[0]).sum()  # noqa: E731
    # forward 2*10*3 per image; backward: the weight gradient only (the input needs none) = 2*10*3
    assert bench._flops_per_image(
        model, step, (torch.randn(4, 10), None)
    ) == 2 * (2 * 10 * 3)


# parameters in millions: ResNet-18 with the CIFAR stem and 36 classes; ViT-S/4 on 32 px; DDPM CIFAR-10 U-Net
@pytest.mark.parametrize(
    "workload,millions", [("resnet18", 11.2), ("vit", 21.3), ("ddpm", 35.7)]
)
def test_full_size_models_build(workload, millions):
    model, *_ = bench.WORKLOADS[workload](True)
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert n == pytest.approx(
        millions, rel=0.02
    )  # DDPM: 35.7M in Ho et al. (2020), Appendix B


def test_unknown_workload_is_named():
    with pytest.raises(ValueError, match="workload='vgg'"):
        bench.loop_overhead(
            torch.device("cpu"), n=8, batch=4, epochs=1, workload="vgg"
        )


def test_speed_claims_are_judged_from_recorded_metrics():
    rows = [
        {
            "notebook": "04b_language",
            "scale": "default",
            "metrics": {"kv_cache_speedup": 25.0},
        },
        {
            "notebook": "07h_multiway",
            "scale": "default",
            "metrics": {"vlmo_fusion_over_dual_time": 4.0},
        },
    ]
    judged = {c["metric"]: c for c in bench.speed_claims(rows)}
    assert judged["kv_cache_speedup"]["met"] is True
    assert judged["vlmo_fusion_over_dual_time"]["met"] is False
    assert all(c["met"] is None for c in bench.speed_claims([]))
    # every claimed metric is one its page records
    for c in bench.SPEED_CLAIMS:
        source = (ROOT / "chapters" / f"{c['page']}.ipynb").read_text()
        assert f'rec(\\"{c["metric"]}\\"' in source, c


def test_attention_kernel_benchmark_runs_and_reports_both_paths():
    a = bench.attention_kernels(shape=(2, 2, 5, 8), repeats=1)
    assert a["bf16_kernel_ms"] > 0 and a["fused_attention_ms"] > 0
    assert a["speedup"] == pytest.approx(
        a["bf16_kernel_ms"] / a["fused_attention_ms"], rel=0.05
    )


def test_full_cost_prediction_follows_its_formula(tmp_path):
    import json
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    fc = _script("full_costs")
    run = {
        "desc": "x",
        "trainable_parameters": 10,
        "flops_per_step": 1e12,
        "ops_per_step": 100,
        "full_steps": 1000,
        "peak_bytes": 2e9,
        "precision": "auto",
    }
    low, high = fc.predict([run], "A100")
    assert low == pytest.approx(1000 * (1e12 / (312e12 * 0.4) + 100 * 10e-6))
    assert high == pytest.approx(1000 * (1e12 / (312e12 * 0.1) + 100 * 20e-6))
    t4_low, _ = fc.predict([run], "T4")  # fp16 peak there
    assert t4_low == pytest.approx(1000 * (1e12 / (65e12 * 0.4) + 100 * 10e-6))
    fp32_low, _ = fc.predict([{**run, "precision": "fp32"}], "A100")
    assert fp32_low > low  # no tensor cores for fp32 requests
    path = tmp_path / "07c_albef.costs.json"
    path.write_text(json.dumps({"runs": [run, {**run, "full_steps": 500}]}))
    row = fc.page_row(path)
    assert row["steps"] == 1500 and row["train_pflop"] == pytest.approx(1.5)
    assert row["peak_gb"] == pytest.approx(2.0) and row["fits_t4_memory"]


def test_a_partial_dry_run_keeps_the_other_pages_rows():
    """Pages not tried this time keep their previous rows (listed as carried over); a page tried again gets its
    new row; a page tried and failed keeps none, so it shows as not dry-run."""
    fc = _script("full_costs")
    previous = {
        "pages": [
            {"page": "01_a", "steps": 1},
            {"page": "02_b", "steps": 2},
            {"page": "03_c", "steps": 3},
        ],
        "without_training": ["04_d"],
    }
    fresh = [{"page": "02_b", "steps": 20}]
    rows, without, carried = fc.merge_previous(
        fresh, [], previous, tried={"02_b", "03_c"}
    )
    assert [(r["page"], r["steps"]) for r in rows] == [
        ("01_a", 1),
        ("02_b", 20),
    ]
    assert without == ["04_d"] and carried == ["01_a", "04_d"]
    assert (
        "Carried over from an earlier dry run (not run again this time): 01_a, 04_d."
        in fc.report([], without, [], carried)
    )


def test_stage_times_are_read_from_the_make_test_log():
    runtimes = _script("runtimes")
    log = "== make venv: 108 s\nnoise\n== make unit: 274 s\n== make book: 2803 s\nmake test: 68 min 28 s\n"
    assert runtimes.stage_seconds(log) == {
        "venv": 108.0,
        "unit": 274.0,
        "book": 2803.0,
    }
    with pytest.raises(ValueError, match="'bok'.*allowed: venv"):
        runtimes.stage_seconds("== make bok: 3 s\n")
