"""Convert chapter notebooks to and from a plain-text "percent" script, for editing and review.

    python tools/nbtext.py to-ipynb chapter.py chapters/01_optimization.ipynb
    python tools/nbtext.py to-py chapters/01_optimization.ipynb chapter.py

Cells start with ``# %%`` (code) or ``# %% [markdown]`` (markdown, every line prefixed ``# ``);
tags follow as ``tags=["parameters", "hide-input"]``. The notebook written has no outputs and
``execution_count: null`` everywhere, as nbval and jupyter-book expect of committed notebooks.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HEADER = re.compile(
    r"^# %%(?P<md> \[markdown\])?(?:\s+tags=(?P<tags>\[.*\]))?\s*$"
)
KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}


def py_to_notebook(text: str) -> dict:
    cells, current = [], None
    for line in text.splitlines():
        m = HEADER.match(line)
        if m:
            current = {
                "md": bool(m.group("md")),
                "tags": json.loads(m.group("tags") or "[]"),
                "lines": [],
            }
            cells.append(current)
        elif current is not None:
            current["lines"].append(line)
        elif line.strip():
            raise ValueError(
                f"text before the first '# %%' cell marker: {line!r}"
            )
    out = []
    for c in cells:
        lines = c["lines"]
        while lines and not lines[-1].strip():
            lines.pop()
        if c["md"]:
            lines = [
                l[2:] if l.startswith("# ") else l.lstrip("#") for l in lines
            ]
        source = "\n".join(lines)
        meta = {"tags": c["tags"]} if c["tags"] else {}
        if c["md"]:
            out.append(
                {"cell_type": "markdown", "metadata": meta, "source": source}
            )
        else:
            out.append(
                {
                    "cell_type": "code",
                    "execution_count": None,
                    "metadata": meta,
                    "outputs": [],
                    "source": source,
                }
            )
    return {
        "cells": out,
        "metadata": {
            "kernelspec": KERNEL,
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def notebook_to_py(nb: dict) -> str:
    parts = []
    for c in nb["cells"]:
        src = (
            c["source"]
            if isinstance(c["source"], str)
            else "".join(c["source"])
        )
        tags = c.get("metadata", {}).get("tags", [])
        tag = f" tags={json.dumps(tags)}" if tags else ""
        if c["cell_type"] == "markdown":
            body = "\n".join(
                ("# " + l) if l else "#" for l in src.splitlines()
            )
            parts.append(f"# %% [markdown]{tag}\n{body}")
        else:
            parts.append(f"# %%{tag}\n{src}")
    return "\n\n".join(parts) + "\n"


def write_notebook(nb: dict, path: Path) -> None:
    """Write in the committed layout (the one ``ruff format`` leaves): keys sorted, ids ``cell-N``,
    code as a list of lines, Markdown as one string, so a round trip changes only what was edited."""
    for i, c in enumerate(nb["cells"]):
        c["id"] = f"cell-{i}"
        if c["cell_type"] == "code" and isinstance(c["source"], str):
            c["source"] = c["source"].splitlines(keepends=True)
    text = json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True)
    path.write_text(text + "\n")


def main(argv: list[str]) -> None:
    if len(argv) != 3 or argv[0] not in ("to-ipynb", "to-py"):
        raise SystemExit(__doc__)
    cmd, src, dst = argv[0], Path(argv[1]), Path(argv[2])
    if cmd == "to-ipynb":
        write_notebook(py_to_notebook(src.read_text()), dst)
    else:
        dst.write_text(notebook_to_py(json.loads(src.read_text())))


if __name__ == "__main__":
    main(sys.argv[1:])
