"""Build the book: execute its notebooks two at a time in dependency order, then write the HTML once.

    python tools/build_book.py                  # every page at $VNOTES_SCALE (default), 2 kernels, then HTML
    python tools/build_book.py --jobs 1         # one kernel at a time (what the parallel build must equal)
    python tools/build_book.py --only 07c_albef # that page, and the pages it needs if they are out of date
    python tools/build_book.py --no-html        # execute only

Three steps, each usable alone:

1. **Execute.** Every chapter notebook runs in a fresh kernel (one torch thread each, cwd = ``chapters/``)
   and lands, with its outputs and saved widget state, in ``_build/executed/<scale>/``. Pages that reuse
   another page's trained model or metric files wait for it (:data:`DEPENDS_ON`); the rest are started
   longest-chain first, so the two kernels finish together. A page is executed again only when its
   *key* changed: the notebook file, the source of the whole ``vnotes`` package, the torch version, the
   scale, and the keys of the pages it waits for. Nothing changed: nothing runs.
2. **Stage.** ``_build/book/`` is the book's source with the executed notebooks in place of the stripped
   ones, a cost line near the top of each chapter (scale, wall time, machine, date, what the other
   scales cost) and a status page listing every page's execution time.
3. **HTML.** ``jupyter-book build`` of the staged source with execution off: the pages show exactly the
   outputs of step 1, and a page that failed there fails the build.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
CHAPTERS = ROOT / "chapters"
STAGE = BUILD / "book"
RUNTIMES_JSON = ROOT / "benchmarks" / "runtimes.json"
SMOKE_JUNIT = BUILD / "smoke-junit.xml"

# Models that several pages reuse, each trained by one owner page per build and read from data/cache by
# the pages that wait for it. The owner's wall time includes the training; the others say where it went.
SHARED_MODELS: dict[str, dict] = {
    "ssl": {
        "what": "the pre-trained encoders (and metric files) of pages 5a-5f",
        "owner": [
            "05a_contrastive",
            "05b_moco",
            "05c_byol",
            "05d_swav",
            "05e_dino",
            "05f_mae",
        ],
        "users": ["05g_ranking"],
    },
    "generative": {
        "what": "the AE, VAE, VQ-VAE, GAN, DDPM and judge of pages 6a-6c",
        "owner": ["06a_autoencoders", "06b_gan", "06c_diffusion"],
        "users": ["06d_yardstick"],
    },
    "judge": {
        # 6b and 6c ran beside 6a in the same build and each trained the same judge again (~20 s apiece on the
        # 2-core AVX2 EPYC): they now wait for 6a and load its copy (the same weights, bit for bit)
        "what": "the digit judge of page 6a (the chapter's yardstick)",
        "owner": ["06a_autoencoders"],
        "users": ["06b_gan", "06c_diffusion", "06d_yardstick"],
    },
    "clip": {
        "what": "the chapter's CLIP (page 7a)",
        "owner": ["07a_clip"],
        "users": [
            "07c_albef",
            "07d_albef_noise",
            "07e_blip_coca",
            "07f_capfilt",
            "07g_bridges",
            "07h_multiway",
            "07i_dalle2",
            "07j_region_models",
        ],
    },
    "vilt": {
        "what": "the chapter's ViLT (page 7b)",
        "owner": ["07b_vilt"],
        "users": ["07j_region_models"],
    },
    "recurrent": {
        "what": "the GRU encoder-decoders' test accuracy by length (metric files) of page 4",
        "owner": ["04_recurrent"],
        "users": ["04a_attention"],
    },
}


def _depends_on() -> dict[str, set[str]]:
    deps: dict[str, set[str]] = {}
    for shared in SHARED_MODELS.values():
        for user in shared["users"]:
            deps.setdefault(user, set()).update(shared["owner"])
    return deps


DEPENDS_ON: dict[str, set[str]] = _depends_on()
"""Page -> the pages that must have executed before it (same build, same scale)."""


# ----------------------------------------------------------------------------- what the book is made of
def toc_notebooks() -> list[str]:
    """Stems of the chapter notebooks named in ``_toc.yml``, in reading order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    found: list[str] = []

    def walk(entries):
        for e in entries or []:
            f = e.get("file", "")
            if f.startswith("chapters/") and (ROOT / f"{f}.ipynb").exists():
                found.append(Path(f).name)
            walk(e.get("sections"))
            walk(e.get("chapters"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return found


def package_digest() -> str:
    """sha256 over the source of every ``vnotes`` module, exercises included (what a page's output can depend on)."""
    sys.path.insert(0, str(ROOT))
    from vnotes.checkpoint import code_digest

    return code_digest(skip=())


def page_keys(stems: list[str], scale: str) -> dict[str, str]:
    """Each page's execution key: its notebook, the package, torch, the scale, and its dependencies' keys."""
    import torch

    base = f"{package_digest()}|torch {torch.__version__}|{scale}"
    keys: dict[str, str] = {}

    def key(stem: str) -> str:
        if stem not in keys:
            h = hashlib.sha256(base.encode())
            h.update((CHAPTERS / f"{stem}.ipynb").read_bytes())
            for dep in sorted(DEPENDS_ON.get(stem, ())):
                h.update(key(dep).encode())
            keys[stem] = h.hexdigest()[:16]
        return keys[stem]

    for s in stems:
        key(s)
    return keys


def machine() -> dict:
    """What ran the pages: CPU model or GPU name, threads per kernel, torch version."""
    import torch

    from vnotes.runtime import cpu_label

    cpu = cpu_label()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": gpu,
        "threads": int(os.environ.get("OMP_NUM_THREADS", "1")),
        "torch": torch.__version__.split("+")[0],
    }


def machine_line(m: dict) -> str:
    where = m["gpu"] or f"{m['cpu']} ({m['cores']} cores)"
    return f"{where}, {m['threads']} thread{'s' * (m['threads'] != 1)} per kernel, torch {m['torch']}"


# ----------------------------------------------------------------------------- step 1: execute
def executed_path(stem: str, scale: str) -> Path:
    return BUILD / "executed" / scale / f"{stem}.ipynb"


def _execute_one(src: Path, dst: Path, timeout: int) -> None:
    """Child process: execute ``src`` top to bottom in a fresh kernel, write it to ``dst`` even on error.

    The notebook is written as soon as its last cell has run, and the process then exits without the
    client's kernel shutdown: that handshake was seen to hang here after every cell had run (kernel and
    client both idle). The kernel notices its parent is gone and exits by itself (ipykernel's parent poller).
    """
    import asyncio

    import nbformat
    from jupyter_core.utils import ensure_async
    from nbclient import NotebookClient

    nb = nbformat.read(src, as_version=4)
    t0 = time.perf_counter()

    def executed(
        cell, cell_index, execute_reply
    ):  # progress in the page's log: where a stuck page stopped
        print(
            f"{time.perf_counter() - t0:7.1f} s  cell {cell_index} {execute_reply['content']['status']}",
            file=sys.stderr,
            flush=True,
        )

    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        allow_errors=False,
        resources={"metadata": {"path": str(src.parent)}},
        on_cell_executed=executed,
    )

    def write() -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.tmp")
        nbformat.write(nb, tmp)
        os.replace(tmp, dst)

    async def run() -> None:
        failed: BaseException | None = None
        async with client.async_setup_kernel():
            patient_channel(client.kc.shell_channel)
            patient_channel(client.kc.iopub_channel)
            try:
                # what NotebookClient.execute does, minus the kernel shutdown at the end
                info = await client.async_wait_for_reply(
                    await ensure_async(client.kc.kernel_info())
                )
                if info is not None and "language_info" in info["content"]:
                    nb.metadata["language_info"] = info["content"][
                        "language_info"
                    ]
                for index, cell in enumerate(nb.cells):
                    await client.async_execute_cell(
                        cell,
                        index,
                        execution_count=client.code_cells_executed + 1,
                    )
            except Exception as err:  # a cell raised or timed out, or the kernel died: keep what ran
                failed = err
            client.set_widgets_metadata()
            write()
            if failed is not None:
                print(str(failed)[-3000:], file=sys.stderr, flush=True)
            os._exit(1 if failed is not None else 0)

    asyncio.run(run())


POLL_SLICE = 1.0
"""Seconds one wait for a kernel message lasts before the runner looks again (see :func:`patient_channel`)."""


def patient_channel(channel) -> None:
    """Make ``channel.get_msg`` wait in slices of :data:`POLL_SLICE` seconds, each followed by a direct check.

    nbclient awaits the kernel's replies with no timeout when a page sets none. Pages stalled that way at
    their ``interact`` cells, kernel and client both idle while the reply had been sent (jupyter/nbclient#312,
    whose fix #311 also stops waiting forever): a wake-up of the asynchronous socket poll was missed. A
    zero-timeout poll asks the socket directly, so a message a missed wake-up left waiting is picked up within a
    second. A finite ``timeout`` is kept: ``Empty`` is raised once it has passed, as before.
    """
    from queue import Empty

    wait = channel.get_msg

    async def get_msg(timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = POLL_SLICE
            if deadline is not None:
                left = min(POLL_SLICE, max(0.0, deadline - time.monotonic()))
            try:
                return await wait(timeout=left)
            except Empty:
                try:
                    return await wait(timeout=0)  # asks the socket itself
                except Empty:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise

    channel.get_msg = get_msg


HANG_SECONDS = 60
"""A page whose processes use no CPU for this long is hung (the book's cells never wait on anything but the CPU).
Seen mostly at the pages' ``interact`` cells (ipywidgets with a headless nbclient, jupyter/nbclient#312), more often
on a loaded machine: a short window keeps each retry cheap."""


def _tree_cpu_seconds(root: int) -> float:
    """CPU time used so far by process ``root`` and all its live descendants (the page's runner and kernel)."""
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid = int(stat.parent.name)
        parent[pid] = int(
            fields[1]
        )  # ppid; utime and stime are fields 14 and 15 of /proc/PID/stat
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
    total = 0.0
    for pid in cpu:
        p = pid
        while p in parent and p != root:
            p = parent[p]
        if p == root:
            total += cpu[pid]
    return total


def _run_page(
    stem: str, scale: str, timeout: int, attempts: int = 3
) -> tuple[bool, float, str]:
    """Execute one page in a child process; a page that hangs (no CPU use for HANG_SECONDS) is killed and run again.

    Headless kernels very occasionally stop answering with both sides idle (seen here once in 36 pages,
    mid-notebook); the retry re-executes the page from a fresh kernel, so its outputs are a full clean run.
    """
    return _run_notebook(
        CHAPTERS / f"{stem}.ipynb",
        executed_path(stem, scale),
        timeout,
        attempts,
        label=stem,
    )


def _run_notebook(
    src: Path,
    dst: Path,
    timeout: int,
    attempts: int = 3,
    label: str | None = None,
) -> tuple[bool, float, str]:
    """:func:`_run_page` for any notebook ``src``, executed into ``dst``: (ok, seconds of the clean run, log tail)."""
    stem = label or src.stem
    log = ""
    start = time.perf_counter()
    for attempt in range(1, attempts + 1):
        proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--_execute-one",
                str(src),
                str(dst),
                "--timeout",
                str(timeout),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        output: list[str] = []
        reader = threading.Thread(
            target=lambda: output.extend(proc.stdout), daemon=True
        )
        reader.start()
        samples: list[
            tuple[float, float]
        ] = []  # (time, CPU seconds of the runner and its kernel)
        hung = False
        while proc.poll() is None:
            time.sleep(2)
            if not Path(
                "/proc/self/stat"
            ).exists():  # no /proc (not Linux): no watchdog
                continue
            now, cpu = time.monotonic(), _tree_cpu_seconds(proc.pid)
            if (
                proc.poll() is not None
            ):  # it exited meanwhile (its kernel, now orphaned, no longer counts)
                break
            cpu = max(cpu, samples[-1][1]) if samples else cpu
            samples = [
                s for s in samples if now - s[0] <= HANG_SECONDS + 3
            ] + [(now, cpu)]
            # hung: a whole window in which the page used almost no CPU (a working page uses ~100% of a core;
            # an idle kernel and its client still tick a little: heartbeats, event loops)
            idle_cpu = max(0.02 * HANG_SECONDS, 0.5)
            if (
                now - samples[0][0] >= HANG_SECONDS
                and samples[-1][1] - samples[0][1] < idle_cpu
            ):
                hung = True
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        reader.join(timeout=5)
        log = "".join(output)[-3000:]
        if not hung:
            return proc.returncode == 0, time.perf_counter() - start, log
        last = " | ".join(
            line.strip() for line in log.strip().splitlines()[-2:]
        )
        log = (
            f"hung (no CPU use for {HANG_SECONDS} s) on attempt {attempt}; "
            + log
        )
        print(
            f"  {stem}: hung on attempt {attempt} of {attempts} (no CPU use for {HANG_SECONDS} s; last: {last}); "
            + ("running it again" if attempt < attempts else "giving up"),
            flush=True,
        )
        start = (
            time.perf_counter()
        )  # the page's cost is its clean run, not the hang
    return False, time.perf_counter() - start, log


def _expected_seconds(scale: str) -> dict[str, float]:
    """Last known wall time of each page: this machine's previous build, else the benchmark record
    (this CPU's section first, then any other machine's)."""
    guess: dict[str, float] = {}
    if RUNTIMES_JSON.exists():
        machines = json.loads(RUNTIMES_JSON.read_text()).get("machines", {})
        cpu = machine()["cpu"]
        for label in sorted(machines, key=lambda label: label != cpu):
            for stem, s in (
                machines[label].get("pages", {}).get(scale, {}).items()
            ):
                guess.setdefault(stem, s)
    for p in (
        (BUILD / "executed" / scale).glob("*.ipynb")
        if (BUILD / "executed" / scale).exists()
        else ()
    ):
        meta = _build_meta(p)
        if meta.get("seconds"):
            guess[p.stem] = meta["seconds"]
    return guess


def _build_meta(path: Path) -> dict:
    try:
        return (
            json.loads(path.read_text())
            .get("metadata", {})
            .get("vnotes_build", {})
        )
    except (OSError, ValueError):
        return {}


def _set_build_meta(path: Path, meta: dict) -> None:
    nb = json.loads(path.read_text())
    nb.setdefault("metadata", {})["vnotes_build"] = meta
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def execute(
    stems: list[str], scale: str, jobs: int, timeout: int, force: bool = False
) -> dict[str, dict]:
    """Execute the out-of-date pages among ``stems`` (and the pages they wait for); return every page's record."""
    keys = page_keys(stems, scale)
    needed: list[str] = []

    def need(stem: str) -> None:
        for dep in sorted(DEPENDS_ON.get(stem, ())):
            need(dep)
        if stem not in needed:
            needed.append(stem)

    for s in stems:
        need(s)
    keys.update(page_keys(needed, scale))
    metrics_dir = Path(os.environ["VNOTES_METRICS_DIR"]) / scale
    records: dict[str, dict] = {}
    todo: list[str] = []
    for stem in needed:
        meta = _build_meta(executed_path(stem, scale))
        fresh = (
            meta.get("key") == keys[stem]
            and meta.get("ok")
            and (metrics_dir / f"{stem}.json").exists()
        )
        if fresh and not (
            force and stem in stems
        ):  # --force re-runs the pages asked for, not their prerequisites
            records[stem] = {**meta, "reused": True}
        else:
            todo.append(stem)
    if not todo:
        print(
            f"all {len(needed)} pages are up to date at {scale!r}: nothing to execute"
        )
        return records

    expected = _expected_seconds(scale)
    users: dict[str, set[str]] = {}
    for page, deps in DEPENDS_ON.items():
        for d in deps:
            users.setdefault(d, set()).add(page)
    chain: dict[str, float] = {}

    def longest_chain(
        stem: str,
    ) -> float:  # own time plus the longest chain of pages waiting for it
        if stem not in chain:
            chain[stem] = expected.get(stem, 60.0) + max(
                (longest_chain(u) for u in users.get(stem, ()) if u in todo),
                default=0.0,
            )
        return chain[stem]

    m = machine()
    print(
        f"executing {len(todo)} of {len(needed)} pages at {scale!r}, {jobs} at a time, on {machine_line(m)}"
    )
    pending = sorted(todo, key=lambda s: -longest_chain(s))
    failed: set[str] = set()
    running: dict = {}
    done = 0
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while pending or running:
            for stem in list(pending):
                if len(running) >= jobs:
                    break
                deps = DEPENDS_ON.get(stem, set()) & set(needed)
                if deps & failed:
                    pending.remove(stem)
                    failed.add(stem)
                    records[stem] = {
                        "ok": False,
                        "error": f"not run: {sorted(deps & failed)} failed",
                    }
                    print(f"  skip {stem}: a page it needs failed")
                    continue
                if any(d in pending or d in running.values() for d in deps):
                    continue
                pending.remove(stem)
                running[pool.submit(_run_page, stem, scale, timeout)] = stem
            if not running:
                continue
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in finished:
                stem = running.pop(fut)
                ok, seconds, log = fut.result()
                done += 1
                meta = {
                    "key": keys[stem],
                    "ok": ok,
                    "seconds": round(seconds, 1),
                    "scale": scale,
                    "date": dt.date.today().isoformat(),
                    "machine": m,
                    "jobs": jobs,
                }
                if executed_path(stem, scale).exists():
                    _set_build_meta(executed_path(stem, scale), meta)
                records[stem] = meta
                print(
                    f"  [{done:2d}/{len(todo)}] {stem:28s} {seconds:6.1f} s  {'ok' if ok else 'FAILED'}"
                    f"   (build so far {time.perf_counter() - t0:6.0f} s)",
                    flush=True,
                )
                if not ok:
                    failed.add(stem)
                    print(log, file=sys.stderr)
    wall = time.perf_counter() - t0
    print(
        f"executed {len(todo)} pages in {wall:.0f} s of wall time "
        f"({sum(r.get('seconds', 0) for s, r in records.items() if s in todo):.0f} s of page time)"
    )
    summary = {
        "scale": scale,
        "jobs": jobs,
        "wall_s": round(wall, 1),
        "machine": m,
        "date": dt.date.today().isoformat(),
        "pages": {s: r.get("seconds") for s, r in records.items()},
        "executed": todo,
    }
    (BUILD / f"execution-{scale}.json").write_text(
        json.dumps(summary, indent=1) + "\n"
    )
    if failed:
        raise SystemExit(
            f"{len(failed)} page(s) failed: {', '.join(sorted(failed))}"
        )
    return records


# ----------------------------------------------------------------------------- step 2: stage
def smoke_seconds() -> dict[str, float]:
    """Per-notebook time of this machine's last nbval run at smoke (its JUnit report), summed over cells."""
    if not SMOKE_JUNIT.exists():
        return {}
    total: dict[str, float] = {}
    for case in ET.parse(SMOKE_JUNIT).getroot().iter("testcase"):
        # nbval names a cell's test case by its notebook: classname "chapters.01_optimization.ipynb"
        classname = case.get("classname", "")
        if not classname.endswith(".ipynb"):
            continue
        stem = classname[: -len(".ipynb")].rsplit(".", 1)[-1]
        total[stem] = total.get(stem, 0.0) + float(case.get("time", 0))
    return total


def recorded_seconds() -> dict[str, dict[str, dict[str, float]]]:
    """benchmarks/runtimes.json as {scale: {page: {machine label: seconds}}}."""
    out: dict = {}
    if RUNTIMES_JSON.exists():
        for label, m in (
            json.loads(RUNTIMES_JSON.read_text()).get("machines", {}).items()
        ):
            for scale, pages in m.get("pages", {}).items():
                for stem, s in pages.items():
                    out.setdefault(scale, {}).setdefault(stem, {})[label] = s
    return out


def _fmt_s(s: float) -> str:
    return f"{s:.0f} s" if s < 600 else f"{s / 60:.0f} min"


FULL_COSTS_JSON = ROOT / "benchmarks" / "full_costs.json"


def repository_file(path: str) -> str:
    """The web address of ``path`` in the book's repository (``_config.yml``: repository.url and branch)."""
    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    return f"{repo['url'].rstrip('/')}/blob/{repo['branch']}/{path}"


def over_20_min_on_a_t4(row: dict) -> str:
    """Why a page's `full` run is predicted past 20 minutes on a T4 (Colab's free GPU), or "" when it is not.

    benchmarks/full_costs.py predicts each end of the range as steps x (FLOPs / (utilisation x peak) + ops x
    launch time), at 40% and 10 us (optimistic, o) and 10% and 20 us (pessimistic, p). With A the seconds of
    arithmetic at full peak and L the launches, o = A/0.4 + 10us L and p = A/0.1 + 20us L, so A = (p - 2o)/5:
    the share of the pessimistic figure that is launch overhead is 1 - 2(p - 2o)/p, read from the row itself.
    """
    low, high = row["predicted_minutes"]["T4"]
    if high <= 20:
        return ""
    launch = min(max(1 - 2 * (high - 2 * low) / high, 0.0), 1.0)
    runs = len(row.get("runs", [])) or 1
    cause = (
        "mostly kernel launches of small models, which a faster GPU does not shorten"
        if launch >= 0.5
        else "mostly arithmetic, which a faster GPU shortens"
    )
    return (
        f". Over Colab's 20 minutes on a T4 because `full` trains {runs} model{'s' * (runs != 1)} for "
        f"{row['steps']:,} steps in all: {cause} (about {launch:.0%} of the pessimistic figure is launch "
        "overhead). `default` runs the same code at a smaller size in the time above"
    )


def full_prediction(stem: str) -> str:
    """The cost line's words for `full`: this page's row of benchmarks/FULL_COSTS.md, labelled as a prediction."""
    costs = (
        json.loads(FULL_COSTS_JSON.read_text())
        if FULL_COSTS_JSON.exists()
        else {}
    )
    row = next((r for r in costs.get("pages", []) if r["page"] == stem), None)
    if row is not None:
        t4, a100 = (row["predicted_minutes"][g] for g in ("T4", "A100"))
        line = (
            f"`full` not measured yet; predicted from a dry run, training only: {t4[0]:g}-{t4[1]:g} min on a T4, "
            f"{a100[0]:g}-{a100[1]:g} min on an A100 "
            f"([how]({repository_file('benchmarks/FULL_COSTS.md')}))"
        )
        return line + over_20_min_on_a_t4(row)
    if stem in costs.get("without_training", []):
        return "`full` not measured yet (it trains nothing with `fit`; see the benchmark report)"
    return "`full` not measured yet (it needs a GPU; see the benchmark report)"


def cost_line(
    stem: str, meta: dict, smoke: dict[str, float], recorded: dict
) -> str:
    """The Markdown note a chapter page shows near its top: what producing it cost, written by the build."""
    shared = []
    for info in SHARED_MODELS.values():
        if stem in info["users"]:
            shared.append(
                f"It reused {info['what']} from the model cache; that training time counts there."
            )
        if stem in info["owner"]:
            readers = ", ".join(
                u.split("_")[0].lstrip("0") for u in info["users"]
            )
            shared.append(
                f"Its time includes training what page{'s' * (len(info['users']) > 1)} {readers} "
                f"reuse{'s' * (len(info['users']) == 1)} from the model cache."
            )
    scale = meta["scale"]
    others = []
    for other in ("smoke", "default", "full"):
        if other == scale:
            continue
        if other == "smoke" and stem in smoke:
            others.append(
                f"`smoke` {_fmt_s(smoke[stem])} (this machine, this build, figures not drawn)"
            )
        elif recorded.get(other, {}).get(stem):
            label, s = next(iter(recorded[other][stem].items()))
            others.append(f"`{other}` {_fmt_s(s)} ({label})")
        elif other == "full":
            others.append(full_prediction(stem))
        else:
            others.append(f"`{other}` not measured yet")
    lines = [
        ":::{admonition} What this page cost",
        ":class: note vnotes-cost",
        f"Executed at scale `{scale}` in **{_fmt_s(meta['seconds'])}** of wall time on {machine_line(meta['machine'])}, "
        f"on {meta['date']} ({meta.get('jobs', 1)} page{'s' * (meta.get('jobs', 1) != 1)} executing at a time).",
    ]
    if shared:
        lines.append(" ".join(shared))
    lines += [
        f"Other scales: {'; '.join(others)}. Every page's time: [build status](../build_status.md).",
        ":::",
    ]
    return "\n".join(lines)


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def status_page(
    stems: list[str], records: dict[str, dict], smoke: dict[str, float]
) -> str:
    m = next(
        (r["machine"] for r in records.values() if r.get("machine")), machine()
    )
    scale = next(
        (r["scale"] for r in records.values() if r.get("scale")), "default"
    )
    total = sum(r.get("seconds") or 0 for r in records.values())
    summary = BUILD / f"execution-{scale}.json"
    run = json.loads(summary.read_text()) if summary.exists() else {}
    wall = (
        f"; this build's last run executed {len(run['executed'])} of them, {run['jobs']} at a time, "
        f"in {run['wall_s'] / 60:.1f} minutes of wall time"
        if run.get("executed")
        else ""
    )
    slowest = max(records.items(), key=lambda kv: kv[1].get("seconds") or 0)
    lines = [
        "# Build status",
        "",
        f"Every chapter page of this build was executed at scale `{scale}` on {machine_line(m)}. "
        f"Together the pages took {total / 60:.1f} minutes of kernel time{wall}. The slowest page was "
        f"{slowest[0]} ({_fmt_s(slowest[1].get('seconds') or 0)}). A page marked *reused* was not executed "
        "again: nothing it depends on had changed since the date shown.",
        "",
        f"| page | {scale} (wall s) | smoke (s, figures not drawn) | executed on |",
        "|---|---|---|---|",
    ]
    for stem in stems:
        r = records.get(stem, {})
        sm = f"{smoke[stem]:.0f}" if stem in smoke else "–"
        reused = " (reused)" if r.get("reused") else ""
        lines.append(
            f"| [{stem}](chapters/{stem}.ipynb) | {r.get('seconds', '–')} | {sm} | {r.get('date', '–')}{reused} |"
        )
    lines += [
        "",
        "Per-page figures for other machines and the whole-build times: the benchmark report "
        "(`benchmarks/RUNTIMES.md`).",
    ]
    return "\n".join(lines) + "\n"


def stage(stems: list[str], scale: str, records: dict[str, dict]) -> Path:
    """Write ``_build/book``: the book's source with executed, cost-annotated chapters and a status page."""
    STAGE.mkdir(parents=True, exist_ok=True)
    for name in ("intro.md", "how_to_read.md", "glossary.md", "references.md"):
        _write_if_changed(STAGE / name, (ROOT / name).read_text())
    for folder in ("bib", "_static", "_site"):
        # replaced, not merged: a file left from an older layout (the widget scripts once lived in
        # _static, where Jupyter Book adds every .js to every page) must not linger in the site
        shutil.rmtree(STAGE / folder, ignore_errors=True)
        if (ROOT / folder).exists():
            shutil.copytree(
                ROOT / folder,
                STAGE / folder,
                dirs_exist_ok=True,
                copy_function=shutil.copy2,
            )
    _write_if_changed(
        STAGE / "benchmarks" / "RUNTIMES.md",
        (ROOT / "benchmarks" / "RUNTIMES.md").read_text(),
    )
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = (
        "off"  # executed in step 1; the HTML shows exactly those outputs
    )
    _write_if_changed(
        STAGE / "_config.yml",
        "# written by tools/build_book.py from the book's _config.yml\n"
        + yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
    )
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    for part in toc["parts"]:
        if part.get("caption") == "Reference":
            part["chapters"].append({"file": "build_status"})
    _write_if_changed(
        STAGE / "_toc.yml",
        yaml.safe_dump(toc, sort_keys=False, allow_unicode=True),
    )
    smoke = smoke_seconds()
    recorded = recorded_seconds()
    for stem in stems:
        nb = json.loads(executed_path(stem, scale).read_text())
        meta = records[stem]
        cell = {
            "cell_type": "markdown",
            "id": "vnotes-cost",
            "metadata": {},
            "source": cost_line(stem, meta, smoke, recorded),
        }
        nb["cells"].insert(1, cell)  # right under the title
        _write_if_changed(
            STAGE / "chapters" / f"{stem}.ipynb",
            json.dumps(nb, indent=1, ensure_ascii=False) + "\n",
        )
    _write_if_changed(
        STAGE / "build_status.md", status_page(stems, records, smoke)
    )
    return STAGE


# ----------------------------------------------------------------------------- step 3: HTML
def html() -> None:
    """``jupyter-book build`` of the staged source into ``_build/html``; warnings are errors."""
    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [
        str(jb),
        "build",
        str(STAGE),
        "--path-output",
        str(ROOT),
        "--warningiserror",
        "--nitpick",
        "--keep-going",
    ]
    subprocess.run(cmd, check=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--scale",
        default=os.environ.get("VNOTES_SCALE", "default"),
        choices=("smoke", "default", "full"),
    )
    ap.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="notebooks executing at a time (one torch thread each)",
    )
    ap.add_argument(
        "--only",
        nargs="*",
        help="page stems (e.g. 07c_albef); the pages they need run first if stale",
    )
    ap.add_argument(
        "--force",
        action="store_true",
        help="execute even the pages whose key is unchanged",
    )
    ap.add_argument(
        "--no-html", action="store_true", help="execute (and stage) only"
    )
    ap.add_argument(
        "--timeout",
        type=int,
        default=900,
        help="seconds a single cell may run",
    )
    ap.add_argument(
        "--run-one",
        nargs=2,
        metavar=("SRC", "DST"),
        help="execute one notebook into DST as the build does (a kernel that hangs is killed and the notebook "
        "run again), in the environment as given (make full-dry sets the scale and the dry run)",
    )
    ap.add_argument(
        "--_execute-one",
        nargs=2,
        metavar=("SRC", "DST"),
        help=argparse.SUPPRESS,
    )
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error(f"--jobs={args.jobs}: need at least 1")
    if args.run_one:
        ok, seconds, log = _run_notebook(
            Path(args.run_one[0]), Path(args.run_one[1]), args.timeout
        )
        print(log)
        print(
            f"{Path(args.run_one[0]).stem}: {'done' if ok else 'FAILED'} in {seconds:.0f} s"
        )
        sys.exit(0 if ok else 1)
    if args._execute_one:
        _execute_one(
            Path(args._execute_one[0]),
            Path(args._execute_one[1]),
            args.timeout,
        )
        return
    os.environ["VNOTES_SCALE"] = args.scale
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("VNOTES_PROGRESS", "0")
    os.environ.setdefault("VNOTES_METRICS_DIR", str(BUILD / "metrics"))
    stems = toc_notebooks()
    if args.only:
        unknown = sorted(set(args.only) - set(stems))
        if unknown:
            ap.error(
                f"--only {unknown}: not chapter notebooks of _toc.yml (known: {', '.join(stems)})"
            )
    records = execute(
        args.only or stems,
        args.scale,
        args.jobs,
        args.timeout,
        force=args.force,
    )
    if args.only:
        return
    stage(stems, args.scale, records)
    if not args.no_html:
        t = time.perf_counter()
        html()
        print(
            f"HTML written in {time.perf_counter() - t:.0f} s: {BUILD / 'html' / 'index.html'}"
        )


if __name__ == "__main__":
    main()
