"""The exercises keep their promises (vnotes/exercises.py): the reference solution passes its check, the
untouched stub fails with a "not yet" line, and plausible mistakes fail with a one-line message that
does not give the solution away. Quiz answer keys follow the numbers a page passes in."""

import ast
import re
import json
import math
import time
from pathlib import Path

import pytest
import torch

from vnotes import exercise_solutions as sol
from vnotes import exercises as ex

ROOT = Path(__file__).resolve().parents[1]


def _stub(*args, **kwargs):
    raise NotImplementedError  # what every stub on a page does until the reader fills it in


# ---------------------------------------------------------------- plausible mistakes, per exercise
def adam_no_bias_correction(
    param, grad, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8
):
    b1, b2 = betas
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad**2
    return param - lr * m / (v.sqrt() + eps), m, v


def adam_eps_inside_sqrt(
    param, grad, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8
):
    b1, b2 = betas
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad**2
    m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
    return param - lr * m_hat / (v_hat + eps).sqrt(), m, v


def adam_bias_off_by_one(
    param, grad, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8
):
    b1, b2 = betas
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad**2
    m_hat, v_hat = m / (1 - b1 ** (t + 1)), v / (1 - b2 ** (t + 1))
    return param - lr * m_hat / (v_hat.sqrt() + eps), m, v


def adam_hardcoded_betas(
    param, grad, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8
):
    return sol.adam_step(
        param, grad, m, v, t, lr=lr, betas=(0.9, 0.999), eps=eps
    )


def adam_returns_param_only(
    param, grad, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8
):
    return sol.adam_step(param, grad, m, v, t, lr=lr, betas=betas, eps=eps)[0]


def cosine_warmup_off_by_one(t, warmup, total, base_lr):
    if t < warmup:
        return base_lr * (t + 1) / warmup
    return sol.warmup_cosine(t, warmup, total, base_lr)


def cosine_over_total(t, warmup, total, base_lr):
    if t < warmup:
        return base_lr * t / warmup
    return base_lr * 0.5 * (1 + math.cos(math.pi * min(t, total) / total))


def cosine_not_clamped(t, warmup, total, base_lr):
    if t < warmup:
        return base_lr * t / warmup
    return (
        base_lr
        * 0.5
        * (1 + math.cos(math.pi * (t - warmup) / (total - warmup)))
    )


def clip_per_tensor(grads, max_norm):
    return [g * min(1.0, max_norm / (g.norm().item() + 1e-6)) for g in grads]


def clip_by_value(grads, max_norm):
    return [g.clamp(-max_norm, max_norm) for g in grads]


def clip_always_rescale(grads, max_norm):
    total = torch.sqrt(sum((g**2).sum() for g in grads))
    return [g * max_norm / (total + 1e-6) for g in grads]


def attention_scaled_by_d(q, k, v, mask):
    scores = q @ k.transpose(-2, -1) / q.shape[-1]
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1) @ v


def attention_softmax_wrong_axis(q, k, v, mask):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return (
        torch.softmax(
            scores.masked_fill(~mask, float("-inf")), dim=-2
        ).nan_to_num()
        @ v
    )


def attention_mask_inverted(q, k, v, mask):
    return sol.masked_attention(q, k, v, ~mask)


def attention_mask_ignored(q, k, v, mask):
    return sol.masked_attention(q, k, v, torch.ones_like(mask))


def attention_mask_filled_with_zero(q, k, v, mask):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return torch.softmax(scores.masked_fill(~mask, 0.0), dim=-1) @ v


def split_heads_without_transpose(x, num_heads):
    B, L, d = x.shape
    return x.reshape(B, num_heads, L, d // num_heads)


def split_heads_interleaved(x, num_heads):
    B, L, d = x.shape
    return x.reshape(B, L, d // num_heads, num_heads).permute(0, 3, 1, 2)


def split_heads_left_in_place(x, num_heads):
    B, L, d = x.shape
    return x.reshape(B, L, num_heads, d // num_heads)


def causal_mask_transposed(length):
    return torch.ones(length, length, dtype=torch.bool).triu()


def causal_mask_without_diagonal(length):
    return torch.ones(length, length, dtype=torch.bool).tril(-1)


def causal_mask_inverted(length):
    return ~sol.causal_mask(length)


def causal_mask_as_floats(length):
    return torch.ones(length, length).tril()


def sinusoid_sin_cos_swapped(length, dim):
    pe = sol.sinusoidal_position_encoding(length, dim)
    return torch.stack([pe[:, 1::2], pe[:, 0::2]], dim=-1).reshape(length, dim)


def sinusoid_exponent_i_over_d(length, dim):
    position = torch.arange(length, dtype=torch.float32)[:, None]
    omega = 10000.0 ** (-torch.arange(dim // 2, dtype=torch.float32) / dim)
    pe = torch.zeros(length, dim)
    pe[:, 0::2], pe[:, 1::2] = (
        torch.sin(position * omega),
        torch.cos(position * omega),
    )
    return pe


def sinusoid_sines_then_cosines(length, dim):
    pe = sol.sinusoidal_position_encoding(length, dim)
    return torch.cat([pe[:, 0::2], pe[:, 1::2]], dim=1)


def sinusoid_positions_from_one(length, dim):
    return sol.sinusoidal_position_encoding(length + 1, dim)[1:]


def dropout_no_rescale(x, p, training=True):
    if not training:
        return x
    return x * (torch.rand_like(x) >= p).to(x.dtype)


def dropout_multiplies_by_keep_prob(x, p, training=True):
    if not training:
        return x
    return x * (torch.rand_like(x) >= p).to(x.dtype) * (1 - p)


def dropout_active_in_eval(x, p, training=True):
    return sol.inverted_dropout(x, p, True)


def dropout_classic_scales_at_test(x, p, training=True):
    # the original (non-inverted) dropout: no scaling in training, times (1 - p) at test time
    if not training:
        return x * (1 - p)
    return x * (torch.rand_like(x) >= p).to(x.dtype)


def dropout_p_is_keep_probability(x, p, training=True):
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return torch.zeros_like(x)
    return x * (torch.rand_like(x) < p).to(x.dtype) / p


def dropout_one_mask_per_column(x, p, training=True):
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return torch.zeros_like(x)
    keep = (torch.rand(x.shape[-1]) >= p).to(
        x.dtype
    )  # broadcast over the rows
    return x * keep / (1 - p)


def dropout_fixed_seed(x, p, training=True):
    torch.manual_seed(0)
    return sol.inverted_dropout(x, p, training)


def dropout_divides_by_zero_at_p1(x, p, training=True):
    if not training:
        return x
    return x * (torch.rand_like(x) >= p).to(x.dtype) / (1 - p)


def dropout_in_place(x, p, training=True):
    if not training or p == 0.0:
        return x
    return (
        x.mul_((torch.rand_like(x) >= p).to(x.dtype) / (1 - p))
        if p < 1
        else x.zero_()
    )


def adamw_l2_in_the_gradient(
    param,
    grad,
    m,
    v,
    t,
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=1e-2,
):
    # Adam(weight_decay=...): the coupled L2 penalty section 3 warns about
    return sol.adam_step(
        param,
        grad + weight_decay * param,
        m,
        v,
        t,
        lr=lr,
        betas=betas,
        eps=eps,
    )


def adamw_decay_without_lr(
    param,
    grad,
    m,
    v,
    t,
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=1e-2,
):
    param, m, v = sol.adam_step(
        param, grad, m, v, t, lr=lr, betas=betas, eps=eps
    )
    return param - weight_decay * 1e-2 * param, m, v


def adamw_decay_after_the_step(
    param,
    grad,
    m,
    v,
    t,
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=1e-2,
):
    param, m, v = sol.adam_step(
        param, grad, m, v, t, lr=lr, betas=betas, eps=eps
    )
    return param * (1 - lr * weight_decay), m, v


def adamw_no_decay(
    param,
    grad,
    m,
    v,
    t,
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=1e-2,
):
    return sol.adam_step(param, grad, m, v, t, lr=lr, betas=betas, eps=eps)


def adamw_no_bias_correction(
    param,
    grad,
    m,
    v,
    t,
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=1e-2,
):
    param, m, v = adam_no_bias_correction(
        param * (1 - lr * weight_decay),
        grad,
        m,
        v,
        t,
        lr=lr,
        betas=betas,
        eps=eps,
    )
    return param, m, v


EXERCISES = {
    "split_heads": [
        split_heads_without_transpose,
        split_heads_interleaved,
        split_heads_left_in_place,
    ],
    "causal_mask": [
        causal_mask_transposed,
        causal_mask_without_diagonal,
        causal_mask_inverted,
        causal_mask_as_floats,
    ],
    "sinusoidal_position_encoding": [
        sinusoid_sin_cos_swapped,
        sinusoid_exponent_i_over_d,
        sinusoid_sines_then_cosines,
        sinusoid_positions_from_one,
    ],
    "adam_step": [
        adam_no_bias_correction,
        adam_eps_inside_sqrt,
        adam_bias_off_by_one,
        adam_hardcoded_betas,
        adam_returns_param_only,
    ],
    "warmup_cosine": [
        cosine_warmup_off_by_one,
        cosine_over_total,
        cosine_not_clamped,
    ],
    "clip_grad_norm": [clip_per_tensor, clip_by_value, clip_always_rescale],
    "masked_attention": [
        attention_scaled_by_d,
        attention_softmax_wrong_axis,
        attention_mask_inverted,
        attention_mask_ignored,
        attention_mask_filled_with_zero,
    ],
    "inverted_dropout": [
        dropout_no_rescale,
        dropout_multiplies_by_keep_prob,
        dropout_active_in_eval,
        dropout_classic_scales_at_test,
        dropout_p_is_keep_probability,
        dropout_one_mask_per_column,
        dropout_fixed_seed,
        dropout_divides_by_zero_at_p1,
        dropout_in_place,
    ],
    "adamw_step": [
        adamw_l2_in_the_gradient,
        adamw_decay_without_lr,
        adamw_decay_after_the_step,
        adamw_no_decay,
        adamw_no_bias_correction,
    ],
}


# Every chapter's exercises (its test file, tests/test_exercises_ch*.py, holds the plausible mistakes and the
# checks' own tests, and names its pages in EXERCISE_PAGES): the contract below -- solution passes, stub says
# "not yet", mistakes fail in one line, nothing raises -- is tested once here for all of them. A new chapter's
# test file is found by its name.
import importlib  # noqa: E402

_CHAPTER_TESTS = [
    importlib.import_module(p.stem)
    for p in sorted(Path(__file__).parent.glob("test_exercises_ch*.py"))
]
CHAPTER_EXERCISES = dict(EXERCISES)
for _module in _CHAPTER_TESTS:
    _clash = set(CHAPTER_EXERCISES) & set(_module.EXERCISES)
    assert not _clash, f"{_module.__name__} names an exercise twice: {_clash}"
    CHAPTER_EXERCISES.update(_module.EXERCISES)


@pytest.mark.parametrize("name", CHAPTER_EXERCISES)
def test_reference_solution_passes(name):
    check = getattr(ex, f"check_{name}")
    assert check(getattr(sol, name)).passed, check(getattr(sol, name)).message
    # timed on a second call: the first pays torch.optim's one-time lazy imports (about 1 s)
    start = time.process_time()
    check(getattr(sol, name))
    assert time.process_time() - start < 0.5, (
        f"check_{name} takes half a second or more"
    )


@pytest.mark.parametrize("name", CHAPTER_EXERCISES)
def test_untouched_stub_says_not_yet(name):
    result = getattr(ex, f"check_{name}")(_stub)
    assert not result.passed
    assert (
        result.message.startswith("not yet")
        and "NotImplementedError" in result.message
    )
    none = getattr(ex, f"check_{name}")(lambda *a, **k: None)
    assert not none.passed and none.message.startswith("not yet"), none.message


@pytest.mark.parametrize(
    "name, mistake",
    [(name, m) for name, ms in CHAPTER_EXERCISES.items() for m in ms],
    ids=lambda x: getattr(x, "__name__", x),
)
def test_plausible_mistake_fails_with_one_line(name, mistake):
    result = getattr(ex, f"check_{name}")(mistake)
    assert not result.passed, f"{mistake.__name__} passed check_{name}"
    assert "\n" not in result.message and len(result.message) < 300
    assert not result.message.startswith("not yet")
    # the message shows what differs, never the reference's code
    assert "def " not in result.message and "softmax" not in result.message


def test_a_crashing_or_wrong_answer_never_raises():
    def crash(*a, **k):
        raise RuntimeError("shape mismatch\nsecond line")

    for name in CHAPTER_EXERCISES:
        check = getattr(ex, f"check_{name}")
        for answer in (crash, lambda *a, **k: "nonsense", 42, None):
            result = check(answer)
            assert not result.passed and "\n" not in result.message
    assert "RuntimeError: shape mismatch" in ex.check_adam_step(crash).message


def test_messages_name_where_the_answer_differs():
    msg = ex.check_adam_step(adam_no_bias_correction).message
    assert msg.startswith("param after step t=1") and "differs by up to" in msg
    msg = ex.check_masked_attention(attention_scaled_by_d).message
    assert "random mask" in msg and "index" in msg
    msg = ex.check_warmup_cosine(cosine_not_clamped).message
    assert msg.startswith("after total")
    msg = ex.check_clip_grad_norm(clip_per_tensor).message
    assert "large gradients" in msg
    msg = ex.check_adam_step(adam_returns_param_only).message
    assert "three tensors" in msg


def test_compare_prediction():
    opts = {"A": 1e-4, "B": 0.1, "C": 3.16}
    assert ex.compare_prediction(None, 0.1, opts).message.startswith("not yet")
    assert ex.compare_prediction("b", 0.1, opts).passed
    wrong = ex.compare_prediction("A", 0.1, opts)
    assert not wrong.passed and "option B" in wrong.message
    assert not ex.compare_prediction("D", 0.1, opts).passed
    assert ex.compare_prediction(0.11, 0.1).passed
    assert not ex.compare_prediction(0.5, 0.1).passed
    assert not ex.compare_prediction("many", 0.1).passed


def test_show_solution_displays_and_defines_nothing(capsys):
    ns = {}
    exec("from vnotes.exercises import show_solution", ns)
    before = set(ns)
    ns["show_solution"]("adam_step")
    assert set(ns) == before
    with pytest.raises(ValueError, match="known: adam_step"):
        ex.show_solution("no_such_exercise")


# ---------------------------------------------------------------- quizzes: answer keys follow the page's numbers
def _correct(question):
    return [a for a in question["answers"] if a.get("correct")]


def test_optimization_quiz_keys_follow_the_numbers_passed_in():
    optimizers = ["SGD", "Adam", "Adagrad"]
    remedies = ["ReLU, Kaiming", "sigmoid + BatchNorm", "sigmoid + residual"]
    for best, diverged, remedy in (
        ("Adagrad", 3, "sigmoid + BatchNorm"),
        ("SGD", 2, "ReLU, Kaiming"),
    ):
        quiz = ex.optimization_quiz(
            best_optimizer=best,
            optimizers=optimizers,
            noclip_diverged=diverged,
            seeds=3,
            chosen_remedy=remedy,
            remedies=remedies,
        )
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert _correct(quiz[0])[0]["value"] == pytest.approx(10.0)
        assert _correct(quiz[1])[0]["answer"] == best
        assert _correct(quiz[2])[0]["value"] == diverged
        assert _correct(quiz[3])[0]["answer"] == remedy
        json.dumps(quiz)  # what jupyterquiz embeds in the page
    with pytest.raises(ValueError, match="not among the options"):
        ex.optimization_quiz(
            best_optimizer="Lion",
            optimizers=optimizers,
            noclip_diverged=0,
            seeds=3,
            chosen_remedy=remedies[0],
            remedies=remedies,
        )


def _notebook_code(stem):
    nb = json.loads((ROOT / "chapters" / f"{stem}.ipynb").read_text())
    return "\n".join(
        "".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"
    )


# Each page with exercises: its stubs (each checked and with a folded solution), how many exercises its
# markdown numbers, and the one call that builds its quiz.
EXERCISE_PAGES = {
    "01_optimization": (
        ("adam_step", "warmup_cosine", "clip_grad_norm"),
        4,
        "optimization_quiz",
    ),
    "02a_regularization": (
        ("inverted_dropout", "adamw_step"),
        3,
        "regularization_quiz",
    ),
    "04a_attention": (
        (
            "masked_attention",
            "split_heads",
            "causal_mask",
            "sinusoidal_position_encoding",
        ),
        5,
        "attention_quiz",
    ),
}
for _module in _CHAPTER_TESTS:
    EXERCISE_PAGES.update(_module.EXERCISE_PAGES)


@pytest.mark.parametrize("stem", EXERCISE_PAGES)
def test_page_has_its_exercises_and_never_runs_a_solution(stem):
    stubs, n_exercises, _ = EXERCISE_PAGES[stem]
    nb = json.loads((ROOT / "chapters" / f"{stem}.ipynb").read_text())
    code = _notebook_code(stem)
    markdown = "\n".join(
        "".join(c["source"])
        for c in nb["cells"]
        if c["cell_type"] == "markdown"
    )
    for name in stubs:
        assert f"def {name}(" in code, f"page {stem} has no stub for {name}"
        assert f"check_{name}({name})" in code
        assert f'show_solution("{name}")' in code
    assert "exercise_solutions" not in code, (
        "a page must not import the solutions"
    )
    assert (
        markdown.count("{exercise}") >= n_exercises
        and "{solution-start}" in markdown
    )
    assert "prediction = None" in code and "compare_prediction(" in code


def test_every_page_of_the_book_has_exercises_and_each_chapter_three_to_implement():
    """Issues #21 and #22: every chapter page ends with its exercises, and each chapter (1 and Part IV count as
    chapters too) has at least three implement exercises on its central mechanisms."""
    pages = sorted(p.stem for p in (ROOT / "chapters").glob("0*.ipynb"))
    assert pages and not set(pages) - set(EXERCISE_PAGES), (
        f"pages without exercises: {sorted(set(pages) - set(EXERCISE_PAGES))}"
    )
    per_chapter = {}
    for stem, (stubs, _, _) in EXERCISE_PAGES.items():
        per_chapter[stem[:2]] = per_chapter.get(stem[:2], 0) + len(stubs)
    assert all(n >= 3 for n in per_chapter.values()), per_chapter


@pytest.mark.parametrize("stem", EXERCISE_PAGES)
def test_page_quiz_answers_are_computed_not_typed(stem):
    quiz = EXERCISE_PAGES[stem][2]
    calls = [
        n
        for n in ast.walk(ast.parse(_notebook_code(stem)))
        if isinstance(n, ast.Call)
        and getattr(n.func, "attr", getattr(n.func, "id", "")) == quiz
    ]
    assert len(calls) == 1, (
        f"page {stem} builds its quiz with one {quiz}(...) call"
    )
    for kw in calls[0].keywords:
        assert not isinstance(kw.value, ast.Constant), (
            f"{quiz}({kw.arg}=...) is typed in; compute it from the page's numbers"
        )


def test_attention_quiz_keys_follow_the_numbers_passed_in():
    for d_k, length, heads, params, acc, want_params, want_best in (
        (
            16,
            6,
            (1, 2, 4),
            {1: 900, 2: 900, 4: 900},
            {1: 0.4, 2: 0.9, 4: 0.7},
            "the same number",
            "2 heads",
        ),
        (
            64,
            3,
            (1, 8),
            {1: 900, 8: 1000},
            {1: 0.8, 8: 0.5},
            "more with more heads",
            "1 head",
        ),
    ):
        causal = torch.ones(length, length, dtype=torch.bool).tril()
        quiz = ex.attention_quiz(
            d_k=d_k,
            causal=causal,
            dim=32,
            heads=heads,
            parameters=params,
            test_accuracy=acc,
        )
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert _correct(quiz[0])[0]["value"] == pytest.approx(d_k**-0.5)
        assert _correct(quiz[1])[0]["value"] == length * (length + 1) // 2
        assert _correct(quiz[2])[0]["value"] == 32 // max(heads)
        assert _correct(quiz[3])[0]["answer"] == want_params
        assert _correct(quiz[4])[0]["answer"] == want_best
        json.dumps(quiz)


def test_show_quiz_embeds_its_javascript_for_offline_pages(monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(
        IPython.display, "display", lambda *objs, **kw: shown.extend(objs)
    )
    ex.show_quiz(
        ex.optimization_quiz(
            best_optimizer="Adam",
            optimizers=["SGD", "Adam"],
            noclip_diverged=1,
            seeds=3,
            chosen_remedy="a",
            remedies=["a", "b"],
        )
    )
    html, js = shown
    div_id = re.search(r'<div id="(vnotesquiz\w+)"', html.data).group(1)
    assert div_id in js.data and "chose one optimizer" in js.data
    assert (
        "function show_questions" in js.data
    )  # the whole library travels with the page
    assert not re.search(r"https?://\S+\.js|cdn\.", js.data), (
        "quiz JS from the network"
    )
    assert "MathJax" in js.data and 'addEventListener("load"' in js.data


# ---------------------------------------------------------------- page 2a: regularization
def test_regularization_quiz_keys_follow_the_numbers_passed_in():
    runs = ["SGD, no penalty", "SGD + L1, λ=3e-4", "SGD + L2, λ=1e-2"]
    for shares, l2, adamw, leader, chosen_p in (
        ((0.015, 0.6, 0.02), 0.4, 0.01, "dropout", 0.25),
        ((0.3, 0.1, 0.2), 0.01, 0.2, None, 0.75),
        ((0.0, 0.0, 0.5), 0.3, 0.3, "baseline", 0.0),
    ):
        quiz = ex.regularization_quiz(
            dropout_p=0.5,
            near_zero_sgd=dict(zip(runs, shares)),
            near_zero_adam_l2=l2,
            near_zero_adamw=adamw,
            gap_leader=leader,
            chosen_p=chosen_p,
        )
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert _correct(quiz[0])[0]["value"] == pytest.approx(2.0)
        assert (
            _correct(quiz[1])[0]["answer"] == runs[shares.index(max(shares))]
        )
        assert _correct(quiz[2])[0]["answer"].startswith(
            "L2" if l2 > adamw else "decoupled"
        )
        verdict = _correct(quiz[3])[0]["answer"]
        assert verdict.startswith(
            {
                "dropout": "dropout",
                None: "within noise",
                "baseline": "the baseline",
            }[leader]
        )
        assert _correct(quiz[4])[0]["value"] == chosen_p
        json.dumps(quiz)
    with pytest.raises(ValueError, match="gap_leader"):
        ex.regularization_quiz(
            dropout_p=0.5,
            near_zero_sgd=dict(zip(runs, (0.1, 0.2, 0.3))),
            near_zero_adam_l2=0.1,
            near_zero_adamw=0.1,
            gap_leader="R-Drop",
            chosen_p=0.5,
        )


def test_dropout_check_accepts_pytorchs_and_the_books_dropout():
    import torch.nn.functional as F

    from vnotes.regularization import dropout

    assert ex.check_inverted_dropout(
        lambda x, p, training=True: F.dropout(x, p, training)
    ).passed
    assert ex.check_inverted_dropout(dropout).passed
    state = torch.random.get_rng_state()
    ex.check_inverted_dropout(sol.inverted_dropout)
    assert torch.equal(state, torch.random.get_rng_state()), (
        "the check must leave the reader's random state as it was"
    )
