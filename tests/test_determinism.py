"""Same seed, same numbers: two pages that train, executed twice at ``smoke``, record identical metrics.

Each run is a fresh kernel (papermill, ``-p scale smoke``, cwd ``chapters/``) with
``VNOTES_SCALE=smoke``, ``OMP_NUM_THREADS=1``, ``VNOTES_PROGRESS=0``, ``VNOTES_DEVICE=cpu``, its own
empty ``VNOTES_METRICS_DIR`` and its own empty model cache ``VNOTES_CACHE_DIR``, so a second run
trains again instead of loading what the first one saved.

The pages: 04a (trains single- and multi-head attention) and 04e (trains a deformable-attention
classifier), the cheapest pages that train (about 13 s each at smoke on the 2-core machine) and
have no ``interact`` cells, which sometimes leave a headless kernel hanging (nbclient#312).

Every recorded metric must be equal bit for bit, except the time-valued ones, which measure the
machine rather than the method: names matching :data:`TIME_VALUED`, with a whole ``_``-separated
word ``ms``, ``second(s)``, ``time``, ``latency``, ``speedup``, ``throughput`` or ``per_second``
(today: ``blip_ms_per_step``, ``coca_ms_per_step``, ``<family>_latency_ms``,
``ms_per_gmac_depthwise_over_dense``, ``kv_cache_speedup``, ``multi_over_single_step_time``,
``vlmo_fusion_over_dual_time``, ``pareto_front_size_latency``).
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from bookinfo import ROOT

pytestmark = pytest.mark.slow

NOTEBOOKS = ["04a_attention", "04e_deformable"]
TIME_VALUED = re.compile(
    r"(?:^|_)(?:ms|seconds?|time|latency|speedup|throughput|per_second)(?:_|$)"
)
PAPERMILL = Path(sys.executable).with_name("papermill")
HANG_SECONDS = 60  # a run whose processes use no CPU this long is hung
TIMEOUT_SECONDS = 600


def _cpu_seconds(procs: list[psutil.Process], seen: dict[int, float]) -> float:
    """CPU seconds used so far by ``procs`` and by every process seen before (an exited kernel's time still counts)."""
    for p in procs:
        try:
            t = p.cpu_times()
            seen[p.pid] = max(seen.get(p.pid, 0.0), t.user + t.system)
        except psutil.Error:  # exited meanwhile: keep its last reading
            pass
    return sum(seen.values())


def _kill(procs: list[psutil.Process]) -> None:
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass


def _execute(cmd: list[str], env: dict, log: Path) -> str:
    """Run ``cmd``: 'done', 'failed', or 'hung' (killed with its kernel after HANG_SECONDS of almost no CPU)."""
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out)
        root = psutil.Process(proc.pid)
        tree = [root]
        start = time.monotonic()
        samples = []  # (time, CPU seconds of papermill and its kernel)
        seen: dict[
            int, float
        ] = {}  # the last CPU reading of every process of the run
        while proc.poll() is None:
            time.sleep(1)
            try:  # the kernel runs in a session of its own: follow it by pid
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            now = time.monotonic()
            samples = [s for s in samples if now - s[0] <= HANG_SECONDS]
            samples.append((now, _cpu_seconds(tree, seen)))
            # a working kernel uses most of a core; an idle one only ticks
            idle = (
                now - samples[0][0] >= HANG_SECONDS - 2
                and samples[-1][1] - samples[0][1] < 0.05 * HANG_SECONDS
            )
            if idle or now - start > TIMEOUT_SECONDS:
                _kill(tree)
                proc.wait()
                return "hung"
    _kill(tree[1:])  # a kernel left behind by a failed run
    return "done" if proc.returncode == 0 else "failed"


def _run(notebook: str, work: Path, attempts: int = 2) -> dict[str, float]:
    """Execute ``notebook`` at smoke in a fresh kernel; return the metrics it recorded."""
    chapters = ROOT / "chapters"
    for attempt in range(1, attempts + 1):
        run = work / f"attempt{attempt}"
        metrics, cache = run / "metrics", run / "cache"
        metrics.mkdir(parents=True)
        cache.mkdir()
        # figures built but not drawn, as in `make notebooks`: the metrics do not depend on drawing
        profile = run / "ipython" / "profile_default"
        profile.mkdir(parents=True)
        (profile / "ipython_kernel_config.py").write_text(
            "c.InlineBackend.figure_formats = set()\n"
        )
        env = {
            **os.environ,
            "VNOTES_SCALE": "smoke",
            "VNOTES_METRICS_DIR": str(metrics),
            "VNOTES_CACHE_DIR": str(cache),
            "VNOTES_PROGRESS": "0",
            "VNOTES_DEVICE": "cpu",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "IPYTHONDIR": str(run / "ipython"),
        }
        cmd = [
            str(PAPERMILL),
            str(chapters / f"{notebook}.ipynb"),
            str(run / f"{notebook}.ipynb"),
            *("-p", "scale", "smoke", "-k", "python3"),
            *("--cwd", str(chapters), "--no-progress-bar"),
        ]
        status = _execute(cmd, env, run / "log.txt")
        log = (run / "log.txt").read_text()[-3000:]
        if status == "hung":
            continue  # a fresh kernel, from the top
        assert status == "done", f"{notebook} failed:\n{log}"
        recorded = json.loads(
            (metrics / "smoke" / f"{notebook}.json").read_text()
        )
        assert recorded["scale"] == "smoke"
        return recorded["metrics"]
    pytest.fail(
        f"{notebook} hung {attempts} times (no CPU use for {HANG_SECONDS} s):\n{log}"
    )


def test_time_valued_names():
    exempt = [
        "blip_ms_per_step",
        "resnet_latency_ms",
        "ms_per_gmac_depthwise_over_dense",
        "kv_cache_speedup",
        "multi_over_single_step_time",
        "vlmo_fusion_over_dual_time",
        "pareto_front_size_latency",
        "train_seconds",
        "images_per_second",
    ]
    kept = [
        "mae_reconstruction_mse_75",
        "multi_over_single_grad_ratio",
        "adam_test_accuracy",
        "timestep_count",
        "msa_heads",
    ]
    assert [n for n in exempt if not TIME_VALUED.search(n)] == []
    assert [n for n in kept if TIME_VALUED.search(n)] == []


@pytest.mark.skipif(
    not PAPERMILL.exists(), reason="papermill is not installed in this venv"
)
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_same_seed_same_metrics(notebook, tmp_path):
    first = _run(notebook, tmp_path / "first")
    second = _run(notebook, tmp_path / "second")
    assert first, f"{notebook} recorded no metrics at smoke"
    assert sorted(first) == sorted(second)
    compared = [n for n in first if not TIME_VALUED.search(n)]
    assert compared, f"{notebook} records only time-valued metrics"
    differ = {
        n: (first[n], second[n]) for n in compared if first[n] != second[n]
    }
    assert not differ, (
        f"{notebook}: same seed, different numbers (first, second): {differ}"
    )
