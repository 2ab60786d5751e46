"""tools/build_book.py: dependency order, keys that change with what a page depends on, incremental runs."""

import importlib.util
import json
import re
import threading
import time
from pathlib import Path

import pytest

from bookinfo import ROOT, chapter_notebooks

spec = importlib.util.spec_from_file_location(
    "build_book", ROOT / "tools" / "build_book.py"
)
bb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bb)

# a call in a page's code that reads a model (or metric files) another page leaves behind
SHARED_CALLS = {
    "clip": r"\bchapter_clip\(",
    "vilt": r"\bchapter_vilt\((?![^)]*use_cache=False)",
    "generative": r"\bload_or_train\(",
    "judge": r"\bload_or_train\(\s*\"judge\"",
    "ssl": r"\b(load_or_pretrain|chapter_ranking)\(",
}


def _code(nb: Path) -> str:
    cells = json.loads(nb.read_text())["cells"]
    return "\n".join(
        "".join(c["source"]) for c in cells if c["cell_type"] == "code"
    )


def test_every_page_that_reads_a_shared_model_waits_for_its_owner():
    for nb in chapter_notebooks():
        code = _code(nb)
        for name, pattern in SHARED_CALLS.items():
            info = bb.SHARED_MODELS[name]
            uses = bool(re.search(pattern, code))
            if nb.stem in info["owner"]:
                continue
            assert uses == (nb.stem in info["users"]), (
                f"{nb.stem} {'reads' if uses else 'does not read'} {info['what']}: "
                f"tools/build_book.py SHARED_MODELS[{name!r}]['users'] must {'list' if uses else 'not list'} it"
            )
            if uses:
                assert set(info["owner"]) <= bb.DEPENDS_ON[nb.stem]


def test_shared_model_pages_exist_in_the_toc():
    stems = set(bb.toc_notebooks())
    for info in bb.SHARED_MODELS.values():
        assert set(info["owner"]) | set(info["users"]) <= stems


def _fake_book(tmp_path, monkeypatch, stems, depends):
    chapters = tmp_path / "chapters"
    chapters.mkdir()
    for s in stems:
        (chapters / f"{s}.ipynb").write_text(
            json.dumps(
                {
                    "cells": [],
                    "metadata": {},
                    "nbformat": 4,
                    "nbformat_minor": 5,
                    "note": s,
                }
            )
        )
    monkeypatch.setattr(bb, "CHAPTERS", chapters)
    monkeypatch.setattr(bb, "BUILD", tmp_path / "_build")
    monkeypatch.setattr(bb, "RUNTIMES_JSON", tmp_path / "runtimes.json")
    monkeypatch.setattr(bb, "DEPENDS_ON", depends)
    monkeypatch.setattr(
        bb,
        "machine",
        lambda: {
            "cpu": "test CPU",
            "cores": 2,
            "gpu": None,
            "threads": 1,
            "torch": "0",
        },
    )
    monkeypatch.setenv("VNOTES_METRICS_DIR", str(tmp_path / "metrics"))
    log: list[tuple[str, str, float]] = []
    lock = threading.Lock()

    def run_page(
        stem, scale, timeout
    ):  # a page that takes 50 ms and leaves its notebook and metrics
        with lock:
            log.append(("start", stem, time.perf_counter()))
        time.sleep(0.05)
        out = bb.executed_path(stem, scale)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text((chapters / f"{stem}.ipynb").read_text())
        metrics = tmp_path / "metrics" / scale / f"{stem}.json"
        metrics.parent.mkdir(parents=True, exist_ok=True)
        metrics.write_text("{}")
        with lock:
            log.append(("end", stem, time.perf_counter()))
        return True, 0.05, ""

    monkeypatch.setattr(bb, "_run_page", run_page)
    return chapters, log


def test_parallel_execution_respects_dependencies_and_reruns_only_what_changed(
    tmp_path, monkeypatch
):
    stems = ["a_owner", "b_user", "c_user", "d_free", "e_free"]
    depends = {"b_user": {"a_owner"}, "c_user": {"a_owner"}}
    chapters, log = _fake_book(tmp_path, monkeypatch, stems, depends)

    records = bb.execute(stems, "smoke", jobs=2, timeout=60)
    assert set(records) == set(stems) and all(
        r["ok"] for r in records.values()
    )
    when = {(kind, stem): t for kind, stem, t in log}
    for user in ("b_user", "c_user"):
        assert when[("start", user)] >= when[("end", "a_owner")], (
            f"{user} started before its owner finished"
        )
    starts = sorted(t for kind, _, t in log if kind == "start")
    ends = sorted(t for kind, _, t in log if kind == "end")
    assert starts[1] < ends[0], (
        "two pages should run at the same time with jobs=2"
    )
    assert json.loads(
        (tmp_path / "_build" / "execution-smoke.json").read_text()
    )["executed"]

    log.clear()
    records = bb.execute(stems, "smoke", jobs=2, timeout=60)
    assert log == [] and all(r["reused"] for r in records.values()), (
        "nothing changed: nothing runs"
    )

    (chapters / "a_owner.ipynb").write_text(
        (chapters / "a_owner.ipynb").read_text().replace("a_owner", "A")
    )
    bb.execute(stems, "smoke", jobs=2, timeout=60)
    rerun = {stem for kind, stem, _ in log if kind == "start"}
    assert rerun == {"a_owner", "b_user", "c_user"}, (
        "a changed page re-executes with the pages that wait for it"
    )


def test_a_failed_page_skips_its_dependents_and_fails_the_build(
    tmp_path, monkeypatch
):
    stems = ["a_owner", "b_user", "d_free"]
    _, log = _fake_book(tmp_path, monkeypatch, stems, {"b_user": {"a_owner"}})
    ok_run = bb._run_page
    monkeypatch.setattr(
        bb,
        "_run_page",
        lambda s, sc, t: (
            (False, 0.01, "boom") if s == "a_owner" else ok_run(s, sc, t)
        ),
    )
    with pytest.raises(SystemExit, match="a_owner, b_user"):
        bb.execute(stems, "smoke", jobs=2, timeout=60)
    assert {stem for kind, stem, _ in log if kind == "start"} == {"d_free"}


def test_page_key_follows_the_package_and_torch(tmp_path, monkeypatch):
    stems = ["a_owner", "b_user"]
    _fake_book(tmp_path, monkeypatch, stems, {"b_user": {"a_owner"}})
    first = bb.page_keys(stems, "default")
    assert first == bb.page_keys(stems, "default")
    assert bb.page_keys(stems, "smoke") != first
    monkeypatch.setattr(bb, "package_digest", lambda: "changed vnotes")
    assert all(bb.page_keys(stems, "default")[s] != first[s] for s in stems)


def test_cost_line_says_scale_time_machine_date_and_the_other_scales():
    meta = {
        "scale": "default",
        "seconds": 84.2,
        "date": "2026-12-02",
        "jobs": 2,
        "machine": {
            "cpu": "AMD EPYC",
            "cores": 2,
            "gpu": None,
            "threads": 1,
            "torch": "2.14.1",
        },
    }
    line = bb.cost_line("07c_albef", meta, {"07c_albef": 9.6}, {"full": {}})
    for part in (
        "`default`",
        "84 s",
        "AMD EPYC",
        "torch 2.14.1",
        "2026-12-02",
        "`smoke` 10 s",
        "`full` not measured",
        "CLIP",
        "vnotes-cost",
    ):
        assert part in line, f"{part!r} missing from the cost line:\n{line}"
    owner = bb.cost_line("07a_clip", meta, {}, {})
    assert "includes training" in owner and "7c" in owner


def test_smoke_times_come_from_the_nbval_report(tmp_path, monkeypatch):
    junit = tmp_path / "j.xml"
    junit.write_text(
        '<testsuites><testsuite><testcase classname="chapters.01_optimization.ipynb" name="Cell 0" '
        'time="1.5"/><testcase classname="chapters.01_optimization.ipynb" name="Cell 1" time="2.0"/>'
        '<testcase classname="tests.test_core" name="x" time="9"/></testsuite></testsuites>'
    )
    monkeypatch.setattr(bb, "SMOKE_JUNIT", junit)
    assert bb.smoke_seconds() == {"01_optimization": 3.5}


@pytest.mark.slow
def test_a_hung_page_is_killed_and_run_again(tmp_path, monkeypatch):
    """A kernel that stops using the CPU is taken for hung: killed, retried, then reported."""

    def notebook(stem, code):
        cell = {
            "cell_type": "code",
            "execution_count": None,
            "id": "c",
            "metadata": {},
            "outputs": [],
            "source": code,
        }
        (tmp_path / f"{stem}.ipynb").write_text(
            json.dumps(
                {
                    "cells": [cell],
                    "metadata": {
                        "kernelspec": {
                            "name": "python3",
                            "display_name": "Python 3",
                            "language": "python",
                        }
                    },
                    "nbformat": 4,
                    "nbformat_minor": 5,
                }
            )
        )

    notebook("quick", "x = sum(range(1000))")
    notebook("stuck", "import time\ntime.sleep(600)")
    monkeypatch.setattr(bb, "CHAPTERS", tmp_path)
    monkeypatch.setattr(bb, "BUILD", tmp_path / "_build")
    monkeypatch.setattr(bb, "HANG_SECONDS", 4)
    ok, _, _ = bb._run_page("quick", "smoke", timeout=60)
    assert ok and bb.executed_path("quick", "smoke").exists()
    t = time.perf_counter()
    ok, _, log = bb._run_page("stuck", "smoke", timeout=60, attempts=2)
    assert not ok and "hung" in log and "attempt 2" in log
    assert time.perf_counter() - t < 60, "the hang was not detected in time"


def test_cost_line_quotes_the_pages_full_prediction(tmp_path, monkeypatch):
    costs = tmp_path / "full_costs.json"
    costs.write_text(
        json.dumps(
            {
                "pages": [
                    {
                        "page": "07c_albef",
                        "predicted_minutes": {
                            "T4": [1.5, 6.2],
                            "A100": [0.3, 1.4],
                        },
                    }
                ],
                "without_training": ["03b_cnn_families"],
            }
        )
    )
    monkeypatch.setattr(bb, "FULL_COSTS_JSON", costs)
    line = bb.full_prediction("07c_albef")
    assert "predicted" in line and "1.5-6.2 min on a T4" in line
    assert "0.3-1.4 min on an A100" in line and "FULL_COSTS.md" in line
    assert "20 minutes" not in line  # 6.2 min at worst: nothing to explain
    assert "trains nothing" in bb.full_prediction("03b_cnn_families")
    assert "needs a GPU" in bb.full_prediction("99_unknown")


def test_a_page_past_20_minutes_on_a_t4_says_why():
    """The launch share is read back from the two ends of the range (full_costs.predict's formula)."""
    # 10,000 steps of 1e12 FLOPs (T4 fp16 peak 65 TFLOPS) and 2000 launches each: 32 min at worst
    arithmetic, launches = 10_000 * 1e12 / 65e12, 10_000 * 2000
    low = (arithmetic / 0.4 + launches * 10e-6) / 60
    high = (arithmetic / 0.1 + launches * 20e-6) / 60
    row = {
        "runs": ["a", "b"],
        "steps": 10_000,
        "predicted_minutes": {"T4": [round(low, 1), round(high, 1)]},
    }
    why = bb.over_20_min_on_a_t4(row)
    share = launches * 20e-6 / (high * 60)
    said = re.search(r"about (\d+)% of the pessimistic figure", why)
    # the range is rounded to 0.1 min, so the share read back is within a point or two
    assert high > 20 and said and abs(int(said.group(1)) - 100 * share) < 2, (
        why,
        share,
    )
    assert "2 models for 10,000 steps" in why and "mostly arithmetic" in why
    row["predicted_minutes"]["T4"] = [5.0, 19.9]
    assert bb.over_20_min_on_a_t4(row) == ""


def test_a_missed_wake_up_does_not_stall_the_runner():
    """A channel whose timed waits never fire (the message sits in the socket: a missed wake-up) still delivers
    it through the zero-timeout check; a finite timeout still ends in Empty."""
    import asyncio
    from queue import Empty

    class MissedWakeUp:
        def __init__(self, message):
            self.message, self.calls = message, []

        async def get_msg(self, timeout=None):
            self.calls.append(timeout)
            if timeout == 0 and self.message is not None:
                return self.message
            if timeout is None:
                raise AssertionError(
                    "waited with no timeout: this is how a page stalls"
                )
            await asyncio.sleep(min(timeout, 0.01))
            raise Empty

    channel = MissedWakeUp({"msg": "execute_reply"})
    bb.patient_channel(channel)
    assert asyncio.run(channel.get_msg()) == {"msg": "execute_reply"}
    assert channel.calls == [bb.POLL_SLICE, 0]
    silent = MissedWakeUp(None)
    bb.patient_channel(silent)
    start = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(silent.get_msg(timeout=0.05))
    assert time.monotonic() - start < 1.0 and None not in silent.calls


def _one_cell_notebook(path: Path, code: str) -> Path:
    cell = dict(
        cell_type="code", execution_count=None, id="c", metadata={}, outputs=[]
    )
    kernel = dict(name="python3", display_name="Python 3", language="python")
    path.write_text(
        json.dumps(
            dict(
                cells=[dict(cell, source=code)],
                metadata=dict(kernelspec=kernel),
                nbformat=4,
                nbformat_minor=5,
            )
        )
    )
    return path


@pytest.mark.slow
def test_run_one_executes_a_notebook_and_fails_on_an_error(tmp_path):
    """`make full-dry` runs each page with --run-one: the exit status says whether every cell ran."""
    import subprocess
    import sys

    def run_one(code: str) -> tuple[int, Path]:
        src = _one_cell_notebook(tmp_path / "page.ipynb", code)
        dst = tmp_path / "out" / "page.ipynb"
        cmd = [sys.executable, str(ROOT / "tools" / "build_book.py")]
        cmd += ["--run-one", str(src), str(dst), "--timeout", "60"]
        return subprocess.run(
            cmd, capture_output=True, timeout=120
        ).returncode, dst

    status, dst = run_one("print(6 * 7)")
    assert status == 0 and "42" in dst.read_text()
    status, dst = run_one("1 / 0")
    assert status == 1 and "ZeroDivisionError" in dst.read_text()
