"""Committed notebooks are clean and follow the book's conventions."""

import json
import re

import pytest

from bookinfo import ROOT, THRESHOLDS, chapter_notebooks, toc_files

NOTEBOOKS = sorted((ROOT / "chapters").glob("*.ipynb"))


def test_every_toc_entry_exists():
    for f in toc_files():
        assert (ROOT / f"{f}.ipynb").exists() or (ROOT / f"{f}.md").exists(), (
            f"_toc.yml names {f}, which is missing"
        )


def test_every_chapter_notebook_is_in_the_toc():
    listed = set(chapter_notebooks())
    missing = [nb.name for nb in NOTEBOOKS if nb not in listed]
    assert not missing, (
        f"notebooks not in _toc.yml (the book would skip them): {missing}"
    )


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stripped_and_conventional(nb):
    data = json.loads(nb.read_text())
    cells = data["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    for c in code:
        assert c["outputs"] == [] and c["execution_count"] is None, (
            f"{nb.name}: commit notebooks without outputs"
        )
    src = lambda c: (
        c["source"] if isinstance(c["source"], str) else "".join(c["source"])
    )
    assert cells[0]["cell_type"] == "markdown" and src(cells[0]).startswith(
        "# "
    ), "first cell: the chapter title"
    assert "google.colab" in src(code[0]), (
        "first code cell installs vnotes in Colab"
    )
    params = [
        c
        for c in code
        if "parameters" in c.get("metadata", {}).get("tags", [])
    ]
    assert len(params) == 1, "exactly one cell tagged 'parameters' (papermill)"
    assert 'os.environ.get("VNOTES_SCALE"' in src(params[0]), (
        "the parameters cell reads VNOTES_SCALE"
    )
    assert re.search(
        rf'Recorder\(\s*"{nb.stem}"', "".join(src(c) for c in code)
    ), f"records metrics as Recorder({nb.stem!r}, ...)"
    assert (THRESHOLDS / f"{nb.stem}.toml").exists(), (
        f"tests/thresholds/{nb.stem}.toml is missing"
    )
    for c in code:
        assert not re.search(r"^\s*class \w+", src(c), re.M), (
            f"{nb.name}: models belong in vnotes, not in notebooks"
        )


def _install_cell_tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "install_cell", ROOT / "tools" / "install_cell.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_install_cells_follow_the_repository_in_config():
    tool = _install_cell_tool()
    stale = [p.name for p in tool.stale_notebooks()]
    assert not stale, (
        f"install cells disagree with _config.yml's repository: {stale}; "
        "run python tools/install_cell.py --write"
    )
    template = (ROOT / "tools" / "chapter_template.py").read_text()
    assert tool.cell_source() in template


def test_install_source_comes_from_config(tmp_path):
    tool = _install_cell_tool()
    config = tmp_path / "_config.yml"
    config.write_text(
        "repository:\n  url: https://github.com/someone/fork/\n  branch: dev\n"
    )
    assert (
        tool.install_source(config)
        == "vnotes @ git+https://github.com/someone/fork@dev"
    )
    assert "git+https://github.com/someone/fork@dev" in tool.cell_source(
        config
    )
    config.write_text("title: no repository\n")
    with pytest.raises(ValueError, match="repository.url"):
        tool.install_source(config)
