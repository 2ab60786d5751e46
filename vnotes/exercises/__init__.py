"""Exercises a reader can check: one ``check_<exercise>(answer)`` per implement exercise of the book.

A page ends with exercises. For each *implement* exercise the reader completes a function stub in
the notebook and runs one call, e.g. ``check_adam_step(adam_step)``. The check feeds the reader's
function random inputs and edge cases (zero gradients, a mask that leaves one key, length-1
sequences), compares it with the book's reference or with PyTorch's own implementation
(``torch.optim.Adam``, ``torch.nn.utils.clip_grad_norm_``, ``F.scaled_dot_product_attention``), and
returns a :class:`CheckResult`: ``.passed`` and a one-line ``.message`` that names the first thing
that differs (a shape, the largest error and where, a property) and never the solution. A check
never raises on a wrong or unfinished answer: the untouched stub (it raises ``NotImplementedError``)
gives a "not yet" line, so a page executes cleanly with every stub as it is.

The reference solutions live in :mod:`vnotes.exercise_solutions`; :func:`show_solution` displays
one on request and never defines it in the reader's namespace. *Predict, then run* exercises compare
the reader's ``prediction`` with a measured number (:func:`compare_prediction`); quizzes are shown
with ``jupyterquiz`` (:func:`show_quiz`), whose JavaScript travels inside the page's output, so they
work in the static HTML and offline.

Each chapter's checks and quizzes live in a module of their own (``ch1``, ``ch2``, ...; the shared machinery
in ``core``); this package exports every public name of each, so a page imports ``from vnotes.exercises import
check_adam_step`` whatever module holds it. A new chapter module is found by its name (``ch<N>``).
"""

from __future__ import annotations

import importlib
import pkgutil

from .core import CheckResult, compare_prediction, show_quiz, show_solution

__all__ = ["CheckResult", "compare_prediction", "show_quiz", "show_solution"]

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name.startswith("ch"):
        _module = importlib.import_module(f"{__name__}.{_info.name}")
        for _name in _module.__all__:
            globals()[_name] = getattr(_module, _name)
            __all__.append(_name)
