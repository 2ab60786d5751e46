"""The machinery every exercise shares: the check result, running a reader's function without letting
it raise, comparing tensors with a one-line message, predict-then-run, quizzes and solutions on request."""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: ``passed`` and a one-line ``message``."""

    name: str
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        mark = "✓" if self.passed else "✗"
        return f"{mark} {self.name}: {self.message}"

    __str__ = __repr__


class _Stop(Exception):
    """Raised inside a check to end it with a failing :class:`CheckResult`."""


def _fn_name(fn: Any) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def _run(fn: Callable, *args, **kwargs) -> Any:
    """Call the reader's function; an unfinished or crashing answer becomes a one-line :class:`_Stop`."""
    name = _fn_name(fn)
    try:
        out = fn(*args, **kwargs)
    except NotImplementedError:
        raise _Stop(
            f"not yet: {name} still raises NotImplementedError; replace the "
            "`raise` with your code"
        ) from None
    except (
        Exception
    ) as e:  # the reader's bug, reported in one line, never re-raised
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise _Stop(
            f"{name} raised {type(e).__name__}"
            + (f": {msg[:160]}" if msg else "")
        ) from None
    if out is None:
        raise _Stop(
            f"not yet: {name} returns None; it should return its result"
        )
    return out


def _as_tensor(x: Any, what: str, like: torch.Tensor) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(like.dtype)
    try:
        return torch.as_tensor(x, dtype=like.dtype)
    except (TypeError, ValueError, RuntimeError):
        raise _Stop(f"{what} is a {type(x).__name__}, not a tensor") from None


def _compare(
    got: Any,
    want: torch.Tensor,
    what: str,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-7,
) -> None:
    """Raise :class:`_Stop` naming the shape, a non-finite value or the largest error, if any."""
    got = _as_tensor(got, what, want)
    if tuple(got.shape) != tuple(want.shape):
        raise _Stop(
            f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}"
        )
    if not torch.isfinite(got).all():
        bad = tuple(
            int(i) for i in torch.nonzero(~torch.isfinite(got))[0].tolist()
        )
        raise _Stop(
            f"{what} has a non-finite value ({got[bad].item()}) at {bad}"
        )
    err = (got - want).abs()
    tol = atol + rtol * want.abs()
    if (err > tol).any():
        idx = tuple(
            int(i)
            for i in torch.unravel_index(torch.argmax(err - tol), err.shape)
        )
        where = f" at index {idx}" if idx else ""
        raise _Stop(
            f"{what} differs by up to {err.max().item():.3g}{where} "
            f"(yours {got[idx].item():.6g}, reference {want[idx].item():.6g})"
        )


def _check(name: str, answer: Any, body: Callable[[], str]) -> CheckResult:
    if not callable(answer):
        return CheckResult(
            name,
            False,
            f"expected a function, got {type(answer).__name__}; pass the function itself",
        )
    try:
        return CheckResult(name, True, body())
    except _Stop as stop:
        return CheckResult(name, False, str(stop))


# ============================================================================ predict, then run
def compare_prediction(
    prediction: Any,
    measured: float,
    options: Mapping[str, float] | None = None,
    *,
    rel_tol: float = 0.25,
    what: str = "the measured value",
) -> CheckResult:
    """Compare the reader's ``prediction`` (an option's letter, or a number) with ``measured``.

    With ``options`` (letter -> value), the right option is the one nearest to the measurement (on a
    log scale when all values are positive); a number is right within ``rel_tol``.
    """
    name = "prediction"
    if prediction is None or prediction is Ellipsis:
        allowed = "one of " + ", ".join(options) if options else "a number"
        return CheckResult(
            name,
            False,
            f"not yet: set `prediction` to {allowed}, then run this cell",
        )
    if options:
        positive = all(v > 0 for v in options.values()) and measured > 0
        dist = {
            key: abs(math.log(val / measured))
            if positive
            else abs(val - measured)
            for key, val in options.items()
        }
        right = min(dist, key=dist.get)
        key = str(prediction).strip().upper()
        if key not in options:
            return CheckResult(
                name,
                False,
                f"prediction={prediction!r} is not one of the options {', '.join(options)}",
            )
        if key == right:
            return CheckResult(
                name, True, f"right: {what} is {measured:.3g}, option {right}"
            )
        return CheckResult(
            name,
            False,
            f"not quite: you chose {key}, but {what} is {measured:.3g}, option {right}",
        )
    try:
        value = float(prediction)
    except (TypeError, ValueError):
        return CheckResult(
            name, False, f"prediction={prediction!r} is not a number"
        )
    if math.isclose(value, measured, rel_tol=rel_tol):
        return CheckResult(
            name,
            True,
            f"right: you predicted {value:.3g}, {what} is {measured:.3g}",
        )
    return CheckResult(
        name,
        False,
        f"not quite: you predicted {value:.3g}, {what} is {measured:.3g}",
    )


# ============================================================================ quizzes
def _choice(
    question: str, options: Sequence[str], correct: str, feedback: str
) -> dict:
    if correct not in options:
        raise ValueError(
            f"correct={correct!r} is not among the options {list(options)}"
        )
    return {
        "question": question,
        "type": "multiple_choice",
        "answers": [
            {
                "answer": o,
                "correct": o == correct,
                "feedback": feedback
                if o == correct
                else "Not this one; try again.",
            }
            for o in options
        ],
    }


def _number(
    question: str, value: float, feedback: str, precision: int = 0
) -> dict:
    q = {
        "question": question,
        "type": "numeric",
        "answers": [
            {
                "type": "value",
                "value": value,
                "correct": True,
                "feedback": feedback,
            },
            {"type": "default", "feedback": "Not this number; try again."},
        ],
    }
    if precision:
        q["precision"] = precision
    return q


def show_quiz(questions: list[dict]) -> None:
    """Display a quiz with ``jupyterquiz``; without it, print the questions as text.

    jupyterquiz's JavaScript is embedded in the cell's output, so the static HTML needs no CDN and
    works offline. It is started once the page has loaded and MathJax (served by the site) is ready:
    run earlier, jupyterquiz finds only MathJax's configuration object and stops before drawing the
    answer buttons. Function declarations stay global (an indirect ``eval``), as jupyterquiz expects.
    """
    try:
        from jupyterquiz.dynamic.loader import load_questions_script
        from jupyterquiz.dynamic.renderer import (
            build_script,
            build_styles,
            render_div,
        )
    except ImportError:
        for i, q in enumerate(questions, 1):
            print(f"{i}. {q['question']}")
            for a in q["answers"]:
                if "answer" in a:
                    print(f"   - {a['answer']}")
        print("(pip install jupyterquiz for the interactive quiz)")
        return
    import json
    import secrets

    from IPython.display import HTML, Javascript, display

    div_id = "vnotesquiz" + secrets.token_hex(4)
    prefix, static, url = load_questions_script(questions, div_id)
    script = build_script(prefix, static, url, div_id, True)
    # jupyterquiz falls back to fetching MathJax from a CDN when it finds no typesetter; the book serves
    # its own MathJax and a notebook has its own, so that fallback is cut (a page must load nothing remote)
    script = script.replace(
        "script.src = 'https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-svg.js';",
        "return;  // vnotes: no MathJax from a CDN",
    )
    div = render_div(div_id, False, False, False, 1_000_000, 600, 10, "left")
    colors = {
        "--jq-multiple-choice-bg": "#345995",
        "--jq-mc-button-bg": "#fafafa",
        "--jq-mc-button-border": "#e0e0e0e0",
        "--jq-mc-button-inset-shadow": "#555555",
        "--jq-many-choice-bg": "#e26d5a",
        "--jq-numeric-bg": "#345995",
        "--jq-numeric-input-bg": "#c0c0c0",
        "--jq-numeric-input-label": "#101010",
        "--jq-numeric-input-shadow": "#999999",
        "--jq-string-bg": "#861657",
        "--jq-incorrect-color": "#c80202",
        "--jq-correct-color": "#009113",
        "--jq-text-color": "#fafafa",
        "--jq-link-color": "#9abafa",
    }
    display(HTML(div + "</div>" + build_styles(div_id, colors)))
    display(
        Javascript(
            "(function () {\n"
            f"  var src = {json.dumps(script)};\n"
            "  var run = function () { (0, eval)(src); };\n"
            "  var ready = function () {\n"
            "    var mj = window.MathJax;\n"
            "    if (mj && mj.startup && mj.startup.promise) mj.startup.promise.then(run, run);\n"
            "    else run();\n"
            "  };\n"
            '  if (document.readyState === "complete") ready();\n'
            '  else window.addEventListener("load", ready);\n'
            "})();\n"
        )
    )


# ============================================================================ solutions on request
def show_solution(name: str) -> None:
    """Display the reference solution of exercise ``name`` (folded: click to open). Nothing is defined
    in the notebook, so a reader's own function is never replaced."""
    from .. import exercise_solutions

    fn = getattr(exercise_solutions, name, None)
    if fn is None or not callable(fn) or name.startswith("_"):
        known = ", ".join(exercise_solutions.__all__)
        raise ValueError(f"no solution named {name!r}; known: {known}")
    src = inspect.getsource(fn)
    try:
        import html

        from IPython.display import HTML, display
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer

        code = highlight(src, PythonLexer(), HtmlFormatter(nowrap=True))
        display(
            HTML(
                '<details class="vnotes-solution"><summary>Show the reference solution of '
                f"<code>{html.escape(name)}</code></summary>"
                f'<div class="highlight"><pre>{code}</pre></div></details>'
            )
        )
    except ImportError:
        print(src)
