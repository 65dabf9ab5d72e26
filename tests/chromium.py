"""Debian's chromium driven by Playwright for Python (never a downloaded browser), for tests that
check what a person would see: exported HTML reports and JupyterLab itself."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (`make chromium` or "
                    "`apt-get install -y chromium chromium-driver`) to run the browser checks")


@contextlib.contextmanager
def browser() -> Iterator[object]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def offline(page) -> None:
    """Refuse every request of ``page`` that is not for a local file (a report must render offline)."""
    page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort())


def rendered_figures(b, html: Path) -> list[str]:
    """Open ``html`` offline (every non-file request is refused) and return the titles of the
    plotly figures that actually drew an SVG."""
    page = b.new_page()
    try:
        offline(page)
        page.goto(html.resolve().as_uri())
        page.wait_for_load_state("load")
        with contextlib.suppress(Exception):  # a page with no figure at all is judged by the caller
            page.wait_for_function("() => { const d = [...document.querySelectorAll('.js-plotly-plot')];"
                                   " return d.length > 0 && d.every(x => x.querySelector('.main-svg')); }",
                                   timeout=20000)
        return page.evaluate(
            "() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
            ".filter(d => d.querySelector('.main-svg') && d.layout)"
            ".map(d => (d.layout.title && d.layout.title.text) || '')"
        )
    finally:
        page.close()

