"""The rendered book, opened in headless Chromium as a reader would.

For every page of the table of contents, opened once: a full-page screenshot is kept under
``_build/screenshots`` (the CI artifact), the page has no error traceback and no stderr block, its formulas
are typeset by the site's own MathJax, it breaks none of the reader rules of ``test_reading.py`` (tables
left as pipes, code that scrolls sideways, raw reprs, broken images, untypeset TeX), each chapter
page shows at least the figures its thresholds file promises (``[page] min_figures``), and on a page with
exercises the same tab then checks them (:func:`check_exercises`: stubs, folded solutions, the quiz).
"""

import importlib
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from bookinfo import BUILD, THRESHOLDS, thresholds, toc_files
from browsing import opened, page_png, settle
from test_reading import reader_problems

pytestmark = pytest.mark.book
HTML = BUILD / "html"
SHOTS = BUILD / "screenshots"


class _Elements(HTMLParser):
    """Counts what a reader sees in myst-nb output: figures, tracebacks, stderr blocks, local links."""

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.figures = 0
        self.tracebacks = 0
        self.stderr = 0
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = a.get("class") or ""
        if tag not in ("img", "br", "meta", "link", "input", "hr", "source"):
            self.stack.append(cls)
        if tag == "img" and any("cell_output" in c for c in self.stack):
            self.figures += 1
        if "traceback" in cls.split():
            self.tracebacks += 1
        if "stderr" in cls.split():
            self.stderr += 1
        if (
            tag == "a"
            and a.get("href")
            and not re.match(r"^(https?:|mailto:|#|javascript:)", a["href"])
        ):
            self.links.append(a["href"])

    def handle_endtag(self, tag):
        if (
            tag not in ("img", "br", "meta", "link", "input", "hr", "source")
            and self.stack
        ):
            self.stack.pop()


PAGES = [f for f in toc_files()] + [
    "build_status"
]  # the status page is added by the build


@pytest.fixture(scope="module")
def built():
    if not (HTML / "index.html").exists():
        pytest.fail("_build/html is missing: run `make book` first")
    SHOTS.mkdir(parents=True, exist_ok=True)
    return HTML


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_cleanly(built, browser, page):
    html_file = built / f"{page}.html"
    assert html_file.exists(), f"{html_file} was not built"
    source = html_file.read_text()
    widgets = "application/vnd.jupyter.widget-view+json" in source
    name = Path(page).name
    shot = SHOTS / f"{name}.png"
    # the page as a reader sees it in a 1280x2400 window, once formulas, images and widgets are drawn:
    # its DOM for the checks below, what a reader would see wrong in its layout, and its full-page
    # screenshot (the CI artifact). One load serves all three: the page checks are a large part of
    # `make test` on the slowest build machine, and loading each page twice (here and in a separate
    # reading test) doubled them.
    with opened(browser, html_file, 1280, 2400) as tab:
        settle(tab, widgets=widgets)
        dom = tab.content()
        problems = reader_problems(tab)
        page_png(tab, shot)
        # exercises are checked in the same load (a second load per exercise page cost ~10 s each)
        if page in EXERCISE_PAGES:
            check_exercises(tab, page)
    assert "<html" in dom, "chromium returned no DOM"
    assert not problems, (
        f"{page}: {len(problems)} problem(s) a reader would see:\n"
        + "\n".join(problems)
    )
    seen = _Elements()
    seen.feed(dom)
    assert seen.tracebacks == 0, (
        f"{page}: {seen.tracebacks} error traceback(s) on the page"
    )
    assert seen.stderr == 0, (
        f"{page}: {seen.stderr} stderr block(s) on the page (warnings leaked into the output)"
    )
    if widgets:
        # the saved widget state must come alive from the site's own JavaScript: sliders on screen
        assert "widgets/embed-amd.js" in source, (
            f"{page}: widget JavaScript is not served by the site"
        )
        # each embed script that loads draws every saved widget once more (seen: three copies)
        embeds = re.findall(r'<script[^>]*src="[^"]*embed[\w-]*\.js', source)
        assert len(embeds) == 1, (
            f"{page}: {len(embeds)} widget embed scripts load, so each widget is drawn {len(embeds)} times"
        )
        assert "widget-slider" in dom or "widget-hslider" in dom, (
            f"{page}: its interactive controls did not render"
        )
    if 'class="math notranslate' in source:
        # formulas typeset by the site's own MathJax (offline too), without TeX errors
        assert (
            "mathjax/tex-mml-chtml.js" in source
            and "cdn.jsdelivr" not in source
        ), f"{page}: MathJax is not served by the site"
        assert "<mjx-container" in dom, (
            f"{page}: its formulas were not typeset (raw TeX on the page)"
        )
        assert "<mjx-merror" not in dom, (
            f"{page}: MathJax reports a TeX error in a formula"
        )
    assert shot.exists() and shot.stat().st_size > 10_000, (
        f"no usable screenshot of {page}"
    )
    if (THRESHOLDS / f"{name}.toml").exists():
        # the build's cost line near the top: scale, wall time, machine, date (written by tools/build_book.py)
        cost = re.search(
            r'<div class="[^"]*vnotes-cost[^"]*">(.*?)</div>', source, re.S
        )
        assert cost, (
            f"{page}: no 'What this page cost' note (the build writes it under the title)"
        )
        text = re.sub(r"<[^>]+>", "", cost.group(1))
        assert re.search(
            r"Executed at scale \w+ in [\d.]+ (s|min) of wall time on .+torch [\d.]+, on \d{4}-\d\d-\d\d",
            text,
        ), (
            f"{page}: the cost note lacks its scale, time, machine or date: {text!r}"
        )
        # above the first cell's output ("cell_output" also occurs in the page's CSS, so match the element)
        first_output = source.find('<div class="cell_output')
        assert (
            first_output < 0 or source.index("vnotes-cost") < first_output
        ), f"{page}: the cost note is not near the top"
        want = thresholds(name).get("page", {}).get("min_figures", 1)
        assert seen.figures >= want, (
            f"{page}: {seen.figures} figures shown, expected at least {want}"
        )
    for href in seen.links:
        target = (html_file.parent / href.split("#")[0]).resolve()
        if href.split("#")[0]:
            assert target.exists(), f"{page}: broken link {href}"


def test_status_page_lists_every_chapter_with_its_time(built):
    status = (built / "build_status.html").read_text()
    for page in toc_files():
        if page.startswith("chapters/"):
            name = Path(page).name
            row = re.search(
                rf"{name}</span></a></p></td>\s*<td><p>([\d.]+)</p></td>",
                status,
            )
            assert row, f"build_status: no execution time for {name}"


# Pages with exercises at their end (vnotes.exercises): how many numbered exercises each renders.
EXERCISE_PAGES = {
    "chapters/01_optimization": 4,
    "chapters/02a_regularization": 3,
    "chapters/02b_regularization": 3,
    "chapters/03a_convolution": 3,
    "chapters/03b_cnn_families": 4,
    "chapters/03c_classic_cnns": 2,
    "chapters/03d_lightweight_cnns": 3,
    "chapters/04_recurrent": 3,
    "chapters/04a_attention": 5,
    "chapters/04b_language": 2,
    "chapters/04c_vit": 2,
    "chapters/04d_swin_mixer": 3,
    "chapters/04e_deformable": 3,
    "chapters/04f_inductive_bias": 3,
}
# The quiz question each page's test clicks, and its right answer: read from the page (a pattern whose
# group 1 is the answer, e.g. the optimizer page 1 chose on validation: the key is computed, so it follows
# the page's run) or fixed (a string).
QUIZ_CLICKS = {
    "chapters/01_optimization": (
        "chose one optimizer",
        re.compile(r"Chosen on validation: (\w[\w+]*)"),
    ),
    "chapters/02a_regularization": ("switched on during", "training only"),
    "chapters/02b_regularization": (
        "In evaluation mode, batch norm",
        "the running averages kept during training",
    ),
    "chapters/03a_convolution": (
        "equivariant to a shift of the input by one pixel",
        "no: a shift that is not a multiple of the stride changes the output",
    ),
    # fixed by the layer widths (58% saved), not by a run
    "chapters/03b_cnn_families": ("1×1 reductions save", "about 50%"),
    "chapters/03c_classic_cnns": (
        "on the Pareto front of accuracy against latency when",
        "no other miniature is both at least as fast and at least as accurate",
    ),
    "chapters/03d_lightweight_cnns": (
        "on the Pareto front of accuracy against latency when",
        "no other miniature is both at least as fast and at least as accurate",
    ),
    "chapters/04_recurrent": (
        "which gate scales the gradient",
        "the forget gate",
    ),
    "chapters/04b_language": ("BERT's masking", "80% of the time"),
    "chapters/04c_vit": (
        "The patch embedding, a linear map",
        "a convolution whose kernel and stride both equal the patch side",
    ),
    "chapters/04d_swin_mixer": (
        "two tokens of the same window may attend",
        "they were neighbours in the image before the roll",
    ),
    "chapters/04e_deformable": (
        "get its sampling offsets from",
        "a linear layer applied to the query's own features",
    ),
    "chapters/04f_inductive_bias": (
        "moves the ViT's patch embeddings",
        "by one token, unchanged otherwise",
    ),
    # every model of 4a.4 has width d, so the same parameters whatever its heads (the page prints them)
    "chapters/04a_attention": (
        "Compared with the 1-head model",
        "the same number",
    ),
}
# Chapters whose exercise tests (tests/test_exercises_ch*.py) name the quiz question to click (QUIZ_CLICKS,
# by page stem) bring their pages here themselves, with the exercise count of their EXERCISE_PAGES.
for _path in sorted(Path(__file__).parent.glob("test_exercises_ch*.py")):
    _module = importlib.import_module(_path.stem)
    for _stem, _click in getattr(_module, "QUIZ_CLICKS", {}).items():
        assert f"chapters/{_stem}" not in QUIZ_CLICKS, _stem
        EXERCISE_PAGES[f"chapters/{_stem}"] = _module.EXERCISE_PAGES[_stem][1]
        QUIZ_CLICKS[f"chapters/{_stem}"] = _click


def check_exercises(tab, page: str) -> None:
    """In an open tab of ``page``: the numbered exercises render, each stub's check says "not yet", solutions
    are folded until their toggle is clicked, and the quiz answers a click (QUIZ_CLICKS). Called by
    test_page_renders_cleanly on the tab it has already loaded (after its screenshot, since this clicks)."""
    titles = tab.locator(".exercise .admonition-title").all_inner_texts()
    assert len(titles) >= EXERCISE_PAGES[page], (
        f"{page}: {len(titles)} numbered exercises rendered: {titles}"
    )
    assert all(re.match(r"Exercise \d+", t) for t in titles), titles
    outputs = " ".join(tab.locator("div.cell_output").all_inner_texts())
    assert outputs.count("not yet") >= EXERCISE_PAGES[page], (
        f"{page}: the untouched stubs' checks do not all say 'not yet'"
    )
    # solutions: folded behind a toggle, their code shown once it is clicked
    solutions = tab.locator(".solution")
    assert solutions.count() >= EXERCISE_PAGES[page], (
        f"{page}: {solutions.count()} solutions rendered"
    )
    first = solutions.first
    code = first.locator(".vnotes-solution pre").first
    assert code.count() and not code.is_visible(), (
        f"{page}: a solution is missing its code or is shown unfolded"
    )
    # the toggle's own button: the title's middle can be its link back to the exercise (2a's short
    # titles put it there), which scrolls instead of unfolding
    first.locator("button.toggle-button").first.click()
    try:  # as long as the unfolding takes (it was a fixed half second), at most 5 s
        code.wait_for(state="visible", timeout=5_000)
    except PlaywrightTimeout:
        pass  # reported just below
    assert code.is_visible(), (
        f"{page}: clicking a solution's toggle does not show its code"
    )
    # the quiz: a click on a wrong answer is refused, one on the right answer accepted
    asked, answer = QUIZ_CLICKS[page]
    if isinstance(answer, re.Pattern):
        found = answer.search(tab.inner_text("article"))
        assert found, f"{page}: no line matching {answer.pattern!r}"
        answer = found.group(1)
    questions = tab.locator(".MultipleChoiceQn")
    assert questions.count() >= 3 or tab.locator(".NumericQn").count(), (
        f"{page}: the quiz did not render"
    )
    # jupyterquiz: each question is a .Quiz box holding the question, its answer buttons and feedback
    question = tab.locator(".Quiz").filter(has_text=asked).first
    wrong = (
        question.locator("label.MCButton").filter(has_not_text=answer).first
    )
    wrong.click()
    assert "incorrect" in question.locator(".Feedback").first.get_attribute(
        "class"
    )
    question.locator("label.MCButton").filter(
        has_text=re.compile(rf"^{re.escape(answer)}$")
    ).first.click()
    feedback = question.locator(".Feedback").first
    assert "correct" in feedback.get_attribute("class").split(), (
        f"{page}: the quiz did not accept the page's own answer {answer!r}"
    )
    # the exercises as the clicks left them: that section alone (a second full-page screenshot of
    # a 30,000-pixel page cost ~2 s per exercise page on the 2-core AVX2 EPYC)
    section = tab.locator("section#exercises")
    assert section.count() == 1, (
        f"{page}: {section.count()} sections with id 'exercises'"
    )
    # clipped from the full page, scrolled back to the top first: the theme's header is sticky, and at
    # the scroll position the clicks left it would be drawn across the middle of the section
    tab.evaluate("window.scrollTo(0, 0)")
    box = section.bounding_box()
    page_png(
        tab,
        SHOTS / f"{Path(page).name}-exercises.png",
        clip={k: box[k] for k in ("x", "y", "width", "height")},
    )
