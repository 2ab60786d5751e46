"""Reference solutions of the book's implement exercises (checked by :mod:`vnotes.exercises`).

A page shows one with ``show_solution("name")``; nothing here is ever run into a reader's notebook.
Each is written the way the exercise asks, with plain tensor operations, so it can be read next to
the book's full implementation it mirrors (named in each docstring).

Each chapter's solutions live in a module of their own (``ch1``, ``ch2``, ...), found by name; this package
exports every public name of each.
"""

from __future__ import annotations

import importlib
import pkgutil

__all__: list[str] = []

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name.startswith("ch"):
        _module = importlib.import_module(f"{__name__}.{_info.name}")
        for _name in _module.__all__:
            globals()[_name] = getattr(_module, _name)
            __all__.append(_name)
