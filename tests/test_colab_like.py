"""A Colab-like environment: torch and friends already installed, ipywidgets 7.7.1, no checkout.

The notebook's own first cell installs vnotes (from a local copy of the repository instead of
the GitHub URL, via VNOTES_PIP_SOURCE) and the chapter then runs at `smoke`. Neither torch nor
ipywidgets may be reinstalled or upgraded by that install.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from bookinfo import ROOT

pytestmark = pytest.mark.slow
CHAPTER = ROOT / "chapters" / "01_optimization.ipynb"


def _run(cmd, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert out.returncode == 0, (
        f"{cmd[:4]} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    )
    return out.stdout


def test_notebook_installs_vnotes_and_runs_like_in_colab(tmp_path):
    env_dir = tmp_path / "colab"
    _run([sys.executable, "-m", "venv", str(env_dir)])
    py = env_dir / "bin" / "python"
    site = Path(
        _run(
            [
                str(py),
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ]
        ).strip()
    )
    # "preinstalled" packages: this venv's (torch, torchvision, matplotlib, papermill, ...) minus vnotes itself
    (site / "preinstalled.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )
    _run([str(py), "-m", "pip", "install", "-q", "ipywidgets==7.7.1"])
    before = _run(
        [
            str(py),
            "-c",
            "import torch, ipywidgets; print(torch.__version__, ipywidgets.__version__)",
        ]
    )
    assert before.split()[1] == "7.7.1"
    missing = subprocess.run(
        [str(py), "-c", "import vnotes"], capture_output=True, cwd=tmp_path
    )
    assert missing.returncode != 0, (
        "vnotes must not be importable before the notebook installs it"
    )

    # the repository as a pip-installable source, without the checkout around it
    src = tmp_path / "repo"
    src.mkdir()
    shutil.copytree(
        ROOT / "vnotes",
        src / "vnotes",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    work = tmp_path / "content"  # Colab's working folder: just the notebook
    work.mkdir()
    shutil.copy(CHAPTER, work / CHAPTER.name)

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))
    }
    env.update(
        PATH=f"{env_dir / 'bin'}:{env['PATH']}",
        VNOTES_PIP_SOURCE=str(src),
        VNOTES_SCALE="smoke",
        VNOTES_PROGRESS="0",
        VNOTES_METRICS_DIR=str(tmp_path / "metrics"),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        OMP_NUM_THREADS="1",
    )
    # vnotes must come from the notebook's install, not from this checkout (editable installs add a path hook)
    env["PYTHONNOUSERSITE"] = "1"
    _run(
        [
            str(py),
            "-m",
            "papermill",
            str(work / CHAPTER.name),
            str(work / "out.ipynb"),
            "--cwd",
            str(work),
            "-k",
            "python3",
        ],
        env=env,
        cwd=work,
        timeout=900,
    )
    after = _run(
        [
            str(py),
            "-c",
            "import torch, ipywidgets, vnotes; print(torch.__version__, ipywidgets.__version__, vnotes.__file__)",
        ],
        env=env,
        cwd=work,
    )
    assert after.split()[:2] == before.split()[:2], (
        f"torch/ipywidgets changed: {before} -> {after}"
    )
    assert str(env_dir) in after.split()[2], (
        f"vnotes was not installed by the notebook: {after}"
    )
    metrics = json.loads(
        (tmp_path / "metrics" / "smoke" / "01_optimization.json").read_text()
    )
    assert metrics["metrics"]["max_abs_diff_vs_torch"] <= 1e-10
