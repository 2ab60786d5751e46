"""The one headless Chromium that the page tests share, and how they open and settle a page in it.

Playwright drives Debian's chromium (never `playwright install`). The browser is started once per test
process (so once per xdist worker) by the ``browser`` fixture in conftest.py: test_pages.py and
test_reading.py both use it, since two Playwright instances cannot live in one process (the second
refuses to start inside the first's event loop). Each test opens its page in a fresh tab, offline.
"""

from __future__ import annotations

import base64
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# the most that waiting for MathJax, images and saved widgets may take on one page; what is still
# missing then is reported by the page's checks rather than waited for
SETTLE_MS = 8_000


@contextmanager
def launched() -> Iterator:
    """Start the headless chromium; a clear error when it is not installed."""
    if CHROMIUM is None:
        raise RuntimeError(
            "chromium is not installed (apt-get install chromium; .ci/run installs it); Playwright "
            "drives Debian's build, never `playwright install`"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu"],
            timeout=60_000,
        )
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def opened(
    browser, html_file: Path, width: int = 1280, height: int = 900
) -> Iterator:
    """A fresh tab of ``width`` x ``height`` pixels showing ``html_file`` past its load event, offline
    (http(s) requests are aborted: the book must read without the network); closed afterwards."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.route(re.compile(r"^https?://"), lambda route: route.abort())
    try:
        page.goto(html_file.as_uri(), wait_until="load", timeout=60_000)
        yield page
    finally:
        page.context.close()


def settle(page, timeout_ms: int = SETTLE_MS, widgets: bool = False) -> None:
    """Wait for MathJax's first typesetting, every image and (with ``widgets``) the saved widgets' first
    drawing, at most ``timeout_ms`` in all; none of these waits fails."""
    page.wait_for_load_state("load")
    page.evaluate(
        r"""async ([ms, widgets]) => {
            const deadline = Date.now() + ms;
            const timeLeft = () => new Promise((r) => setTimeout(r, Math.max(0, deadline - Date.now())));
            // the site sets window.MathJax to its config; startup exists once the local script has run
            const typeset = window.MathJax && MathJax.startup && MathJax.startup.promise;
            if (typeset) await Promise.race([typeset.catch(() => null), timeLeft()]);
            document.querySelectorAll('img[loading="lazy"]').forEach((img) => { img.loading = "eager"; });
            const pending = [...document.images].filter((img) => !img.complete).map(
                (img) => new Promise((r) => { img.addEventListener("load", r); img.addEventListener("error", r); }));
            await Promise.race([Promise.all(pending), timeLeft()]);
            // the embed script draws each saved view into a .widget-subarea beside its <script> tag
            const drawn = () => [
                ...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]'),
            ].every((s) => s.parentElement && s.parentElement.querySelector(".widget-subarea .jupyter-widgets"));
            while (widgets && !drawn() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
        }""",
        [timeout_ms, widgets],
    )


def page_png(page, path: Path, clip: dict | None = None) -> None:
    """A PNG of the whole page (or of ``clip``, page coordinates in CSS pixels) written to ``path``.

    Chromium's own capture with its fast PNG encoder (``optimizeForSpeed``): the same pixels as
    Playwright's ``screenshot(full_page=True)``, in about 2.5 s instead of 4 on a 30,000-pixel page on
    the 2-core AVX2 EPYC, for files about a quarter larger.
    """
    cdp = page.context.new_cdp_session(page)
    try:
        if clip is None:
            size = cdp.send("Page.getLayoutMetrics")["cssContentSize"]
            clip = {
                "x": 0,
                "y": 0,
                "width": size["width"],
                "height": size["height"],
            }
        shot = cdp.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "optimizeForSpeed": True,
                "clip": {**clip, "scale": 1},
            },
        )
    finally:
        cdp.detach()
    Path(path).write_bytes(base64.b64decode(shot["data"]))
