"""The Colab install cell of every chapter, generated from the one repository address in ``_config.yml``.

    python tools/install_cell.py            # list the notebooks whose install cell disagrees (exit 1 if any)
    python tools/install_cell.py --write    # rewrite those cells (and the chapter template) from _config.yml

``_config.yml``'s ``repository.url`` and ``repository.branch`` are what the book's *Launch -> Colab*
button opens; the first code cell of every notebook installs ``vnotes`` from the same place when it
runs in Colab. A fork changes the two lines in ``_config.yml`` and runs this with ``--write``;
``tests/test_notebooks_committed.py`` fails while any notebook still points elsewhere.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "_config.yml"
TEMPLATE = ROOT / "tools" / "chapter_template.py"
FIRST_LINE = "# In Colab: install vnotes from the repository (does nothing anywhere else)."


def install_source(config: Path = CONFIG) -> str:
    """The pip requirement Colab installs: ``vnotes @ git+<repository.url>@<repository.branch>``."""
    repo = (yaml.safe_load(config.read_text()) or {}).get("repository") or {}
    url, branch = repo.get("url"), repo.get("branch")
    if not url or not branch:
        raise ValueError(
            f"{config} needs repository.url and repository.branch (got url={url!r}, branch={branch!r})"
        )
    return f"vnotes @ git+{url.rstrip('/')}@{branch}"


def cell_source(config: Path = CONFIG) -> str:
    """The install cell's code, exactly as every notebook carries it."""
    return "\n".join(
        [
            FIRST_LINE,
            "import os",
            "import sys",
            "",
            'if "google.colab" in sys.modules or os.environ.get("VNOTES_PIP_SOURCE"):',
            "    import subprocess",
            "",
            "    source = os.environ.get(",
            '        "VNOTES_PIP_SOURCE",',
            f'        "{install_source(config)}",',
            "    )",
            "    subprocess.run(",
            '        [sys.executable, "-m", "pip", "install", "-q", source], check=True',
            "    )",
        ]
    )


def _install_cell(nb: dict) -> dict:
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            text = "".join(cell["source"])
            if not text.startswith(FIRST_LINE):
                raise ValueError(
                    "the first code cell is not the install cell (it must start with "
                    f"{FIRST_LINE!r})"
                )
            return cell
    raise ValueError("the notebook has no code cell")


def stale_notebooks(chapters: Path = ROOT / "chapters") -> list[Path]:
    """Chapter notebooks whose install cell is not :func:`cell_source`."""
    want = cell_source()
    return [
        path
        for path in sorted(chapters.glob("*.ipynb"))
        if "".join(_install_cell(json.loads(path.read_text()))["source"])
        != want
    ]


def write(paths: list[Path]) -> None:
    """Give ``paths`` the generated install cell (the rest of each notebook untouched), and the template too."""
    want = cell_source()
    for path in paths:
        nb = json.loads(path.read_text())
        _install_cell(nb)["source"] = want.splitlines(keepends=True)
        path.write_text(
            json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
        )
    text = TEMPLATE.read_text()
    start = text.index(FIRST_LINE)
    end = text.index("\n\n# %%", start)
    TEMPLATE.write_text(text[:start] + want + text[end:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--write", action="store_true", help="rewrite the cells that disagree"
    )
    args = parser.parse_args()
    stale = stale_notebooks()
    if args.write:
        write(stale)
        print(
            f"install cell from {install_source()}: {len(stale)} notebook(s) rewritten"
        )
        return 0
    for path in stale:
        print(
            f"{path.relative_to(ROOT)}: install cell differs from _config.yml's repository"
        )
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
