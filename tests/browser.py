"""A headless Chromium for looking at emails as a reader would, and the measurements the tests assert on.

The ``browser`` fixture is session-scoped: one Chromium for the whole run,
one fresh context (viewport, colour scheme) per look. Chromium is Debian's
/usr/bin/chromium (``.ci/run`` installs it); Playwright drives it and never
downloads a browser of its own. Where NEWSLETTER_REQUIRE_BROWSER=1 (``.ci/run``
sets it) a missing Chromium FAILS the tests: CI must never skip a layout
check. Elsewhere (a fresh laptop) they are skipped with the reason shown in
pytest's summary, so the README's test command still runs everything else.

The measurements run in the page (JavaScript) and return plain data, so a
failing assertion can name the element (a CSS selector), its box and colours.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Frame, Page

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # no internet here: no update checks, no noisy refused connections
    "--disable-component-update",
    "--disable-sync",
]
MIN_CONTRAST = 4.5  # WCAG 2 AA for normal text, applied to all text


# Test modules import the fixture (``from browser import browser``), which makes it one fixture per module; they
# share one Playwright and one Chromium, started by the first and closed by the last: Playwright's sync API cannot
# run twice at once ("using Playwright Sync API inside the asyncio loop").
_SHARED: dict[str, Any] = {"users": 0}


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        reason = (
            f"{CHROMIUM} is missing: the email layout tests need Debian's chromium "
            "(apt-get install chromium; .ci/run installs it on a fresh machine)"
        )
        if os.environ.get("NEWSLETTER_REQUIRE_BROWSER") == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: pip install '.[test]'", pytrace=False)
    if not _SHARED["users"]:
        playwright = sync_playwright().start()
        try:
            _SHARED["chromium"] = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        except BaseException:
            playwright.stop()
            raise
        _SHARED["playwright"] = playwright
    _SHARED["users"] += 1
    try:
        yield _SHARED["chromium"]
    finally:
        _SHARED["users"] -= 1
        if not _SHARED["users"]:
            try:
                _SHARED.pop("chromium").close()
            finally:
                _SHARED.pop("playwright").stop()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """test-artifacts/ at the repository's top (git-ignored): screenshots and the HTML they show."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@contextmanager
def email_page(browser: Browser, html: str, *, width: int, dark: bool = False, height: int = 800) -> Iterator[Page]:
    """The HTML part loaded in a fresh context; nothing leaves the machine (remote images etc. are aborted)."""
    context = browser.new_context(viewport={"width": width, "height": height}, color_scheme="dark" if dark else "light")
    try:
        context.route(re.compile(r"^(https?|wss?)://"), lambda route: route.abort())
        page = context.new_page()
        page.set_content(html, wait_until="load")
        yield page
    finally:
        context.close()


def without_style_blocks(html: str) -> str:
    """What Gmail's web client keeps: every <style> element dropped, inline style="" attributes kept."""
    stripped, count = re.subn(r"<style\b[^>]*>.*?</style\s*>", "", html, flags=re.DOTALL | re.IGNORECASE)
    assert count, "the email has no <style> block to strip"
    return stripped


def screenshot(page: Page, path: Path) -> Path:
    page.screenshot(path=str(path), full_page=True)
    page.evaluate("window.scrollTo(0, 0)")
    return path


# --- measurements (run in the page) -------------------------------------------------------

# Shared helpers, defined once per page: a selector that finds the element again,
# any CSS colour as [r, g, b, a] (via a canvas, so hex, rgb(), color(), oklch() all work),
# WCAG relative luminance and contrast, and the background a text is painted on.
_HELPERS = r"""
() => {
  if (window.__emailTest) return;
  const describe = (el) => {
    const parts = [];
    for (let e = el; e && e.nodeType === 1 && e !== document.documentElement; e = e.parentElement) {
      let part = e.localName;
      if (e.id) { parts.unshift(part + '#' + CSS.escape(e.id)); break; }
      if (e.classList.length) part += '.' + [...e.classList].map(c => CSS.escape(c)).join('.');
      const siblings = e.parentElement ? [...e.parentElement.children].filter(c => c.localName === e.localName) : [];
      if (siblings.length > 1) part += `:nth-of-type(${siblings.indexOf(e) + 1})`;
      parts.unshift(part);
    }
    return parts.join(' > ');
  };
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 1;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const rgba = (css) => {
    ctx.clearRect(0, 0, 1, 1);
    ctx.fillStyle = 'rgba(0, 0, 0, 0)';
    ctx.fillStyle = css;
    ctx.fillRect(0, 0, 1, 1);
    const [r, g, b, a] = ctx.getImageData(0, 0, 1, 1).data;
    return a === 0 ? [0, 0, 0, 0] : [r, g, b, a / 255];
  };
  // Canvas un-premultiplies and rounds; fully opaque colours come back exact.
  const over = (top, below) => {
    const a = top[3];
    return [0, 1, 2].map(i => top[i] * a + below[i] * (1 - a)).concat([1]);
  };
  const luminance = (c) => {
    const [r, g, b] = c.slice(0, 3).map(v => {
      const s = v / 255;
      return s <= 0.04045 ? s / 12.92 : Math.pow((s + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const contrast = (a, b) => {
    const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
  };
  const hex = (c) => '#' + c.slice(0, 3).map(v => Math.round(v).toString(16).padStart(2, '0')).join('');
  // The page's canvas: the root's background, else the system Canvas colour of the root's colour scheme.
  const canvasColour = () => {
    const probe = document.createElement('div');
    probe.style.cssText = 'background-color: Canvas; position: absolute; width: 0; height: 0;';
    document.documentElement.appendChild(probe);
    const colour = rgba(getComputedStyle(probe).backgroundColor);
    probe.remove();
    return colour;
  };
  // Every background-color from the root down to el, composited over the canvas.
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] === 1) break;
    }
    let colour = canvasColour();
    for (const layer of layers.reverse()) colour = over(layer, colour);
    return colour;
  };
  const visible = (el) => el.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true });
  const textNodes = (root) => {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {
      acceptNode: n => n.nodeValue.trim() && n.parentElement && visible(n.parentElement)
        ? NodeFilter.FILTER_ACCEPT : NodeFilter.FILTER_REJECT,
    });
    const nodes = [];
    while (walker.nextNode()) nodes.push(walker.currentNode);
    return nodes;
  };
  const textRects = (node) => {
    const range = document.createRange();
    range.selectNodeContents(node);
    return [...range.getClientRects()].filter(r => r.width > 0 && r.height > 0);
  };
  window.__emailTest = { describe, rgba, over, luminance, contrast, hex, background, visible, textNodes, textRects };
}
"""


def _run(page: Page, script: str, arg: Any = None) -> Any:
    page.evaluate(_HELPERS)
    return page.evaluate(script, arg)


def horizontal_overflow(page: Page) -> dict[str, Any]:
    """scrollWidth; the elements and texts whose box reaches past the viewport's edges (innermost only); and the
    culprits among them: those whose removal alone makes the page narrower (a wide box among stretched siblings)."""
    return _run(page, r"""
    () => {
      const { describe, visible, textNodes, textRects } = window.__emailTest;
      const vw = document.documentElement.clientWidth;
      const boxes = [];
      for (const el of document.body.querySelectorAll('*')) {
        if (!visible(el)) continue;
        const r = el.getBoundingClientRect();
        if (r.width === 0 && r.height === 0) continue;
        if (r.right > vw + 0.5 || r.left < -0.5) boxes.push(el);
      }
      const innermost = boxes.filter(el => !boxes.some(other => other !== el && el.contains(other)));
      const elements = innermost.map(el => {
        const r = el.getBoundingClientRect();
        return { selector: describe(el), left: Math.round(r.left), right: Math.round(r.right), width: Math.round(r.width) };
      });
      const texts = [];
      for (const node of textNodes(document.body)) {
        const right = Math.max(...textRects(node).map(r => r.right), -Infinity);
        const left = Math.min(...textRects(node).map(r => r.left), Infinity);
        if (right > vw + 0.5 || left < -0.5)
          texts.push({ selector: describe(node.parentElement), text: node.nodeValue.trim().slice(0, 60), left: Math.round(left), right: Math.round(right) });
      }
      // The culprits: offenders (innermost first) whose removal alone makes the page narrower.
      const scrollWidth = document.documentElement.scrollWidth;
      const culprits = [];
      const suspects = [...new Set([...innermost, ...texts.map(t => document.querySelector(t.selector))])].filter(Boolean);
      for (const el of suspects.slice(0, 60)) {
        const before = el.style.getPropertyValue('display'), priority = el.style.getPropertyPriority('display');
        el.style.setProperty('display', 'none', 'important');
        const without = document.documentElement.scrollWidth;
        el.style.setProperty('display', before, priority);
        if (!before) el.style.removeProperty('display');
        if (without < scrollWidth) {
          const r = el.getBoundingClientRect();
          culprits.push({ selector: describe(el), width: Math.round(r.width), pageWidthWithout: without });
        }
      }
      return { viewport: vw, scrollWidth, culprits, elements, texts };
    }
    """)


def title_visibility(page: Page, selector: str = "h3") -> list[dict[str, Any]]:
    """Each paper title: its box, whether CSS hides it, and whether it is on top at its own first line."""
    result: list[dict[str, Any]] = _run(page, r"""
    (selector) => {
      const { describe, visible, textRects } = window.__emailTest;
      const vw = document.documentElement.clientWidth;
      const titles = [...document.querySelectorAll(selector)].map(h => {
        h.scrollIntoView({ block: 'center', inline: 'nearest' });
        const r = h.getBoundingClientRect();
        const walker = document.createTreeWalker(h, NodeFilter.SHOW_TEXT);
        let first = null;
        while (!first && walker.nextNode()) first = textRects(walker.currentNode)[0] || null;
        const hit = first ? document.elementFromPoint(first.left + Math.min(4, first.width / 2), first.top + first.height / 2) : null;
        return {
          selector: describe(h), text: h.textContent.trim().slice(0, 70),
          left: Math.round(r.left), right: Math.round(r.right), width: Math.round(r.width), height: Math.round(r.height),
          cssVisible: visible(h), onTop: !!hit && h.contains(hit), fontSize: getComputedStyle(h).fontSize,
          problems: [],
        };
      });
      window.scrollTo(0, 0);
      for (const t of titles) {
        if (!t.cssVisible) t.problems.push('hidden by CSS (display/visibility/opacity)');
        if (t.width === 0 || t.height === 0) t.problems.push(`empty box ${t.width}x${t.height}`);
        if (t.left < -0.5 || t.right > vw + 0.5) t.problems.push(`box ${t.left}..${t.right} outside 0..${vw}`);
        if (!t.onTop) t.problems.push('its text is covered or clipped (elementFromPoint is not the title)');
        if (!t.text) t.problems.push('no text');
      }
      return titles;
    }
    """, selector)
    return result


def content_column(page: Page) -> dict[str, Any]:
    """The innermost element holding every heading (h1, h2, h3), and how wide all visible text spreads."""
    return _run(page, r"""
    () => {
      const { describe, textNodes, textRects } = window.__emailTest;
      const headings = [...document.querySelectorAll('h1, h2, h3')];
      let column = headings[0] || document.body;
      while (column.parentElement && !headings.every(h => column.contains(h))) column = column.parentElement;
      const r = column.getBoundingClientRect();
      const rects = textNodes(document.body).flatMap(textRects);
      const left = Math.min(...rects.map(t => t.left)), right = Math.max(...rects.map(t => t.right));
      return {
        selector: describe(column), width: r.width, left: Math.round(r.left), right: Math.round(r.right),
        textLeft: Math.round(left), textRight: Math.round(right), textSpread: right - left,
        viewport: document.documentElement.clientWidth,
      };
    }
    """)


def contrast_failures(page: Page, minimum: float = MIN_CONTRAST) -> dict[str, Any]:
    """Every visible text (per element) whose colour has less than ``minimum``:1 contrast with what is behind it."""
    texts = text_contrasts(page, "body")
    return {"checked": len(texts), "failures": [text for text in texts if text["ratio"] < minimum]}


def text_contrasts(page: Page | Frame, selector: str) -> list[dict[str, Any]]:
    """Every visible text inside the matches of ``selector`` (per element): its colour, the background it is painted
    on and their contrast ratio. Works on a Frame too (an email inside the preview's iframe)."""
    return _run(page, r"""
    (selector) => {
      const { describe, rgba, over, contrast, hex, background, textNodes, textRects } = window.__emailTest;
      const seen = new Map();
      for (const root of document.querySelectorAll(selector)) {
        for (const node of textNodes(root)) {
          if (!textRects(node).length) continue;
          const el = node.parentElement;
          if (seen.has(el)) continue;
          const bg = background(el);
          const fg = over(rgba(getComputedStyle(el).color), bg);
          seen.set(el, { selector: describe(el), text: node.nodeValue.trim().slice(0, 50),
                         color: hex(fg), background: hex(bg), ratio: Math.round(contrast(fg, bg) * 100) / 100 });
        }
      }
      return [...seen.values()];
    }
    """, selector)


def backgrounds(page: Page, selectors: list[str]) -> dict[str, dict[str, Any]]:
    """The composited background colour (hex) and its WCAG relative luminance for the first match of each selector."""
    return _run(page, r"""
    (selectors) => {
      const { background, luminance, hex } = window.__emailTest;
      const out = {};
      for (const s of selectors) {
        const el = document.querySelector(s);
        if (!el) { out[s] = null; continue; }
        const bg = background(el);
        out[s] = { background: hex(bg), luminance: Math.round(luminance(bg) * 1000) / 1000 };
      }
      return out;
    }
    """, selectors)


def common_ancestor_selector(page: Page, selector: str) -> str:
    """A selector for the innermost element containing every match of ``selector`` (the papers' column)."""
    return _run(page, r"""
    (selector) => {
      const els = [...document.querySelectorAll(selector)];
      let anc = els[0] || document.body;
      while (anc.parentElement && !els.every(e => anc.contains(e))) anc = anc.parentElement;
      return window.__emailTest.describe(anc) || 'body';
    }
    """, selector)


def listing(rows: list[dict[str, Any]], limit: int = 8) -> str:
    """A few measured rows for an assertion message."""
    if not rows:
        return "  (none)"
    shown = "\n".join(f"  {row}" for row in rows[:limit])
    more = f"\n  ... and {len(rows) - limit} more" if len(rows) > limit else ""
    return shown + more
