"""The built pages read in a real browser, as a reader sees them once scripts and styles have run.

``reader_problems`` looks at the laid-out page (Playwright driving Debian's chromium) for what an HTML
dump cannot show: Markdown tables left as a paragraph of pipes, code a reader must scroll sideways,
quoted reprs of Markdown or HTML printed as output, images that did not load, and TeX that MathJax did
not typeset. Each rule has a small broken page under ``tests/fixtures/reading`` that it must catch. The built pages
are checked with these rules by ``test_pages.py::test_page_renders_cleanly``, in the same browser tab
as its other checks (one load per page).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page

from browsing import opened, settle

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "reading"

# Shared by every rule: the article is what the reader reads (the theme's sidebars and navigation are not).
_PRELUDE = r"""
const root = document.querySelector("article") || document.querySelector("main") || document.body
  || document.documentElement;
const clip = (s) => {
  s = (s || "").replace(/\s+/g, " ").trim();
  return '"' + (s.length > 80 ? s.slice(0, 80) + "…" : s) + '"';
};
const where = (el) => {
  const section = el.closest("section[id]");
  return section ? ` (in #${section.id})` : "";
};
const out = [];
"""

# rule -> JavaScript that returns one line per problem found on the page
RULES = {
    "markdown-table-as-paragraph": r"""
        // |---|, | --- |, |:--|; Sphinx's smartquotes turn --- into an em dash and -- into an en dash
        const separator = /\|\s*:?[-–—]+:?\s*\|/;
        const row = /^\s*\|(?:[^|\n]*\|){2,}\s*$/;
        for (const p of root.querySelectorAll("p")) {
            const copy = p.cloneNode(true);
            copy.querySelectorAll("br").forEach((br) => br.replaceWith("\n"));
            const text = copy.textContent;
            if (separator.test(text) || text.split("\n").filter((line) => row.test(line)).length >= 2)
                out.push(clip(text) + where(p));
        }
    """,
    "code-scrolls-sideways": r"""
        for (const pre of root.querySelectorAll("pre")) {
            const over = pre.scrollWidth - pre.clientWidth;
            if (over > 1) {
                const first = pre.textContent.split("\n").find((line) => line.trim()) || "";
                out.push(`${clip(first)} is ${over}px wider than its box` + where(pre));
            }
        }
    """,
    "raw-repr-output": r"""
        const markup = /\|\s*:?-{3}|<(table|div|img)\b|<p>/i;
        for (const cell of root.querySelectorAll("div.cell_output")) {
            for (const el of cell.querySelectorAll("pre, .output")) {
                if (!el.matches("pre") && el.querySelector("pre")) continue;  // its pre is looked at
                const text = el.textContent.trim();
                if (/^['"]/.test(text) && markup.test(text)) out.push(clip(text) + where(el));
            }
            const shown = cell.textContent.match(/<IPython\.core\.display\.(Markdown|HTML) object>/);
            if (shown) out.push(clip(shown[0]) + where(cell));
        }
    """,
    "broken-image": r"""
        for (const img of root.querySelectorAll("img"))
            if (!img.complete || img.naturalWidth === 0)
                out.push(clip(img.getAttribute("src") || img.alt) + " did not load" + where(img));
    """,
    "raw-tex": r"""
        for (const err of root.querySelectorAll("mjx-merror"))
            out.push("TeX error " + clip(err.getAttribute("data-mjx-error") || err.textContent) + where(err));
        // the visible text of each block, outside code and typeset formulas, with layout whitespace
        // collapsed so that a formula split over source lines is still one span
        const skip = "pre, code, mjx-container, script, style, textarea, noscript";
        const blockOf = (el) => {
            while (el !== root && getComputedStyle(el).display.startsWith("inline")) el = el.parentElement;
            return el;
        };
        const blocks = new Map();
        const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            const el = node.parentElement;
            if (!el || el.closest(skip) || !el.checkVisibility()) continue;
            const block = blockOf(el);
            blocks.set(block, (blocks.get(block) || "") + node.textContent.replace(/\s+/g, " "));
        }
        const tex = /\$[^$\n]*\\[A-Za-z]+[^$\n]*\$|\\\(.*?\\\)|\\\[.*?\\\]|\\begin\{/g;
        for (const [block, text] of blocks)
            for (const m of text.matchAll(tex)) out.push(clip(m[0]) + where(block));
    """,
}


def reader_problems(page: Page) -> list[str]:
    """One line per thing a reader would see wrong on ``page`` (navigated to a file:// URL), as 'rule: what (where)'."""
    settle(page)
    problems = []
    for rule, body in RULES.items():
        for line in page.evaluate(
            f"() => {{ {_PRELUDE} {body} return out; }}"
        ):
            problems.append(f"{rule}: {line}")
    return problems


BROKEN = {
    "table_as_paragraph": "markdown-table-as-paragraph",
    "overflowing_code": "code-scrolls-sideways",
    "markdown_repr": "raw-repr-output",
    "broken_image": "broken-image",
    "raw_tex": "raw-tex",
    "clean": None,
}


@pytest.mark.parametrize("fixture", BROKEN)
def test_checker_catches_each_broken_example(browser, fixture):
    """Each fixture breaks exactly one rule and is caught by that rule alone; the clean page passes."""
    with opened(browser, FIXTURES / f"{fixture}.html") as page:
        problems = reader_problems(page)
    rule = BROKEN[fixture]
    if rule is None:
        assert problems == []
    else:
        assert problems, (
            f"{fixture}.html: the checker missed its broken {rule}"
        )
        assert {p.split(":", 1)[0] for p in problems} == {rule}, problems
