"""Render a local HTML file in headless Chromium with every network request blocked.

Uses Debian's ``chromium`` (``scripts/ensure-browser.sh`` installs it) through Playwright for
Python. Never run ``playwright install``: it downloads a browser. Network access is closed
three ways: every non-``file:``/``data:`` request is aborted by a route (and recorded), the
context is offline, and Chromium's resolver maps every host to nothing.

    from tests.browser import render, require_browser
    require_browser()                  # skip locally, fail under CI, when it is missing
    result = render(page_path, tmp_path / "page.png")
    assert result.charts_drawn == 2 and not result.blocked
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("FDP_CHROMIUM", "/usr/bin/chromium"))
ENSURE = "scripts/ensure-browser.sh"
ARGS = [
    "--no-sandbox",  # runs as root in containers
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # belt and braces: no host resolves
]
LOCAL_SCHEMES = ("file:", "data:", "about:", "blob:")

# Per <svg>: its size and how many mark elements it holds; Vega draws data marks inside
# <g class="mark-... role-mark">, other SVG (matplotlib) is counted by shapes.
_SVG_JS = """() => [...document.querySelectorAll('svg')]
  .filter(s => !s.parentElement.closest('svg')).map(s => { const r = s.getBoundingClientRect();
    const shapes = 'path,rect,line,circle,ellipse,polygon,polyline';
    return {width: r.width, height: r.height,
            marks: s.querySelectorAll('g.role-mark > :is(' + shapes + ')').length,
            shapes: s.querySelectorAll(shapes).length,
            label: s.getAttribute('aria-label') || ''}; })"""


@dataclass
class Svg:
    """One top-level ``<svg>`` element as laid out in the page."""

    width: float
    height: float
    marks: int  # Vega data marks (bars, line paths, points, rules)
    shapes: int  # every drawing element
    label: str = ""

    @property
    def drawn(self) -> bool:
        """Laid out with a size and something drawn in it."""
        return self.width > 0 and self.height > 0 and (self.marks or self.shapes) > 0


@dataclass
class Rendered:
    """What the browser did with the page."""

    title: str
    svgs: list[Svg]
    blocked: list[str] = field(default_factory=list)  # requests the route aborted
    requested: list[str] = field(default_factory=list)  # every non-local request seen
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    screenshot: Path | None = None

    @property
    def charts_drawn(self) -> int:
        """How many SVGs drew Vega marks (or, not Vega, any shapes)."""
        return sum(s.drawn for s in self.svgs)


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def browser_problem() -> str | None:
    """Why a browser test cannot run here, or None when it can."""
    if not (CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK)):
        return f"Chromium not found at {CHROMIUM}: run {ENSURE} (installs Debian chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is missing: pip install 'playwright==1.65.2' (no browser)"
    return None


def require_browser() -> None:
    """Skip the calling test when no browser is available; under CI (``CI`` set) fail."""
    problem = browser_problem()
    if problem is None:
        return
    if _ci():
        pytest.fail(f"browser test cannot run in CI: {problem}", pytrace=False)
    pytest.skip(problem)


@contextmanager
def chromium(
    allowed: tuple[str, ...] = LOCAL_SCHEMES,
    *,
    args: list[str] = ARGS,
    width: int = 1100,
    height: int = 900,
    timeout_ms: int = 15_000,
) -> Iterator[tuple[Any, list[str]]]:
    """Headless Debian Chromium with a fresh profile: (browser context, blocked requests).
    Every request whose URL does not start with one of ``allowed`` is aborted and recorded."""
    from playwright.sync_api import sync_playwright

    blocked: list[str] = []

    def route(r) -> None:
        url = r.request.url
        if url.startswith(allowed):
            r.continue_()
        else:
            blocked.append(url)
            r.abort("internetdisconnected")

    profile = tempfile.mkdtemp(prefix="fdp-chromium-")
    # Playwright 1.65 draws call-id prefixes from Python's *global* random generator
    # (playwright/_impl/isomorphic/trace_utils.py); put it back so conftest's guard holds.
    random_state = random.getstate()
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                headless=True,
                args=args,
                offline=allowed == LOCAL_SCHEMES,  # a local server needs the network stack
                viewport={"width": width, "height": height},
                service_workers="block",
                timeout=timeout_ms,
            )
            try:
                context.route("**/*", route)
                yield context, blocked
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
        random.setstate(random_state)


def render(
    page: Path, screenshot: Path, *, width: int = 1100, timeout_ms: int = 15_000
) -> Rendered:
    """Open ``page`` (a local file) with the network blocked; measure it and screenshot it."""
    requested: list[str] = []
    console_errors: list[str] = []
    page_errors: list[str] = []
    with chromium(width=width, timeout_ms=timeout_ms) as (context, blocked):
        tab = context.new_page()
        tab.on("console", lambda m: m.type == "error" and console_errors.append(m.text))
        tab.on("pageerror", lambda e: page_errors.append(str(e)))
        tab.on("request", lambda q: q.url.startswith(LOCAL_SCHEMES) or requested.append(q.url))
        tab.goto(page.resolve().as_uri(), wait_until="load", timeout=timeout_ms)
        svgs = [Svg(**s) for s in tab.evaluate(_SVG_JS)]
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(screenshot), full_page=True)
        title = tab.title()
    return Rendered(title, svgs, blocked, requested, console_errors, page_errors, screenshot)
